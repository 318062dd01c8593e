"""`pathgen gensis`: the whole Gen-SIS recipe as one resumable run (Gen-SIS, docs/methods/gensis.md).

SSL round 1 on real tiles → its embeddings of every tile → a VAE → an embedding-conditioned LDM →
view banks (K generated views per tile, and SLERP interpolations between tiles) → their generation
metrics → SSL round 2, trained from scratch with the same config, seed and number of steps as
round 1 plus the generated views and Gen-SIS's disentanglement task → a benchmark of both encoders
→ one report. Round 1 is the baseline: the two encoders differ only in the generative augmentation.

Every stage writes one folder under `out` (pathgen.stages.steps) and is skipped when that folder
is complete, so a killed run continues where it stopped; `out/status.json` records each stage's
status, wall time and settings fingerprint, and `out/config.yaml` the resolved config. Each
sub-stage is configured by its own YAML (configs/ssl, configs/diffusion, benchmarks/suites; the
packaged copies when the path is not found from the working directory) plus the user's `key=value`
overrides; the pipeline then sets, on the typed configs (`dataclasses.replace`), only what ties the
stages together (data, out, seed, device and the folders one stage hands the next), so a folder name
is never re-parsed as YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from pathgen.config import ConfigError, from_dict, load_config, parse_override, to_dict
from pathgen.eval.synth_datasets import DEFAULT_PCAM_STAIN_SHIFT
from pathgen.resources import optional_packaged_file, packaged_file
from pathgen.stages.bench import TaskConfig, load_tasks
from pathgen.stages.bench_data import COMPLETE, write_bench_data
from pathgen.stages.generate import GenerateConfig
from pathgen.stages.gensis_report import report_stage
from pathgen.stages.quality_gate import GATE_FILE, GateConfig, run_gate
from pathgen.stages.run_status import fingerprint
from pathgen.stages.steps import (
    Stage,
    bank_stage,
    bench_stage,
    embed_stage,
    eval_gen_stage,
    foreground_stage,
    ldm_stage,
    model_complete,
    real_bank_stage,
    run_stages,
    ssl_init_stage,
    ssl_stage,
    vae_stage,
)
from pathgen.stages.train_ldm import LDMTrainConfig
from pathgen.stages.train_ssl import SSLConfig
from pathgen.stages.train_vae import VAETrainConfig
from pathgen.threads import torch_threads
from tiling.store import list_store_paths

BANK_KINDS = ("views", "interpolate", "img2img")  # each is also the bank's `pathgen generate` mode
SWITCHES = ("bank_views", "bank_real", "disentangle", "adaptive_noise", "quality")
REAL_BANK = "real"  # bank_real: the views bank's rows with real tiles at its resolution (a control, not generated)
INIT, BASELINE, GENSIS = "init", "baseline", "gensis"  # the encoders' names in the bench tables
T = TypeVar("T")
TrainedStage = TypeVar("TrainedStage", SSLConfig, VAETrainConfig, LDMTrainConfig)  # each has data, out, train


@dataclass
class StageRef:
    """A stage's YAML config and `key=value` overrides applied on top of it."""

    config: str | None = None
    overrides: list[str] = field(default_factory=list)


@dataclass
class BankRef:
    """One view bank: made or not, and overrides on top of `banks.config` (mode is set from its name)."""

    enabled: bool = True
    overrides: list[str] = field(default_factory=list)


@dataclass
class BanksConfig:
    """The view banks generated from the LDM: `views` and `interpolate` for Gen-SIS; `img2img` (GenView's
    adaptive-noise bank, off by default) for the ablation."""

    config: str | None = "configs/diffusion/generate_tiny.yaml"
    overrides: list[str] = field(default_factory=list)
    views: BankRef = field(default_factory=BankRef)
    interpolate: BankRef = field(default_factory=BankRef)
    img2img: BankRef = field(default_factory=lambda: BankRef(enabled=False))
    real_views: bool = False  # also write the views bank's resolution-matched real control (switch bank_real)


