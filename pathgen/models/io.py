"""Encoders on disk: pathgen model folders, timm folders and published-encoder recipes, one loader.

An encoder argument (``pathgen embed MODEL``, ``bench --encoder``, an LDM's encoder) is one of:

1. a pathgen model folder — ``model.safetensors`` + ``config.json`` in timm's ``save_for_hf``
   layout (``architecture``, ``num_features``, ``model_args``, ``pretrained_cfg``) with pathgen's
   own block under ``"pathgen"`` (kind ``pathgen-encoder``, ``format_version``, the input
   contract). ``timm.create_model("local-dir:DIR", pretrained=True)`` loads it as it is. Folders
   written before format version 2 (``timm_name``/``timm_kwargs``/``tile_size_px`` at the top
   level) still load;
2. a timm folder as ``save_for_hf`` and Hub snapshots lay it out, with the preprocessing of its
   ``pretrained_cfg`` (input size, interpolation, crop, mean/std);
3. ``<recipe>:<weights file or folder>`` for a published encoder (`pathgen.models.published`).

The config's ``input_size_px`` is the network input; ``mpp`` is µm per input pixel. Weights are
safetensors; pickles only with ``allow_pickle`` and ``torch.load(weights_only=True)``. timm
keyword arguments from disk pass the allow-list of `pathgen.models.timm_args`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import save_for_hf
from torch import nn

from pathgen import __version__
from pathgen.models.folder import (
    CONFIG,
    FORMAT_VERSION,
    WEIGHTS,
    ModelFolderError,
    check_kind,
    load_weights,
    read_config,
    write_config,
)
from pathgen.models.preprocess import INTERPOLATIONS
from pathgen.models.published import Recipe, recipe_kwargs, split_recipe_spec
from pathgen.models.timm_args import build_kwargs, check_timm_kwargs

KIND = "pathgen-encoder"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.pth", "model.pth")
POOLINGS = ("model", "cls+mean_patch")
CLASSIFIER_PREFIXES = ("head.", "fc.", "classifier.")  # a Hub classifier's head is dropped: encoders are headless


@dataclass
class EncoderConfig:
    """What a user of a saved encoder needs to know to feed it tiles."""

    timm_name: str
    embed_dim: int
    timm_kwargs: dict = field(default_factory=dict)
    input_size_px: int = 224  # network input: tiles are resized (shorter side) and centre-cropped to it
    mpp: float | None = 0.5  # µm per input pixel
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"
    crop_pct: float = 1.0  # shorter side resized to input_size_px / crop_pct before the centre crop
    pooling: str = "model"  # "model": timm's pooled output; "cls+mean_patch": CLS ⊕ mean of patch tokens
    source: dict = field(default_factory=dict)  # method, run folder, step … or the recipe / timm folder
    pathgen_version: str = __version__


def encoder_config_from_dict(values: dict[str, Any], path: Path) -> EncoderConfig:
    """An EncoderConfig from JSON values, reading format-1 names (``tile_size_px``) tolerantly."""
    values = dict(values)
    if "tile_size_px" in values:  # format 1 called the network input tile_size_px
        values.setdefault("input_size_px", values.pop("tile_size_px"))
    known = {f.name for f in fields(EncoderConfig)}
    try:
        config = EncoderConfig(**{k: v for k, v in values.items() if k in known})
        config.mean, config.std = tuple(config.mean), tuple(config.std)
        config.embed_dim, config.input_size_px = int(config.embed_dim), int(config.input_size_px)
        config.crop_pct = float(config.crop_pct)
    except (TypeError, ValueError) as err:
        raise ModelFolderError(f"{path}: not a pathgen encoder config ({err})") from err
    config.timm_kwargs = check_timm_kwargs(config.timm_kwargs, path)
    _check_contract(config, path)
    return config


def _check_contract(config: EncoderConfig, path: Path) -> None:
    if len(config.mean) != 3 or len(config.std) != 3 or min(config.std) <= 0:
        raise ModelFolderError(f"{path}: mean and std must be 3 numbers (std > 0)")
    if config.interpolation not in INTERPOLATIONS or config.pooling not in POOLINGS:
        raise ModelFolderError(f"{path}: interpolation must be one of {INTERPOLATIONS} and pooling one of {POOLINGS}")
    if not 0 < config.crop_pct <= 1 or config.input_size_px < 1:
        raise ModelFolderError(f"{path}: crop_pct must be in (0, 1] and input_size_px positive")


def _from_timm_config(config: dict[str, Any], path: Path) -> EncoderConfig:
    """The input contract of a plain timm folder (``save_for_hf`` / Hub layout) from its pretrained_cfg."""
    pretrained = config.get("pretrained_cfg", {})
    try:
        size = int(pretrained.get("input_size", (3, 224, 224))[-1])
        values = {
            "timm_name": config["architecture"],
            "embed_dim": int(config.get("num_features") or 0),
            "timm_kwargs": {**config.get("model_args", {}), "num_classes": 0},
            "input_size_px": size,
            "mean": pretrained.get("mean", (0.485, 0.456, 0.406)),
            "std": pretrained.get("std", (0.229, 0.224, 0.225)),
            "interpolation": pretrained.get("interpolation", "bicubic"),
            "crop_pct": pretrained.get("crop_pct", 1.0),
            "mpp": None,
            "source": {"format": "timm", "path": str(path.parent.resolve())},
        }
    except (TypeError, ValueError, KeyError, IndexError) as err:
        raise ModelFolderError(f"{path}: not a timm model config ({err})") from err
    return encoder_config_from_dict(values, path)


def read_encoder_config(model_dir: str | Path) -> EncoderConfig:
    """The config of a pathgen (format 1 or 2) or timm encoder folder, checked for the fields pathgen needs."""
    model_dir = Path(model_dir)
    config, path = read_config(model_dir), model_dir / CONFIG
    if isinstance(config.get("pathgen"), dict):
        check_kind(config["pathgen"], KIND, model_dir)
        return encoder_config_from_dict(config["pathgen"], path)
    if "timm_name" in config:  # format 1: pathgen's own fields at the top level
        return encoder_config_from_dict(config, path)
    if "architecture" in config:
        return _from_timm_config(config, path)
    raise ModelFolderError(
        f"{path}: not a pathgen encoder config (no 'pathgen' block, 'timm_name' or timm "
        f"'architecture'); `pathgen export` writes one"
    )


def save_encoder(model: nn.Module, config: EncoderConfig, out_dir: str | Path) -> Path:
    """Write an encoder folder that pathgen and plain timm (``local-dir:``) both load.

    Written into a temporary sibling folder, then moved in file by file with ``config.json`` last,
    so a killed export never leaves a folder that reads as complete.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    data_config = {
        "input_size": (3, config.input_size_px, config.input_size_px),
        "mean": tuple(config.mean),
        "std": tuple(config.std),
        "interpolation": config.interpolation,
        "crop_pct": config.crop_pct,
        "crop_mode": "center",
    }
    block = {"kind": KIND, "format_version": FORMAT_VERSION, **asdict(config)}
    try:
        save_for_hf(model, str(tmp), model_config={"pathgen": block}, safe_serialization=True, data_config=data_config)
        out_dir.mkdir(exist_ok=True)
        (out_dir / CONFIG).unlink(missing_ok=True)  # the old folder no longer reads as complete
        os.replace(tmp / WEIGHTS, out_dir / WEIGHTS)
        write_config(out_dir, read_config(tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


@dataclass
class EncoderSource:
    """An encoder argument resolved: its config, its weights file and a default name."""

    config: EncoderConfig
    weights: Path
    name: str
    recipe: Recipe | None = None


def _folder_weights(folder: Path, allow_pickle: bool) -> Path:
    if (folder / WEIGHTS).is_file():
        return folder / WEIGHTS
    pickles = [folder / name for name in PICKLE_WEIGHTS if (folder / name).is_file()]
    if pickles and allow_pickle:
        return pickles[0]
    hint = f" ({pickles[0].name} is a pickle: pass --allow-pickle-weights)" if pickles else ""
    raise ModelFolderError(f"{folder}: no {WEIGHTS}{hint}")


def _recipe_source(recipe: Recipe, weights_spec: str, allow_pickle: bool) -> EncoderSource:
    weights = Path(weights_spec).expanduser()
    if weights.is_dir():
        weights = _folder_weights(weights, allow_pickle)
    if not weights.is_file():
        raise ModelFolderError(
            f"{weights}: weights file not found (recipe {recipe.name}: download the weights from {recipe.sources[0]})"
        )
    config = EncoderConfig(
        timm_name=recipe.timm_name,
        embed_dim=recipe.embed_dim,
        timm_kwargs=dict(recipe.timm_kwargs),
        input_size_px=recipe.input_size_px,
        mpp=recipe.mpp,
        mean=recipe.mean,
        std=recipe.std,
        interpolation=recipe.interpolation,
        crop_pct=recipe.crop_pct,
        pooling=recipe.pooling,
        source={
            "format": "recipe",
            "recipe": recipe.name,
            "weights": str(weights.resolve()),
            "sources": list(recipe.sources),
        },
    )
    return EncoderSource(config, weights, recipe.name, recipe)


def open_encoder(spec: str | Path, allow_pickle: bool = False) -> EncoderSource:
    """Resolve an encoder argument (pathgen folder, timm folder or ``<recipe>:<weights>``) without building it."""
    recipe = split_recipe_spec(str(spec)) if not Path(spec).exists() else None
    if recipe is not None:
        return _recipe_source(recipe[0], recipe[1], allow_pickle)
    folder = Path(spec)
    if not folder.is_dir():
        raise ModelFolderError(
            f"{spec}: not a model folder and not <recipe>:<weights> (recipes: "
            f"uni, uni2-h, virchow2, h-optimus-0, h-optimus-1, prov-gigapath)"
        )
    return EncoderSource(read_encoder_config(folder), _folder_weights(folder, allow_pickle), folder.resolve().name)


class ClsMeanPatch(nn.Module):
    """Virchow's embedding: the CLS token concatenated with the mean of the patch tokens (registers excluded)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, 2D)."""
        tokens = self.model(images)  # built with global_pool="": all tokens, final norm applied
        patches = tokens[:, self.model.num_prefix_tokens :]
        return torch.cat([tokens[:, 0], patches.mean(dim=1)], dim=-1)


def build_encoder(source: EncoderSource, device: str | torch.device = "cpu", allow_pickle: bool = False) -> nn.Module:
    """The encoder of a resolved source with its weights loaded strictly, in eval mode on `device`."""
    config = source.config
    state = load_weights(source.weights, allow_pickle=allow_pickle)
    if source.recipe is not None:
        config.timm_kwargs = _fit_recipe(source.recipe, state, source.weights)
    try:
        model = timm.create_model(config.timm_name, pretrained=False, **build_kwargs(config.timm_kwargs))
    except (RuntimeError, TypeError, ValueError, KeyError, AssertionError) as err:
        where = (
            f"{source.weights}: weights do not fit {config.timm_name} as the {source.recipe.name} recipe builds it"
            if source.recipe
            else f"{source.weights.parent / CONFIG}: timm cannot build {config.timm_name!r}"
        )
        raise ModelFolderError(f"{where} ({str(err).splitlines()[0] if str(err) else type(err).__name__})") from err
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(CLASSIFIER_PREFIXES)}  # headless
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ModelFolderError(
            f"{source.weights}: weights do not fit {config.timm_name} "
            f"({str(err).splitlines()[1 if len(str(err).splitlines()) > 1 else 0].strip()})"
        ) from err
    encoder = ClsMeanPatch(model) if config.pooling == "cls+mean_patch" else model
    encoder = encoder.to(device).eval()
    config.embed_dim = _output_dim(encoder, config.input_size_px, device)
    return encoder


def _fit_recipe(recipe: Recipe, state: dict[str, torch.Tensor], path: Path) -> dict:
    """The recipe's kwargs, with depth and width read from the weights (so reduced stand-ins load)."""
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("blocks.")}
    if "cls_token" not in state or not blocks:
        raise ModelFolderError(f"{path}: not the weights of a {recipe.name} ViT (no cls_token / blocks)")
    width, depth = int(state["cls_token"].shape[-1]), max(blocks) + 1
    full = {"depth": 24, "embed_dim": 768, "num_heads": 12, **_family_defaults(recipe.timm_name), **recipe.timm_kwargs}
    head_dim = full["embed_dim"] // full["num_heads"]
    reduced = (
        {}
        if (width, depth) == (full["embed_dim"], full["depth"])
        else {"depth": depth, "embed_dim": width, "num_heads": max(1, width // head_dim)}
    )
    return recipe_kwargs(recipe, reduced)


def _family_defaults(timm_name: str) -> dict:
    """Depth / width / heads timm's named ViT constructors use (for the ones the recipes name)."""
    return {
        "vit_large_patch16_224": {"depth": 24, "embed_dim": 1024, "num_heads": 16},
        "vit_huge_patch14_224": {"depth": 32, "embed_dim": 1280, "num_heads": 16},
        "vit_giant_patch14_224": {"depth": 40, "embed_dim": 1408, "num_heads": 16},
        "vit_giant_patch14_reg4_dinov2": {"depth": 40, "embed_dim": 1536, "num_heads": 24},
        "vit_giant_patch14_dinov2": {"depth": 40, "embed_dim": 1536, "num_heads": 24},
    }.get(timm_name, {})


@torch.no_grad()
def _output_dim(encoder: nn.Module, size: int, device: str | torch.device) -> int:
    return int(encoder(torch.zeros(1, 3, size, size, device=device)).shape[-1])


def load_encoder(
    spec: str | Path, device: str | torch.device = "cpu", allow_pickle: bool = False
) -> tuple[nn.Module, EncoderConfig]:
    """The encoder an argument names (pathgen folder, timm folder or recipe), in eval mode, and its config."""
    source = open_encoder(spec, allow_pickle)
    return build_encoder(source, device, allow_pickle), source.config
