"""`pathgen train-ssl`: an SSL encoder learned from tile stores, and its export as a model folder.

A run folder holds ``config.yaml`` (resolved), ``metrics.jsonl``, ``checkpoints/last.pt`` and,
when training ends, ``model/`` (the exported encoder: safetensors + config.json).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
import yaml

from pathgen.checkpoint import load_checkpoint
from pathgen.config import from_dict, load_config, save_config, to_dict
from pathgen.data.augment import MultiCropTransform
from pathgen.data.recipes import AugmentConfig, build_transform
from pathgen.data.tiles import TileDataset
from pathgen.data.views import AugmentedViews, MixedSourceViews, ViewProvider
from pathgen.genaug.foreground import HematoxylinForeground
from pathgen.genaug.gensis_dino import GenSISDINO
from pathgen.genaug.quality import QualityWeighter
from pathgen.genaug.sources import BankViewSource, InterpolationViews, check_adaptive_noise_bank, check_bank_coverage
from pathgen.models.backbone import BackboneConfig, backbone_kwargs, create_backbone
from pathgen.models.io import EncoderConfig, save_encoder
from pathgen.models.preprocess import mpp_per_input_pixel
from pathgen.ssl.base import SSLMethod
from pathgen.ssl.registry import build_config, build_method
from pathgen.train import CHECKPOINT, TrainConfig, Trainer

MODEL_DIR = "model"


@dataclass
class DisentangleConfig:
    """Gen-SIS's disentanglement task (DINO only): an interpolate-mode view bank and the loss weight."""

    bank: str | None = None  # `pathgen generate --mode interpolate` output folder
    weight: float = 1.0


@dataclass
class GenAugConfig:
    """Generated views as augmentations (pathgen.genaug.sources): which bank, how often, which views.

    `adaptive_noise` asks for GenView's adaptive noise: the bank must then be an img2img bank whose
    strengths were chosen per tile from its foreground proportion (`pathgen generate --mode img2img
    --adaptive-noise`); training refuses any other bank rather than silently using fixed noise.
    """

    bank: str | None = None  # `pathgen generate` output folder (views or img2img mode)
    p: float = 1.0
    policy: str = "generativessl"  # generativessl (view 0 real, later views generated) | genview (one global view)
    adaptive_noise: bool = False
    disentangle: DisentangleConfig = field(default_factory=DisentangleConfig)
    min_bank_coverage: float = 0.01  # refuse a bank with views of fewer than this share of the training tiles


@dataclass
class LossConfig:
    """GenView's quality-driven weighting of positive pairs (MoCo v3, SimSiam, BYOL, SimCLR).

    The scorer is a frozen encoder folder (the stage-1 SSL encoder) whose patch tokens give the
    foreground / background pooling; `quality_foreground` "pca" uses the ForegroundPCA saved beside
    it (`pathgen.stages.fit_foreground`), "hematoxylin" the stain-density map instead.
    """

    quality_weighting: bool = False
    quality_scorer: str | None = None
    quality_foreground: str = "pca"  # pca | hematoxylin
    quality_gamma: float = 1.0


QUALITY_METHODS = ("mocov3", "simsiam", "byol", "simclr")


@dataclass
class SSLConfig:
    """One SSL run: data, method, backbone, augmentations and optimisation."""

    PATH_KEYS: ClassVar[tuple[str, ...]] = (
        "data",
        "out",
        "genaug.bank",
        "genaug.disentangle.bank",
        "loss.quality_scorer",
    )  # saved absolute (pathgen.config)

    data: list[str] = field(default_factory=list)  # `pathgen tile` output folders
    out: str = "runs/ssl"
    method: str = "dino"  # dino | simclr | mocov2 | mocov3 | byol | simsiam | barlow
    method_options: dict = field(default_factory=dict)  # fields of the method's config dataclass
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    min_tissue: float = 0.0  # train only on tiles with at least this tissue fraction
    balance_slides: bool = False  # sample every slide equally often instead of every tile
    allow_mixed_tiling: bool = False  # train on stores of different µm/px or tile sizes (refused by default)
    genaug: GenAugConfig = field(default_factory=GenAugConfig)
    loss: LossConfig = field(default_factory=LossConfig)


