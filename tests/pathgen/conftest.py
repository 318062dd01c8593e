"""Fixtures shared by the pathgen tests: a small tile folder and a tiny saved encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pathgen.cli import main
from pathgen.models import BackboneConfig, EncoderConfig, create_backbone, save_encoder
from pathgen.models.backbone import backbone_kwargs


@pytest.fixture(scope="session")
def tiny_tiles(synthetic_dir, tmp_path_factory) -> Path:
    """The two session synthetic slides tiled at 1 µm/px into 32-px tiles (a `pathgen tile` folder)."""
    out = tmp_path_factory.mktemp("diffusion_tiles") / "tiles"
    assert main(["tile", str(synthetic_dir), "--out", str(out), "--mpp", "1.0", "--tile-size", "32",
                 "--workers", "1", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A random-init timm test ViT saved as a pathgen model folder (32-px tiles at 1 µm/px)."""
    torch.manual_seed(0)
    cfg = BackboneConfig(name="test_vit", img_size=32)
    model, dim = create_backbone(cfg)
    out = tmp_path_factory.mktemp("diffusion_encoder") / "encoder"
    return save_encoder(model, EncoderConfig("test_vit", dim, backbone_kwargs(cfg), tile_size_px=32, mpp=1.0), out)
