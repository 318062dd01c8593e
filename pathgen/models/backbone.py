"""Backbones from timm by name, never with downloaded weights: a pooled-feature encoder per name.

Every backbone maps (B, 3, H, W) to (B, embed_dim) (timm with ``num_classes=0``). ViTs are built
with ``dynamic_img_size`` so that one model sees DINO's global and local crops alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file
from torch import nn

from pathgen.config import ConfigError, check


@dataclass
class BackboneConfig:
    """Which timm architecture to build and how."""

    name: str = "vit_small_patch16_224"
    img_size: int = 224  # ViTs: the size their position embedding is laid out for
    drop_path_rate: float = 0.0
    init_checkpoint: str | None = None  # local .safetensors to start from (e.g. a published encoder)
    kwargs: dict = field(default_factory=dict)  # extra timm keyword arguments (patch_size, …)

    def __post_init__(self) -> None:
        """An unknown architecture name fails here, naming the key, not when the model is built."""
        check(
            timm.is_model(self.name),
            "name",
            f"{self.name!r} is not a timm architecture "
            "(see timm.list_models(); nothing is downloaded, so hub names do not work)",
        )


def is_vit(name: str) -> bool:
    """True for the timm vision-transformer families that take img_size / dynamic_img_size."""
    return name.startswith(("vit_", "deit", "eva", "beit", "test_vit"))


def backbone_kwargs(cfg: BackboneConfig) -> dict:
    """The timm keyword arguments that rebuild this backbone (saved beside exported weights)."""
    kwargs = {"num_classes": 0, "drop_path_rate": cfg.drop_path_rate, **cfg.kwargs}
    if is_vit(cfg.name):
        kwargs.update(img_size=cfg.img_size, dynamic_img_size=True)
    return kwargs


def create_backbone(cfg: BackboneConfig) -> tuple[nn.Module, int]:
    """The backbone and its feature size; randomly initialised unless `init_checkpoint` is set."""
    try:
        model = timm.create_model(cfg.name, pretrained=False, **backbone_kwargs(cfg))
    except TypeError as err:  # an unknown keyword reaches the model's constructor
        raise ConfigError(f"backbone.kwargs: {cfg.name} does not take them ({err})") from None
    if cfg.init_checkpoint:
        load_backbone_weights(model, Path(cfg.init_checkpoint))
    return model, int(model.num_features)


def load_backbone_weights(model: nn.Module, path: Path) -> None:
    """Load a local safetensors state dict into `model`, ignoring classifier heads, strictly otherwise."""
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: initial weights must be a .safetensors file (pickles are never loaded)")
    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith(("head.", "fc.", "classifier."))}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(("head.", "fc.", "classifier."))]
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not fit the backbone (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


@torch.no_grad()
def embed_dim_of(model: nn.Module, img_size: int) -> int:
    """Feature size by a dry run, for models that do not say."""
    was_training = model.training
    model.eval()
    dim = int(model(torch.zeros(1, 3, img_size, img_size)).shape[-1])
    model.train(was_training)
    return dim