def build_ssl_method(cfg: SSLConfig) -> SSLMethod:
    """Backbone + method heads, checked against the crops the augmentation produces."""
    backbone, embed_dim = create_backbone(cfg.backbone)
    if cfg.genaug.disentangle.bank:
        if cfg.method != "dino":
            raise ValueError(
                f"genaug.disentangle (Gen-SIS) is defined for DINO, not {cfg.method}; unset "
                "genaug.disentangle.bank or use method=dino"
            )
        method = GenSISDINO(
            backbone, embed_dim, build_config("dino", cfg.method_options), cfg.genaug.disentangle.weight
        )
    else:
        method = build_method(cfg.method, backbone, embed_dim, cfg.method_options)
    transform = build_transform(cfg.augment)
    produced = (transform.n_global, transform.n_local)
    if tuple(method.crops) != produced:
        raise ValueError(
            f"method {cfg.method} expects (global, local) crops {tuple(method.crops)} but augment "
            f"makes {produced}; set augment.n_global / augment.n_local (or method_options) to agree"
        )
    return method


def quality_weighter(cfg: SSLConfig):  # noqa: ANN201 -- QualityWeighter, imported lazily
    """GenView's pair weighter for `cfg.loss`, checked against the method."""

    loss = cfg.loss
    if cfg.method not in QUALITY_METHODS:
        raise ValueError(
            f"loss.quality_weighting applies to {', '.join(QUALITY_METHODS)} (GenView's pairwise losses), "
            f"not {cfg.method}"
        )
    if not loss.quality_scorer:
        raise ValueError("loss.quality_weighting=true needs loss.quality_scorer=MODEL (a frozen encoder folder)")
    if loss.quality_foreground not in ("pca", "hematoxylin"):
        raise ValueError(f"loss.quality_foreground must be pca or hematoxylin, got {loss.quality_foreground!r}")
    foreground = HematoxylinForeground() if loss.quality_foreground == "hematoxylin" else None
    return QualityWeighter.from_model_dir(
        loss.quality_scorer, cfg.augment.mean, cfg.augment.std, loss.quality_gamma, foreground=foreground
    )


def build_dataset(cfg: SSLConfig) -> TileDataset:
    """The training tiles with the method's views."""
    if not cfg.data:
        raise ValueError("no training data: give data=OUT (a `pathgen tile` output folder, or a list of them)")
    transform = build_transform(cfg.augment)
    dataset = TileDataset(
        cfg.data,
        view_provider(cfg.genaug, transform).views,
        min_tissue=cfg.min_tissue,
        seed=cfg.train.seed,
        allow_mixed_tiling=cfg.allow_mixed_tiling,
    )
    banks = {"genaug.bank": cfg.genaug.bank, "genaug.disentangle.bank": cfg.genaug.disentangle.bank}
    for what, bank in banks.items():
        if bank:
            check_bank_coverage(bank, map(dataset.key, range(len(dataset))), cfg.genaug.min_bank_coverage, what)
    return dataset


def view_provider(genaug: GenAugConfig, transform: MultiCropTransform) -> ViewProvider:
    """Real-tile augmentations, with bank views mixed in and Gen-SIS interpolation samples when asked."""
    provider: ViewProvider = AugmentedViews(transform)
    if genaug.bank:
        if genaug.adaptive_noise:
            check_adaptive_noise_bank(genaug.bank)
        provider = MixedSourceViews(transform, BankViewSource(genaug.bank, genaug.p, genaug.policy, transform.n_global))
    elif genaug.adaptive_noise:
        raise ValueError("genaug.adaptive_noise=true needs genaug.bank (an adaptive-noise img2img bank)")
    if genaug.disentangle.bank:
        provider = InterpolationViews(provider, transform, genaug.disentangle.bank)
    return provider