@dataclass
class Round2Config:
    """Round 2 = round 1's SSL config + these generative switches (SWITCHES) + overrides."""

    switches: list[str] = field(default_factory=lambda: ["bank_views", "disentangle"])
    overrides: list[str] = field(default_factory=list)


@dataclass
class ForegroundConfig:
    """GenView's foreground PCA on round 1's patch tokens (for quality weighting / adaptive noise)."""

    enabled: bool = False
    max_tiles: int = 2048


@dataclass
class EvalGenConfig:
    """`pathgen eval-gen` settings for every bank made."""

    enabled: bool = True
    max_sources: int | None = 64
    n_bootstrap: int = 20
    batch_size: int = 64


@dataclass
class SyntheticBenchData:
    """Labelled synthetic datasets (pathgen.eval.synth_datasets) written into out/bench_data; tasks of
    the suite that read pcam or camelyon16 are pointed at them."""

    enabled: bool = False
    pcam: list[int] = field(default_factory=lambda: [256, 64, 64])  # train, val, test patches
    camelyon16: list[int] = field(default_factory=lambda: [8, 8])  # train, test slides
    slide_size: list[int] = field(default_factory=lambda: [4096, 3072])  # camelyon16 width, height at 0.25 µm/px
    pcam_stain_shift: float = DEFAULT_PCAM_STAIN_SHIFT  # θ of PCam's per-site H&E shift (write_synthetic_pcam)
    seed: int = 0


@dataclass
class BenchConfig:
    """The benchmark of both encoders (and round 1's initialisation): a suite, its overrides, the probe /
    MIL-head seeds."""

    suite: str = "benchmarks/suites/synthetic.yaml"
    overrides: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    init_encoder: bool = True  # also bench round 1's initial weights (step 0): did SSL learn anything?
    synthetic: SyntheticBenchData = field(default_factory=SyntheticBenchData)


@dataclass
class GenSISConfig:
    """One Gen-SIS run. `seed` seeds both SSL rounds, the VAE, the LDM and generation alike."""

    out: str = "runs/gensis"
    tiles: list[str] = field(default_factory=list)  # `pathgen tile` output folders
    device: str = "auto"
    seed: int = 0
    torch_threads: int | None = None  # intra-op CPU threads for the run (None: torch's default)
    progress: bool = True
    ssl: StageRef = field(default_factory=lambda: StageRef("configs/ssl/dino_tiny.yaml"))
    round2: Round2Config = field(default_factory=Round2Config)
    foreground: ForegroundConfig = field(default_factory=ForegroundConfig)
    vae: StageRef = field(default_factory=lambda: StageRef("configs/diffusion/vae_tiny.yaml"))
    ldm: StageRef = field(default_factory=lambda: StageRef("configs/diffusion/ldm_tiny.yaml"))
    banks: BanksConfig = field(default_factory=BanksConfig)
    eval_gen: EvalGenConfig = field(default_factory=EvalGenConfig)
    quality_gate: GateConfig = field(default_factory=GateConfig)  # before round 2 (pathgen.stages.quality_gate)
    bench: BenchConfig = field(default_factory=BenchConfig)


def stage_config(cls: type[T], ref: StageRef | BanksConfig | BankRef, *more_overrides: list[str]) -> T:
    """A sub-stage's typed config: its dataclass defaults, its YAML (a packaged default when the path is not
    found from here, pathgen.resources) and the user's `key=value` overrides, in that order."""
    overrides = [*ref.overrides, *(word for words in more_overrides for word in words)]
    return load_config(cls, optional_packaged_file(getattr(ref, "config", None)), overrides)


def with_overrides(config: T, overrides: list[str]) -> T:
    """`config` with the user's `key=value` overrides on top (the same checks as load_config's)."""
    values = to_dict(config)
    for text in overrides:
        key, value = parse_override(text)
        *parents, leaf = key.split(".")
        node = values
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise ConfigError(f"override {text}: {part} is not a section")
        node[leaf] = value
    return from_dict(type(config), values)


