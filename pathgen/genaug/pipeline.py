"""`pathgen gensis`: the whole Gen-SIS recipe as one resumable run (Gen-SIS, REFERENCES §2).

SSL round 1 on real tiles → its embeddings of every tile → a VAE → an embedding-conditioned LDM →
view banks (K generated views per tile, and SLERP interpolations between tiles) → their generation
metrics → SSL round 2, trained from scratch with the same config, seed and number of steps as
round 1 plus the generated views and Gen-SIS's disentanglement task → a benchmark of both encoders
→ one report. Round 1 is the baseline: the two encoders differ only in the generative augmentation.

Every stage writes one folder under `out` (pathgen.genaug.stages) and is skipped when that folder
is complete, so a killed run continues where it stopped; `out/status.json` records each stage's
status, wall time and settings fingerprint, and `out/config.yaml` the resolved config. Each
sub-stage is configured by its own YAML (configs/ssl, configs/diffusion, benchmarks/suites) plus
`key=value` overrides; the pipeline sets only what ties the stages together (data, out, seed,
device and the folders one stage hands the next).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pathgen.config import ConfigError, to_dict
from pathgen.eval.linear_probe import torch_threads
from pathgen.genaug.bench_data import COMPLETE, write_bench_data
from pathgen.genaug.gate import GATE_FILE, GateConfig, run_gate
from pathgen.genaug.manifest import fingerprint
from pathgen.genaug.stages import (Stage, bank_stage, bench_stage, embed_stage, eval_gen_stage, foreground_stage,
                                   ldm_stage, model_complete, real_bank_stage, run_stages, ssl_init_stage, ssl_stage,
                                   vae_stage)

BANK_KINDS = ("views", "interpolate", "img2img")  # each is also the bank's `pathgen generate` mode
SWITCHES = ("bank_views", "bank_real", "disentangle", "adaptive_noise", "quality")
REAL_BANK = "real"  # bank_real: the views bank's rows with real tiles at its resolution (a control, not generated)
INIT, BASELINE, GENSIS = "init", "baseline", "gensis"  # the encoders' names in the bench tables


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
    pcam_stain_shift: float = 0.0  # θ of the per-site H&E shift of PCam val/test (write_synthetic_pcam)
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
    quality_gate: GateConfig = field(default_factory=GateConfig)  # before round 2 (pathgen.genaug.gate)
    bench: BenchConfig = field(default_factory=BenchConfig)


def _word(value: object) -> str:
    """A value as an override's right-hand side (JSON is YAML, so lists and booleans survive)."""
    return value if isinstance(value, str) else json.dumps(value)


def train_words(cfg: GenSISConfig, seed: int | None = None) -> list[str]:
    """The overrides every training stage takes from the run: tiles, seed, device, progress bars."""
    return [f"data={_word(cfg.tiles)}", f"train.seed={cfg.seed if seed is None else seed}",
            f"train.device={cfg.device}", f"train.progress={_word(cfg.progress)}"]


def bank_dir(cfg: GenSISConfig, kind: str) -> Path:
    """Where bank `kind` (views | interpolate | img2img | real) is written."""
    return Path(cfg.out) / f"bank_{kind}"


def round1_model(cfg: GenSISConfig) -> Path:
    """The round-1 (baseline) encoder folder: the LDM's conditioning and GenView's quality scorer."""
    return Path(cfg.out) / "ssl_round1" / "model"


