"""Fixtures shared by the pathgen tests: one torch thread, a small tile folder, a tiny saved encoder and a
tiny saved LDM."""

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
    assert (
        main(
            [
                "tile",
                str(synthetic_dir),
                "--out",
                str(out),
                "--mpp",
                "1.0",
                "--tile-size",
                "32",
                "--workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    return out


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> Path:
    """A random-init timm test ViT saved as a pathgen model folder (32-px tiles at 1 µm/px)."""
    torch.manual_seed(0)
    cfg = BackboneConfig(name="test_vit", img_size=32)
    model, dim = create_backbone(cfg)
    out = tmp_path_factory.mktemp("diffusion_encoder") / "encoder"
    return save_encoder(model, EncoderConfig("test_vit", dim, backbone_kwargs(cfg), input_size_px=32, mpp=1.0), out)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One intra-op thread, as `make test` sets: the tests' tiny models are op-overhead bound, and two
    threads per process on a shared 2-core machine made them 5-10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_ldm_dir(tiny_encoder, tmp_path_factory) -> Path:
    """A saved random-init LDM (f4 VAE, 8×8×4 latents, 32-px images) conditioned by the tiny encoder."""
    from pathgen.diffusion.ldm import ConditionedDenoiser, LDMConfig
    from pathgen.diffusion.ldm_io import save_ldm
    from pathgen.diffusion.vae import VAEConfig, build_vae, save_vae
    from pathgen.models.io import read_encoder_config

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny_ldm")
    vae_cfg = VAEConfig(block_out_channels=[16, 32, 32], norm_num_groups=8)
    vae_dir = save_vae(build_vae(vae_cfg), vae_cfg, 0.5, root / "vae", image_size=32)
    cfg = LDMConfig(block_out_channels=[16, 32], attention_head_dim=8, cross_attention_dim=16, norm_num_groups=8)
    denoiser = ConditionedDenoiser(cfg, read_encoder_config(tiny_encoder).embed_dim, 4, 8)
    return save_ldm(denoiser, root / "model", vae_dir, tiny_encoder, image_size=32)