def for_run(cfg: TrainedStage, run: GenSISConfig, out: Path, seed: int | None = None) -> TrainedStage:
    """A training stage's config with what the run ties together: its tiles, output folder, seed, device and
    progress bars (`seed` overrides the run's, for the ablation's per-seed runs)."""
    train = replace(cfg.train, seed=run.seed if seed is None else seed, device=run.device, progress=run.progress)
    return replace(cfg, data=list(run.tiles), out=str(out), train=train)


def bank_dir(cfg: GenSISConfig, kind: str) -> Path:
    """Where bank `kind` (views | interpolate | img2img | real) is written."""
    return Path(cfg.out) / f"bank_{kind}"


def round1_model(cfg: GenSISConfig) -> Path:
    """The round-1 (baseline) encoder folder: the LDM's conditioning and GenView's quality scorer."""
    return Path(cfg.out) / "ssl_round1" / "model"


def enabled_banks(cfg: GenSISConfig) -> list[str]:
    """The bank kinds (BANK_KINDS) this run generates."""
    return [kind for kind in BANK_KINDS if getattr(cfg.banks, kind).enabled]


def with_switches(ssl: SSLConfig, cfg: GenSISConfig, switches: list[str]) -> tuple[SSLConfig, tuple[str, ...]]:
    """`ssl` with the generative switches turned on, and the stages they read from.

    bank_views: GenerativeSSL views from the `views` bank; bank_real: the same policy on the views
    bank's rows with the real tiles at the bank's resolution (a control); adaptive_noise: GenView's policy on the
    adaptive-noise img2img bank; disentangle: Gen-SIS's task on the `interpolate` bank (DINO only);
    quality: GenView's quality-weighted loss scored by round 1 (not DINO; needs the foreground PCA).
    """
    check_switches(cfg, switches)
    genaug, loss, inputs = ssl.genaug, ssl.loss, []
    for switch, kind in (("bank_views", "views"), ("bank_real", REAL_BANK)):
        if switch in switches:
            genaug = replace(genaug, bank=str(bank_dir(cfg, kind)), policy="generativessl")
            inputs.append(f"bank_{kind}")
    if "adaptive_noise" in switches:
        genaug = replace(genaug, bank=str(bank_dir(cfg, "img2img")), adaptive_noise=True, policy="genview")
        inputs.append("bank_img2img")
    if "disentangle" in switches:
        genaug = replace(genaug, disentangle=replace(genaug.disentangle, bank=str(bank_dir(cfg, "interpolate"))))
        inputs.append("bank_interpolate")
    if "quality" in switches:
        loss = replace(loss, quality_weighting=True, quality_scorer=str(round1_model(cfg)), quality_foreground="pca")
        inputs.append("foreground")
    return replace(ssl, genaug=genaug, loss=loss), tuple(inputs)


def check_switches(cfg: GenSISConfig, switches: list[str]) -> None:
    """ConfigError naming the first switch that is unknown, clashes with another or lacks its input stage."""
    unknown = sorted(set(switches) - set(SWITCHES))
    if unknown:
        raise ConfigError(f"unknown generative switch {unknown[0]!r} (known: {', '.join(SWITCHES)})")
    banked = [switch for switch in ("bank_views", "bank_real", "adaptive_noise") if switch in switches]
    if len(banked) > 1:
        raise ConfigError(f"{' and '.join(banked)} each set genaug.bank; a run takes one bank")
    needs = {"bank_views": "views", "adaptive_noise": "img2img", "disentangle": "interpolate"}
    for switch, kind in needs.items():
        if switch in switches and not getattr(cfg.banks, kind).enabled:
            raise ConfigError(f"switch {switch} needs the {kind} bank: set banks.{kind}.enabled=true")
    if "bank_real" in switches and not (cfg.banks.views.enabled and cfg.banks.real_views):
        raise ConfigError(
            "switch bank_real needs the views bank and its real control: set banks.views.enabled=true "
            "and banks.real_views=true"
        )
    if "quality" in switches and not cfg.foreground.enabled:
        raise ConfigError("switch quality needs the foreground PCA of round 1: set foreground.enabled=true")


