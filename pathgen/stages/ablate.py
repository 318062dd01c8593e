"""`pathgen ablate`: each generative augmentation alone and combined, against a baseline, at one budget.

The generative part of a Gen-SIS run (round 1, embeddings, foreground PCA, VAE, LDM, the views,
interpolation and adaptive-noise img2img banks; pathgen.stages.gensis) is made once in
`out/shared` and every variant learns from it. A variant is a family's SSL config plus a set of
switches (pathgen.stages.gensis.SWITCHES); within a family every variant keeps the family's
config, optimizer steps, batch and seeds, so the budget held equal is steps × batch (the switches
add passes per step: disentanglement a student and a teacher pass, quality weighting a scorer pass).

No one method takes every switch: Gen-SIS's disentanglement is defined for DINO, GenView's
quality-weighted loss for the pairwise methods (MoCo v3, SimSiam, BYOL, SimCLR). So the ablation
runs in families, e.g. `dino` (views, disentanglement, adaptive noise, views + disentanglement) and
`mocov3` (views, adaptive noise, quality, adaptive noise + quality = GenView). Results compare
each variant with its own family's baseline only.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from pathgen.config import ConfigError, load_config
from pathgen.resources import optional_packaged_file
from pathgen.stages.ablate_report import INIT_ROW, ablation_report_stage
from pathgen.stages.gensis import (
    GenSISConfig,
    StageRef,
    bench_data_stage,
    bench_tasks,
    for_run,
    generative_stages,
    stage_config,
    with_overrides,
    with_switches,
)
from pathgen.stages.steps import Stage, bench_stage, run_stages, ssl_init_stage, ssl_stage
from pathgen.stages.train_ssl import SSLConfig
from pathgen.threads import torch_threads


@dataclass
class FamilyConfig:
    """One SSL method and its variants: {variant name: switches}; the variant with no switches is the baseline."""

    name: str = "dino"
    ssl: StageRef = field(default_factory=lambda: StageRef("configs/ssl/dino_tiny.yaml"))
    variants: dict = field(default_factory=lambda: {"baseline": []})
    init_encoder: bool = True  # also bench the baseline's initial weights (row "step0"): did SSL learn anything?


@dataclass
class AblationConfig:
    """The shared generative stages come from a Gen-SIS config (`shared` + `shared_overrides`), whose
    `out` defaults to out/shared; `shared_overrides: [out=FOLDER]` reuses a finished run made with the same
    shared settings (foreground PCA and img2img bank included: the LDM's encoder copy must carry the PCA)."""

    out: str = "runs/ablation"
    tiles: list[str] = field(default_factory=list)  # when given, replaces the shared config's tiles
    shared: str | None = "configs/genaug/gensis_demo.yaml"
    shared_overrides: list[str] = field(
        default_factory=lambda: ["banks.img2img.enabled=true", "foreground.enabled=true"]
    )
    seeds: list[int] = field(default_factory=lambda: [0])  # pretraining seeds: each variant trains once per seed
    families: list[FamilyConfig] = field(default_factory=lambda: [FamilyConfig()])


def shared_config(cfg: AblationConfig) -> GenSISConfig:
    """The Gen-SIS config of the shared generative stages: the `shared` YAML, then out/shared and the
    ablation's tiles (when given), then `shared_overrides` (which may point `out` at a finished run)."""
    shared = load_config(GenSISConfig, optional_packaged_file(cfg.shared))
    shared = replace(shared, out=str(Path(cfg.out) / "shared"), tiles=list(cfg.tiles or shared.tiles))
    return with_overrides(shared, cfg.shared_overrides)


def encoder_label(family: str, variant: str, seed: int) -> str:
    """The variant encoder's name in the bench tables (passed to bench as NAME=DIR)."""
    return f"{family}_{variant}_s{seed}"


def variant_stages(cfg: AblationConfig, shared: GenSISConfig) -> tuple[list[Stage], dict[str, Path], dict]:
    """One SSL stage per family × variant × seed; {label: model folder}; {family: {variant: switches}}."""
    stages, encoders, plan = [], {}, {}
    for family in cfg.families:
        if not all(isinstance(s, list) for s in family.variants.values()):
            raise ConfigError(f"family {family.name}: each variant is a list of switches, got {family.variants}")
        if INIT_ROW in family.variants:
            raise ConfigError(f"family {family.name}: the variant name {INIT_ROW} is reserved for the initial weights")
        baselines = [v for v, switches in family.variants.items() if not switches]
        if len(baselines) != 1:
            raise ConfigError(
                f"family {family.name}: exactly one variant must have no switches (its baseline), "
                f"got {baselines or 'none'}"
            )
        plan[family.name] = {"baseline": baselines[0], "variants": dict(family.variants), "init": family.init_encoder}
        for seed in cfg.seeds if family.init_encoder else []:
            label = encoder_label(family.name, INIT_ROW, seed)
            init = for_run(stage_config(SSLConfig, family.ssl), shared, Path(cfg.out) / "ssl" / label, seed)
            stages.append(ssl_init_stage(f"ssl_{label}", init))
            encoders[label] = Path(cfg.out) / "ssl" / label / "model"
        for variant, switches in family.variants.items():
            ssl, inputs = with_switches(stage_config(SSLConfig, family.ssl), shared, list(switches))
            for seed in cfg.seeds:
                label = encoder_label(family.name, variant, seed)
                run_dir = Path(cfg.out) / "ssl" / label
                stages.append(ssl_stage(f"ssl_{label}", for_run(ssl, shared, run_dir, seed), inputs))
                encoders[label] = run_dir / "model"
    return stages, encoders, plan


def ablation_stages(cfg: AblationConfig) -> list[Stage]:
    """Shared generative stages, every variant's SSL run, one bench of all encoders, the table."""

    if not cfg.seeds or not cfg.families:
        raise ConfigError("an ablation needs at least one seed and one family")
    shared = shared_config(cfg)
    stages = generative_stages(shared)
    ssl_runs, encoders, plan = variant_stages(cfg, shared)
    stages += ssl_runs
    inputs = tuple(s.name for s in ssl_runs)
    if shared.bench.synthetic.enabled:
        stages.append(bench_data_stage(shared))
        inputs += ("bench_data",)
    bench_dir = Path(cfg.out) / "bench"
    stages.append(bench_stage("bench", bench_dir, bench_tasks(shared), encoders, inputs))
    stages.append(ablation_report_stage(Path(cfg.out), plan, cfg.seeds))
    return stages


def run_ablation(cfg: AblationConfig, only: list[str] | None = None, log=print) -> Path:  # noqa: ANN001
    """Run (or continue) the ablation; returns the report folder."""
    with torch_threads(shared_config(cfg).torch_threads):
        run_stages(ablation_stages(cfg), Path(cfg.out), only, log, config=cfg)
    return Path(cfg.out) / "report"
