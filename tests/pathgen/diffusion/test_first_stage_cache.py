"""The first-stage cache changes nothing but the work: the same losses and weights as recomputing the VAE
posterior and the embedding of every sample, each distinct image encoded once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

from pathgen.checkpoint import load_checkpoint
from pathgen.cli import main
from pathgen.config import load_config
from pathgen.diffusion.training_data import N_DIHEDRAL, DiffusionTiles, apply_dihedral, dihedral
from pathgen.diffusion.vae import VAEConfig, build_vae, save_vae
from pathgen.stages.train_ldm import LDMTrainConfig, build_objective

TINY = Path(__file__).resolve().parents[3] / "configs" / "diffusion" / "ldm_tiny.yaml"
QUIET = ["train.progress=false", "train.checkpoint_every=1000"]


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = VAEConfig(block_out_channels=[16, 32, 32], norm_num_groups=8)
    return save_vae(build_vae(cfg), cfg, 1.0, tmp_path_factory.mktemp("cache_vae") / "vae")


def test_dihedral_variants_are_the_eight_and_draws_are_unchanged() -> None:
    tile = torch.arange(3 * 4 * 4).view(3, 4, 4)
    variants = [apply_dihedral(tile, k) for k in range(N_DIHEDRAL)]
    assert len({v.numpy().tobytes() for v in variants}) == N_DIHEDRAL
    assert torch.equal(variants[0], tile)
    for seed in range(20):  # the draw is the one `dihedral` always made: rot90 by `turns`, then flip if odd
        turns, flip = torch.randint(0, 4, (2,), generator=torch.Generator().manual_seed(seed)).tolist()
        expected = torch.rot90(tile, turns, dims=(-2, -1))
        expected = torch.flip(expected, dims=(-1,)) if flip % 2 else expected
        assert torch.equal(dihedral(tile, torch.Generator().manual_seed(seed)), expected)


def test_pixels_key_is_equal_exactly_when_the_pixels_are(tiny_tiles) -> None:
    dataset = DiffusionTiles([tiny_tiles], 32)
    seen: dict[int, bytes] = {}
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for index in range(0, len(dataset), 7):
            item = dataset[index]
            key, pixels = int(item["pixels_key"]), item["tile_u8"].numpy().tobytes()
            assert key // N_DIHEDRAL == index
            assert seen.setdefault(key, pixels) == pixels
    assert int(DiffusionTiles([tiny_tiles], 32, flips=False)[5]["pixels_key"]) == 5 * N_DIHEDRAL


@pytest.mark.parametrize("embeddings", ["on the fly", "precomputed"])
@pytest.mark.parametrize("sample_posterior", [True, False])
def test_cached_losses_equal_recomputed_ones(tiny_tiles, tiny_encoder, vae_dir, tmp_path, embeddings, sample_posterior):
    values = [f"data={tiny_tiles}", f"encoder={tiny_encoder}", f"vae={vae_dir}", f"sample_posterior={sample_posterior}"]
    plain = build_objective(load_config(LDMTrainConfig, TINY, values))
    cached = build_objective(load_config(LDMTrainConfig, TINY, [*values, "cache_first_stage=true"]))
    cached.denoiser.load_state_dict(plain.denoiser.state_dict())
    dataset = DiffusionTiles([tiny_tiles], 32)
    encoded = []
    original = cached.codec.posterior
    cached.codec.posterior = lambda images: encoded.append(len(images)) or original(images)
    batches = [[0, 1, 2, 1], [2, 3, 0, 0], [4, 1, 3, 2]]  # repeats within and across batches
    for indices in batches:
        batch = default_collate([dataset[i] for i in indices])
        if embeddings == "precomputed":
            batch["embedding"] = plain.embed(batch["tile_u8"])
        losses = []
        for objective in (plain, cached):
            torch.manual_seed(7)
            losses.append(objective(batch)["loss"])
        torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=1e-5)
    assert sum(encoded) == len(cached.first_stage) == 5  # tiles 0-4, one rotation each (epoch 0)


def test_a_cached_run_trains_to_the_same_weights(tiny_tiles, tiny_encoder, vae_dir, tmp_path) -> None:
    common = [f"data={tiny_tiles}", f"encoder={tiny_encoder}", f"vae={vae_dir}", "train.max_steps=30", *QUIET]
    for name, extra in (("plain", []), ("cached", ["cache_first_stage=true"])):
        assert main(["train-ldm", "--config", str(TINY), f"out={tmp_path / name}", *common, *extra]) == 0
    plain = load_checkpoint(tmp_path / "plain" / "checkpoints" / "last.pt")["model"]
    cached = load_checkpoint(tmp_path / "cached" / "checkpoints" / "last.pt")["model"]
    assert plain.keys() == cached.keys()
    for key, value in plain.items():
        torch.testing.assert_close(cached[key], value, atol=1e-4, rtol=1e-4, msg=key)