def generative_stages(cfg: GenSISConfig) -> list[Stage]:
    """Round 1 → embeddings → (foreground PCA) → VAE → LDM → banks → eval-gen: what round 2 learns from."""
    if not cfg.tiles:
        raise ConfigError("no tiles: give tiles=OUT (a `pathgen tile` output folder, or a list of them)")
    for tile_dir in cfg.tiles:
        list_store_paths(tile_dir)  # a StoreError that names the folder, before any stage starts
    out = Path(cfg.out)
    round1 = ssl_stage("ssl_round1", for_run(stage_config(SSLConfig, cfg.ssl), cfg, out / "ssl_round1"))
    embeddings = f"gensis_{fingerprint(round1.settings)[:8]}"  # a new round 1 never reuses old embeddings
    stages = [
        round1,
        embed_stage("embed", round1_model(cfg), cfg.tiles, embeddings, cfg.device, cfg.progress, ("ssl_round1",)),
    ]
    if cfg.foreground.enabled:  # before the LDM, whose copy of the encoder then carries the PCA too
        stages.append(
            foreground_stage(
                "foreground", round1_model(cfg), cfg.tiles, cfg.foreground.max_tiles, cfg.device, ("ssl_round1",)
            )
        )
    stages.append(vae_stage_of(cfg))
    ldm = replace(
        for_run(stage_config(LDMTrainConfig, cfg.ldm), cfg, out / "ldm"),
        encoder=str(round1_model(cfg)),
        vae=str(out / "vae" / "model"),
        embeddings_name=embeddings,
    )
    ldm_inputs = ("ssl_round1", "embed", "vae") + (("foreground",) if cfg.foreground.enabled else ())
    stages.append(ldm_stage("ldm", ldm, ldm_inputs))
    banks = enabled_banks(cfg)
    stages += [
        bank_stage(f"bank_{kind}", bank_config(cfg, kind, embeddings), cfg.progress, ("ldm", "embed")) for kind in banks
    ]
    if "views" in banks and cfg.banks.real_views:
        stages.append(
            real_bank_stage(f"bank_{REAL_BANK}", bank_dir(cfg, REAL_BANK), bank_dir(cfg, "views"), ("bank_views",))
        )
    if cfg.eval_gen.enabled and banks:
        settings = {
            "max_sources": cfg.eval_gen.max_sources,
            "n_bootstrap": cfg.eval_gen.n_bootstrap,
            "batch_size": cfg.eval_gen.batch_size,
            "seed": cfg.seed,
        }
        stages.append(
            eval_gen_stage(
                "eval_gen", [bank_dir(cfg, k) for k in banks], settings, cfg.device, tuple(f"bank_{k}" for k in banks)
            )
        )
    return stages


def vae_stage_of(cfg: GenSISConfig) -> Stage:
    """The VAE stage; a VAE config with a feature loss gets round 1's encoder as its feature encoder
    (the encoder that conditions the LDM and judges its views), and waits for round 1."""
    vae = for_run(stage_config(VAETrainConfig, cfg.vae), cfg, Path(cfg.out) / "vae")
    if not vae.feature_weight:
        return vae_stage("vae", vae)
    return vae_stage("vae", replace(vae, feature_encoder=str(round1_model(cfg))), ("ssl_round1",))


def bank_config(cfg: GenSISConfig, kind: str, embeddings: str) -> GenerateConfig:
    """Bank `kind`'s generate config: banks.config + banks.overrides + its own overrides, then its mode (the
    kind), the run's LDM, tiles, seed and device, and round 1's embeddings."""
    generate = stage_config(GenerateConfig, cfg.banks, getattr(cfg.banks, kind).overrides)
    return replace(
        generate,
        mode=kind,
        model=str(Path(cfg.out) / "ldm" / "model"),
        tiles=list(cfg.tiles),
        seed=cfg.seed,
        device=cfg.device,
        embeddings_name=embeddings,
        out=str(bank_dir(cfg, kind)),
    )


