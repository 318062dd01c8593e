"""Sampling the embedding-conditioned LDM: shapes, determinism, guidance, SLERP end points, img2img, samplers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pathgen.diffusion.images import to_uint8
from pathgen.diffusion.ldm import ConditionedDenoiser, LDMConfig
from pathgen.diffusion.ldm_io import LoadedLDM
from pathgen.diffusion.sampling import (
    SamplerConfig,
    build_scheduler,
    generate_views,
    img2img_views,
    interpolate_views,
    make_generators,
    model_images,
    sample_latents,
    view_seeds,
)
from pathgen.diffusion.vae import LatentCodec, VAEConfig, build_vae
from pathgen.models import load_encoder

FAST = SamplerConfig(sampler="ddim", steps=4, guidance_scale=2.0)


def tiny_ldm(encoder_dir: Path) -> LoadedLDM:
    """A random-init LDM on 32-px images (f4 VAE → 8×8×4 latents) conditioned by the tiny test encoder."""
    torch.manual_seed(0)
    codec = LatentCodec(build_vae(VAEConfig(block_out_channels=[16, 32, 32], norm_num_groups=8)), 0.5)
    cfg = LDMConfig(block_out_channels=[16, 32], attention_head_dim=8, cross_attention_dim=16, norm_num_groups=8)
    encoder, encoder_config = load_encoder(encoder_dir)
    denoiser = ConditionedDenoiser(cfg, encoder_config.embed_dim, codec.latent_channels, 8).eval()
    return LoadedLDM(denoiser, codec, encoder.eval(), encoder_config, cfg, 32, 8, encoder_dir)


def assert_same_u8(a: np.ndarray, b: np.ndarray) -> None:
    """Equal up to one grey level (float sums differ in the last bit between batch sizes)."""
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.fixture(scope="module")
def ldm(tiny_encoder) -> LoadedLDM:
    return tiny_ldm(tiny_encoder)


@pytest.fixture(scope="module")
def emb(ldm) -> torch.Tensor:
    return torch.randn(3, ldm.encoder_config.embed_dim, generator=torch.Generator().manual_seed(1))


def test_views_are_uint8_images_of_image_size(ldm, emb):
    views = generate_views(ldm, emb, 2, FAST, seed=0)
    assert views.shape == (3, 2, 32, 32, 3) and views.dtype == np.uint8
    assert views.std() > 0


def test_same_seed_same_views_other_seed_other_views(ldm, emb):
    a = generate_views(ldm, emb, 2, FAST, seed=0)
    assert np.array_equal(a, generate_views(ldm, emb, 2, FAST, seed=0))
    b = generate_views(ldm, emb, 2, FAST, seed=1)
    assert not np.array_equal(a, b)
    assert not np.array_equal(a[:, 0], a[:, 1])  # the K views of a source differ


def test_a_view_does_not_depend_on_its_batch(ldm, emb):
    together = generate_views(ldm, emb, 2, FAST, seed=0, rows=[5, 6, 7], batch_size=6)
    alone = generate_views(ldm, emb[1:2], 2, FAST, seed=0, rows=[6], batch_size=1)
    assert_same_u8(together[1], alone[0])
    assert view_seeds(0, [6], 2)[0].tolist() == view_seeds(0, [5, 6, 7], 2)[1].tolist()


def test_guidance_one_is_the_conditional_model_alone(ldm, emb):
    cfg = SamplerConfig(sampler="ddim", steps=4, guidance_scale=1.0)
    context = ldm.denoiser.context(emb)
    seeds = [11, 12, 13]
    got = sample_latents(ldm, context, cfg, make_generators(seeds))
    scheduler = build_scheduler(ldm.config, cfg)
    scheduler.set_timesteps(cfg.steps)
    latents = torch.stack([torch.randn(4, 8, 8, generator=g) for g in make_generators(seeds)])
    with torch.no_grad():
        for t in scheduler.timesteps:
            latents = scheduler.step(ldm.denoiser(latents, t.expand(3), context), t, latents).prev_sample
    torch.testing.assert_close(got, latents)
    guided = sample_latents(ldm, context, SamplerConfig("ddim", 4, 3.0), make_generators(seeds))
    assert not torch.allclose(guided, got)


def test_slerp_alpha_one_reproduces_plain_conditioning(ldm, emb):
    other = torch.randn_like(emb)
    mixed = interpolate_views(ldm, emb, other, np.ones((3, 2)), FAST, seed=4)
    plain = generate_views(ldm, emb, 2, FAST, seed=4)
    assert_same_u8(mixed, plain)
    half = interpolate_views(ldm, emb, other, np.full((3, 2), 0.5), FAST, seed=4)
    assert not np.array_equal(half, plain)


def test_img2img_strength_zero_returns_the_input(ldm, emb):
    tiles = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    init = ldm.codec.encode(model_images(tiles, 32))
    same = sample_latents(ldm, ldm.denoiser.context(emb), FAST, make_generators([1, 2, 3]), init, strength=0.0)
    assert same is init
    roundtrip = to_uint8(ldm.codec.decode(init))
    views = img2img_views(ldm, tiles, emb, 0.0, FAST, seed=0, n_views=2)
    assert_same_u8(views[:, 0], roundtrip)
    assert_same_u8(views[:, 1], roundtrip)
    noised = img2img_views(ldm, tiles, emb, np.array([0.0, 0.5, 1.0]), FAST, seed=0, n_views=2)
    assert_same_u8(noised[0], views[0])
    assert np.abs(noised[1].astype(int) - views[1].astype(int)).max() > 1
    assert_same_u8(noised[2], generate_views(ldm, emb, 2, FAST, seed=0)[2])  # strength 1 = from noise


def test_ddim_and_dpm_solver_both_run_and_differ(ldm, emb):
    context = ldm.denoiser.context(emb)
    ddim = sample_latents(ldm, context, SamplerConfig("ddim", 6, 2.0), make_generators([1, 2, 3]))
    dpm = sample_latents(ldm, context, SamplerConfig("dpm++", 6, 2.0), make_generators([1, 2, 3]))
    assert torch.isfinite(ddim).all() and torch.isfinite(dpm).all()
    assert not torch.allclose(ddim, dpm)
    init = torch.zeros_like(ddim)
    for sampler in ("ddim", "dpm++"):  # img2img half-way with either sampler
        half = sample_latents(ldm, context, SamplerConfig(sampler, 6, 2.0), make_generators([1, 2, 3]), init, 0.5)
        assert torch.isfinite(half).all() and not torch.equal(half, init)
    stochastic = SamplerConfig("ddim", 4, 2.0, eta=1.0)
    a = sample_latents(ldm, context, stochastic, make_generators([1, 2, 3]))
    b = sample_latents(ldm, context[1:2], stochastic, make_generators([2]))
    torch.testing.assert_close(a[1:2], b, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="sampler must be one of"):
        build_scheduler(ldm.config, SamplerConfig(sampler="euler"))