def train_ssl(cfg: SSLConfig, resume: bool = False) -> Path:
    """Train, checkpointing into `cfg.out`, then export the encoder; returns the model folder."""
    run_dir = Path(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    dataset = build_dataset(cfg)
    torch.manual_seed(
        cfg.train.seed
    )  # the initial weights depend on the seed only (baselines and ablations share them)
    method = build_ssl_method(cfg)
    if cfg.loss.quality_weighting:  # a training-time scorer: exports and step-0 copies do not load it
        method.pair_weighter = quality_weighter(cfg)
    weights = dataset.slide_weights() if cfg.balance_slides else None
    trainer = Trainer(cfg.train, method, dataset, run_dir, sampler_weights=weights)
    trainer.fit(resume=resume)
    if trainer.dist.is_main:
        export_encoder(method, cfg, run_dir / MODEL_DIR, dataset, step=trainer.step)
    trainer.dist.barrier()
    return run_dir / MODEL_DIR


def export_encoder(
    method: SSLMethod, cfg: SSLConfig, out_dir: Path, dataset: TileDataset | None = None, step: int | None = None
) -> Path:
    """Save the method's exported backbone (the teacher for DINO) as a model folder."""
    tiling = dataset.stores[0].attrs["tiling"] if dataset is not None else {}
    input_px = cfg.augment.global_size  # the network's input: tiles are resized to it, as in training
    tile_px, tile_mpp = int(tiling.get("tile_size_px", input_px)), tiling.get("target_mpp")
    config = EncoderConfig(
        timm_name=cfg.backbone.name,
        embed_dim=method.embed_dim,
        timm_kwargs=backbone_kwargs(cfg.backbone),
        input_size_px=input_px,
        mpp=mpp_per_input_pixel(tile_mpp, tile_px, input_px) if tile_mpp else None,
        mean=tuple(cfg.augment.mean),
        std=tuple(cfg.augment.std),
        source={
            "method": cfg.method,
            "run": str(Path(cfg.out).resolve()),
            "step": step,
            "tiles": {"tile_size_px": tile_px, "mpp": tile_mpp},
        },
    )
    return save_encoder(method.export_backbone(), config, out_dir)


def load_run_config(run_dir: str | Path, overrides: list[str] | None = None) -> SSLConfig:
    """The resolved config a run saved, with optional overrides."""
    return load_config(SSLConfig, Path(run_dir) / "config.yaml", overrides)


_OTHER_RUN_KINDS = {"vae": "train-vae", "ldm": "train-ldm"}  # a top-level key each run kind alone has


def check_ssl_run(run_dir: Path) -> None:
    """ValueError naming the folder unless it is a train-ssl run (VAE and LDM runs are told apart)."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a train-ssl run folder (no config.yaml)")
    try:
        values = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{config_path}: unreadable run config ({type(err).__name__})") from None
    other = [command for key, command in _OTHER_RUN_KINDS.items() if isinstance(values, dict) and key in values]
    if other:
        raise ValueError(
            f"{run_dir}: a {other[0]} run folder, not a train-ssl one; export takes SSL runs (the "
            f"{other[0]} model is already saved in {run_dir / MODEL_DIR})"
        )


def export_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """`pathgen export RUN --out MODEL`: the encoder of a run's last checkpoint as a model folder."""
    check_ssl_run(Path(run_dir))
    cfg = load_run_config(run_dir)
    method = build_ssl_method(cfg)
    state = load_checkpoint(Path(run_dir) / CHECKPOINT)
    method.load_state_dict(state["model"])
    try:
        dataset = TileDataset(cfg.data, allow_mixed_tiling=cfg.allow_mixed_tiling) if cfg.data else None
    except ValueError:
        dataset = None  # the tiles moved: the tile contract falls back to the augmentation's
    return export_encoder(method, cfg, Path(out_dir), dataset, step=int(state["step"]))


def config_from_values(values: dict) -> SSLConfig:
    """An SSLConfig from a plain dict (for tests and programmatic use)."""
    return from_dict(SSLConfig, values)


__all__ = ["SSLConfig", "build_ssl_method", "config_from_values", "export_run", "train_ssl", "to_dict"]