def bench_tasks(cfg: GenSISConfig) -> list[TaskConfig]:
    """The suite's tasks with the bench overrides, seeds and device; synthetic data roots when asked."""
    tasks = [
        replace(task, seeds=list(cfg.bench.seeds), device=cfg.device)
        for task in load_tasks(packaged_file(cfg.bench.suite), cfg.bench.overrides)
    ]
    if cfg.bench.synthetic.enabled:
        for task in tasks:
            if task.data.dataset in ("pcam", "camelyon16"):
                task.data = replace(task.data, root=str(Path(cfg.out) / "bench_data" / task.data.dataset))
    return tasks


def bench_data_stage(cfg: GenSISConfig) -> Stage:
    """Synthetic PCam and Camelyon16 copies (pathgen synth-dataset) in out/bench_data."""
    syn, folder = cfg.bench.synthetic, Path(cfg.out) / "bench_data"
    settings = {
        "pcam": syn.pcam,
        "camelyon16": syn.camelyon16,
        "slide_size": syn.slide_size,
        "seed": syn.seed,
        "pcam_stain_shift": syn.pcam_stain_shift,
    }
    return Stage(
        "bench_data",
        folder,
        settings,
        lambda: (folder / COMPLETE).is_file(),
        lambda: write_bench_data(folder, **settings),
    )


def gate_stage(cfg: GenSISConfig, round2: Stage) -> Stage:
    """The quality gate (pathgen.stages.quality_gate) on the banks round 2 reads, with round 2's tiles, tissue
    filter and p. It is measured again on every run until round 2 is complete, and is no input of
    round 2: changing a threshold never invalidates a trained round."""
    settings = round2.settings
    views = "bank_views" in cfg.round2.switches and cfg.eval_gen.enabled
    interpolation = "disentangle" in cfg.round2.switches
    folder = Path(cfg.out) / "gate"

    def run() -> dict:
        return run_gate(
            cfg.quality_gate,
            folder,
            bank_dir(cfg, "views") if views else None,
            bank_dir(cfg, "interpolate") if interpolation else None,
            settings["data"],
            settings["min_tissue"],
            settings["genaug"]["p"],
        )

    inputs = (("eval_gen", "bank_views") if views else ()) + (("bank_interpolate",) if interpolation else ())
    return Stage(
        "gate",
        folder,
        to_dict(cfg.quality_gate),
        lambda: model_complete(round2.folder / "model") and (folder / GATE_FILE).is_file(),
        run,
        inputs,
        owns_folder=False,
    )


def gensis_stages(cfg: GenSISConfig) -> list[Stage]:
    """Every stage of `pathgen gensis`, in order."""
    out = Path(cfg.out)
    stages = generative_stages(cfg)
    round2, inputs = with_switches(stage_config(SSLConfig, cfg.ssl, cfg.round2.overrides), cfg, cfg.round2.switches)
    round2_stage = ssl_stage("ssl_round2", for_run(round2, cfg, out / "ssl_round2"), inputs)
    stages += [gate_stage(cfg, round2_stage), round2_stage]
    bench_inputs: tuple[str, ...] = ("ssl_round1", "ssl_round2")
    encoders = {BASELINE: round1_model(cfg), GENSIS: out / "ssl_round2" / "model"}
    if cfg.bench.init_encoder:
        stages.append(ssl_init_stage("ssl_init", for_run(stage_config(SSLConfig, cfg.ssl), cfg, out / "ssl_init")))
        bench_inputs += ("ssl_init",)
        encoders = {INIT: out / "ssl_init" / "model", **encoders}
    if cfg.bench.synthetic.enabled:
        stages.append(bench_data_stage(cfg))
        bench_inputs += ("bench_data",)
    stages.append(bench_stage("bench", out / "bench", bench_tasks(cfg), encoders, bench_inputs))
    stages.append(report_stage(out, enabled_banks(cfg), [s.name for s in stages]))
    return stages


def run_gensis(cfg: GenSISConfig, only: list[str] | None = None, log=print) -> Path:  # noqa: ANN001
    """Run (or continue) the whole recipe; returns the report folder."""
    with torch_threads(cfg.torch_threads):
        run_stages(gensis_stages(cfg), Path(cfg.out), only, log, config=cfg)
    return Path(cfg.out) / "report"