def switch_overrides(cfg: GenSISConfig, switches: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """The train-ssl overrides that turn the generative switches on, and the stages they read from.

    bank_views: GenerativeSSL views from the `views` bank; bank_real: the same policy on the views
    bank's rows with the real tiles at the bank's resolution (a control); adaptive_noise: GenView's policy on the
    adaptive-noise img2img bank; disentangle: Gen-SIS's task on the `interpolate` bank (DINO only);
    quality: GenView's quality-weighted loss scored by round 1 (not DINO; needs the foreground PCA).
    """
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
        raise ConfigError("switch bank_real needs the views bank and its real control: set banks.views.enabled=true "
                          "and banks.real_views=true")
    if "quality" in switches and not cfg.foreground.enabled:
        raise ConfigError("switch quality needs the foreground PCA of round 1: set foreground.enabled=true")
    words, inputs = [], []
    if "bank_views" in switches:
        words += [f"genaug.bank={bank_dir(cfg, 'views')}", "genaug.policy=generativessl"]
        inputs.append("bank_views")
    if "bank_real" in switches:
        words += [f"genaug.bank={bank_dir(cfg, REAL_BANK)}", "genaug.policy=generativessl"]
        inputs.append(f"bank_{REAL_BANK}")
    if "adaptive_noise" in switches:
        words += [f"genaug.bank={bank_dir(cfg, 'img2img')}", "genaug.adaptive_noise=true", "genaug.policy=genview"]
        inputs.append("bank_img2img")
    if "disentangle" in switches:
        words.append(f"genaug.disentangle.bank={bank_dir(cfg, 'interpolate')}")
        inputs.append("bank_interpolate")
    if "quality" in switches:
        words += ["loss.quality_weighting=true", f"loss.quality_scorer={round1_model(cfg)}",
                  "loss.quality_foreground=pca"]
        inputs.append("foreground")
    return words, tuple(inputs)


def generative_stages(cfg: GenSISConfig) -> list[Stage]:
    """Round 1 → embeddings → (foreground PCA) → VAE → LDM → banks → eval-gen: what round 2 learns from."""
    from tiling.store import list_store_paths

    if not cfg.tiles:
        raise ConfigError("no tiles: give tiles=OUT (a `pathgen tile` output folder, or a list of them)")
    for tile_dir in cfg.tiles:
        list_store_paths(tile_dir)  # a StoreError that names the folder, before any stage starts
    out = Path(cfg.out)
    round1 = ssl_stage("ssl_round1", out / "ssl_round1", cfg.ssl.config, [*cfg.ssl.overrides, *train_words(cfg)])
    embeddings = f"gensis_{fingerprint(round1.settings)[:8]}"  # a new round 1 never reuses old embeddings
    stages = [round1, embed_stage("embed", round1_model(cfg), cfg.tiles, embeddings, cfg.device, cfg.progress,
                                  ("ssl_round1",))]
    if cfg.foreground.enabled:  # before the LDM, whose copy of the encoder then carries the PCA too
        stages.append(foreground_stage("foreground", round1_model(cfg), cfg.tiles, cfg.foreground.max_tiles,
                                       cfg.device, ("ssl_round1",)))
    stages.append(vae_stage("vae", out / "vae", cfg.vae.config, [*cfg.vae.overrides, *train_words(cfg)]))
    ldm_words = [*cfg.ldm.overrides, *train_words(cfg), f"encoder={round1_model(cfg)}",
                 f"vae={out / 'vae' / 'model'}", f"embeddings_name={embeddings}"]
    ldm_inputs = ("ssl_round1", "embed", "vae") + (("foreground",) if cfg.foreground.enabled else ())
    stages.append(ldm_stage("ldm", out / "ldm", cfg.ldm.config, ldm_words, ldm_inputs))
    banks = [kind for kind in BANK_KINDS if getattr(cfg.banks, kind).enabled]
    for kind in banks:
        words = [f"mode={kind}", *cfg.banks.overrides, *getattr(cfg.banks, kind).overrides,
                 f"model={out / 'ldm' / 'model'}", f"tiles={_word(cfg.tiles)}", f"seed={cfg.seed}",
                 f"device={cfg.device}", f"embeddings_name={embeddings}"]
        stages.append(bank_stage(f"bank_{kind}", bank_dir(cfg, kind), cfg.banks.config, words, cfg.progress,
                                 ("ldm", "embed")))
    if "views" in banks and cfg.banks.real_views:
        stages.append(real_bank_stage(f"bank_{REAL_BANK}", bank_dir(cfg, REAL_BANK), bank_dir(cfg, "views"),
                                      ("bank_views",)))
    if cfg.eval_gen.enabled and banks:
        settings = {"max_sources": cfg.eval_gen.max_sources, "n_bootstrap": cfg.eval_gen.n_bootstrap,
                    "batch_size": cfg.eval_gen.batch_size, "seed": cfg.seed}
        stages.append(eval_gen_stage("eval_gen", [bank_dir(cfg, k) for k in banks], settings, cfg.device,
                                     tuple(f"bank_{k}" for k in banks)))
    return stages


def bench_tasks(cfg: GenSISConfig) -> list:
    """The suite's tasks with the bench overrides, seeds and device; synthetic data roots when asked."""
    from pathgen.eval.bench import load_tasks

    tasks = load_tasks(cfg.bench.suite, [*cfg.bench.overrides, f"seeds={_word(cfg.bench.seeds)}",
                                         f"device={cfg.device}"])
    if cfg.bench.synthetic.enabled:
        for task in tasks:
            if task.data.dataset in ("pcam", "camelyon16"):
                task.data.root = str(Path(cfg.out) / "bench_data" / task.data.dataset)
    return tasks


def bench_data_stage(cfg: GenSISConfig) -> Stage:
    """Synthetic PCam and Camelyon16 copies (pathgen synth-dataset) in out/bench_data."""
    syn, folder = cfg.bench.synthetic, Path(cfg.out) / "bench_data"
    settings = {"pcam": syn.pcam, "camelyon16": syn.camelyon16, "slide_size": syn.slide_size, "seed": syn.seed,
                "pcam_stain_shift": syn.pcam_stain_shift}
    return Stage("bench_data", folder, settings, lambda: (folder / COMPLETE).is_file(),
                 lambda: write_bench_data(folder, **settings))


def gate_stage(cfg: GenSISConfig, round2: Stage) -> Stage:
    """The quality gate (pathgen.genaug.gate) on the banks round 2 reads, with round 2's tiles, tissue
    filter and p. It is measured again on every run until round 2 is complete, and is no input of
    round 2: changing a threshold never invalidates a trained round."""
    settings = round2.settings
    views = "bank_views" in cfg.round2.switches and cfg.eval_gen.enabled
    interpolation = "disentangle" in cfg.round2.switches
    folder = Path(cfg.out) / "gate"

    def run() -> dict:
        return run_gate(cfg.quality_gate, folder, bank_dir(cfg, "views") if views else None,
                        bank_dir(cfg, "interpolate") if interpolation else None, settings["data"],
                        settings["min_tissue"], settings["genaug"]["p"])

    inputs = (("eval_gen", "bank_views") if views else ()) + (("bank_interpolate",) if interpolation else ())
    return Stage("gate", folder, to_dict(cfg.quality_gate), lambda: model_complete(round2.folder / "model") and (
        folder / GATE_FILE).is_file(), run, inputs, owns_folder=False)


def gensis_stages(cfg: GenSISConfig) -> list[Stage]:
    """Every stage of `pathgen gensis`, in order."""
    from pathgen.genaug.report import report_stage

    out = Path(cfg.out)
    stages = generative_stages(cfg)
    words, inputs = switch_overrides(cfg, cfg.round2.switches)
    round2 = ssl_stage("ssl_round2", out / "ssl_round2", cfg.ssl.config,
                       [*cfg.ssl.overrides, *cfg.round2.overrides, *train_words(cfg), *words], inputs)
    stages += [gate_stage(cfg, round2), round2]
    bench_inputs: tuple[str, ...] = ("ssl_round1", "ssl_round2")
    encoders = {BASELINE: round1_model(cfg), GENSIS: out / "ssl_round2" / "model"}
    if cfg.bench.init_encoder:
        stages.append(ssl_init_stage("ssl_init", out / "ssl_init", cfg.ssl.config,
                                     [*cfg.ssl.overrides, *train_words(cfg)]))
        bench_inputs += ("ssl_init",)
        encoders = {INIT: out / "ssl_init" / "model", **encoders}
    if cfg.bench.synthetic.enabled:
        stages.append(bench_data_stage(cfg))
        bench_inputs += ("bench_data",)
    stages.append(bench_stage("bench", out / "bench", bench_tasks(cfg), encoders, bench_inputs))
    stages.append(report_stage(cfg, [s.name for s in stages]))
    return stages


def run_gensis(cfg: GenSISConfig, only: list[str] | None = None, log=print) -> Path:  # noqa: ANN001
    """Run (or continue) the whole recipe; returns the report folder."""
    with torch_threads(cfg.torch_threads):
        run_stages(gensis_stages(cfg), Path(cfg.out), only, log, config=cfg)
    return Path(cfg.out) / "report"
