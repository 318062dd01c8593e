"""eval_gen.reconstruction_references: the autoencoder's ceiling measured without a bank."""

from __future__ import annotations

import math

import pytest
import torch

from pathgen.diffusion.vae import VAEConfig, build_vae, save_vae
from pathgen.stages.eval_gen import reconstruction_references
from tiling.store import TileStore, list_store_paths


def test_real_tiles_at_their_own_size_retrieve_themselves_and_a_random_vae_does_not(tiny_tiles, tiny_encoder, tmp_path):
    torch.manual_seed(0)
    cfg = VAEConfig(block_out_channels=[8, 8], latent_channels=4, norm_num_groups=4)
    vae_dir = save_vae(build_vae(cfg), cfg, 1.0, tmp_path / "vae", image_size=32)
    store = str(list_store_paths(tiny_tiles)[0])
    sources = [(store, i) for i in range(min(16, len(TileStore(store))))]
    refs = reconstruction_references(vae_dir, tiny_encoder, sources, 32, batch_size=8, device="cpu")
    assert refs["n_sources"] == len(sources) and refs["n_tiles"] == len(sources)
    assert refs["real_at_size"]["retrieval_top1"] == 1.0  # 32-px tiles at 32 px: the sources themselves
    assert refs["real_at_size"]["fidelity"] == pytest.approx(1.0)
    assert refs["vae_reconstruction"]["retrieval_top1"] < 1.0  # an untrained VAE loses the tiles
    assert math.isfinite(refs["psnr_db"]) and refs["psnr_db"] < 20
