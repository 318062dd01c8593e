"""Sampling the embedding-conditioned LDM: DDIM or DPM-Solver++, classifier-free guidance, img2img.

Guidance follows Large-Image-Diffusion (eps = eps_u + g (eps_c - eps_u), the unconditional context
being the null embedding's projection; g = 1 is the conditional model alone, one pass). img2img
starts from the source's latent noised to the timestep at fraction `strength` of the schedule, as
diffusers' img2img pipelines do (GenView's unCLIP noise level maps to it). Every sample draws its
noise from its own generator seeded by (seed, source row, view index), so a view never depends on
which batch, device batch size or run produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
from torch import Tensor

from pathgen.diffusion.conditioning import slerp
from pathgen.diffusion.images import to_model_range, to_uint8
from pathgen.diffusion.ldm import LDMConfig, scheduler_kwargs

SAMPLERS = ("ddim", "dpm++")


@dataclass
class SamplerConfig:
    """How views are drawn from the LDM."""

    sampler: str = "ddim"  # ddim | dpm++ (DPMSolverMultistep, dpmsolver++, 2nd order)
    steps: int = 50
    guidance_scale: float = 2.0  # classifier-free guidance; 1 = conditional only (one pass)
    eta: float = 0.0  # DDIM stochasticity (0 = deterministic DDIM)


def build_scheduler(ldm_config: LDMConfig, cfg: SamplerConfig) -> DDIMScheduler | DPMSolverMultistepScheduler:
    """A fresh scheduler of `cfg.sampler` on the LDM's training noise schedule (schedulers hold per-run state)."""
    kwargs = scheduler_kwargs(ldm_config)
    if cfg.sampler == "ddim":
        return DDIMScheduler(**kwargs, clip_sample=False)
    if cfg.sampler == "dpm++":
        return DPMSolverMultistepScheduler(**kwargs, algorithm_type="dpmsolver++", solver_order=2)
    raise ValueError(f"sampler must be one of {SAMPLERS}, got {cfg.sampler!r}")


def view_seeds(seed: int, rows: Sequence[int] | np.ndarray, n_views: int) -> np.ndarray:
    """(B, K) int64 noise seeds: a function of (seed, source row, view index) only."""
    return np.array(
        [
            [
                np.random.SeedSequence([seed, int(row), k]).generate_state(1, np.uint64)[0] >> np.uint64(1)
                for k in range(n_views)
            ]
            for row in rows
        ],
        dtype=np.int64,
    ).reshape(len(rows), n_views)


def make_generators(seeds: Sequence[int] | np.ndarray) -> list[torch.Generator]:
    """One CPU generator per sample (CPU so that the noise is the same on every device)."""
    return [torch.Generator().manual_seed(int(s)) for s in np.asarray(seeds).reshape(-1)]


def _noise(
    generator: torch.Generator | Sequence[torch.Generator], shape: tuple[int, ...], device: torch.device
) -> Tensor:
    """Standard normal noise (B, *shape[1:]): per-sample from a list of generators, else one draw."""
    if isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator).to(device)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {shape[0]} samples")
    return torch.stack([torch.randn(shape[1:], generator=g) for g in generator]).to(device)


def _device(ldm) -> torch.device:  # noqa: ANN001 -- LoadedLDM
    return next(ldm.denoiser.parameters()).device


def guided_eps(
    denoiser: torch.nn.Module, latents: Tensor, t: Tensor, context: Tensor, null: Tensor | None, guidance_scale: float
) -> Tensor:
    """Classifier-free guided noise prediction eps_u + g (eps_c - eps_u); g == 1 → eps_c (one pass)."""
    timesteps = t.expand(len(latents)).to(latents.device)
    if guidance_scale == 1.0 or null is None:
        return denoiser(latents, timesteps, context)
    eps_u, eps_c = denoiser(
        torch.cat([latents, latents]), torch.cat([timesteps, timesteps]), torch.cat([null, context])
    ).chunk(2)
    return eps_u + guidance_scale * (eps_c - eps_u)


@torch.no_grad()
def sample_latents(
    ldm,
    context: Tensor,
    cfg: SamplerConfig,  # noqa: ANN001 -- LoadedLDM
    generator: torch.Generator | Sequence[torch.Generator],
    init_latents: Tensor | None = None,
    strength: float = 1.0,
) -> Tensor:
    """Denoise to scaled latents (B, C, h, w) given the cross-attention `context` (B, T, C').

    strength 1 (or no init_latents): from pure noise. strength s in (0, 1): img2img, `init_latents`
    noised to the timestep at fraction s of the schedule and denoised from there; strength 0 returns
    `init_latents` unchanged. `generator`: one per sample (batch-independent) or one for the batch.
    """
    device = _device(ldm)
    scheduler = build_scheduler(ldm.config, cfg)
    scheduler.set_timesteps(cfg.steps, device=device)
    timesteps = scheduler.timesteps
    shape = (len(context), ldm.codec.latent_channels, ldm.latent_size, ldm.latent_size)
    if init_latents is not None and strength < 1.0:
        if not 0.0 <= strength:
            raise ValueError(f"img2img strength must be in [0, 1], got {strength}")
        n_run = min(int(cfg.steps * strength + 1e-6), cfg.steps)
        if n_run == 0:
            return init_latents
        start = (cfg.steps - n_run) * scheduler.order
        timesteps = timesteps[start:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
        init_latents = init_latents.to(device)
        latents = scheduler.add_noise(init_latents, _noise(generator, shape, device), timesteps[:1].repeat(shape[0]))
    else:
        latents = _noise(generator, shape, device) * scheduler.init_noise_sigma
    context = context.to(device)
    null = ldm.denoiser.null_context(len(context), device, context.dtype) if cfg.guidance_scale != 1.0 else None
    stochastic = cfg.sampler == "ddim" and cfg.eta > 0
    for t in timesteps:
        eps = guided_eps(ldm.denoiser, scheduler.scale_model_input(latents, t), t, context, null, cfg.guidance_scale)
        if stochastic:
            latents = scheduler.step(
                eps, t, latents, eta=cfg.eta, variance_noise=_noise(generator, shape, device)
            ).prev_sample
        else:
            latents = scheduler.step(eps, t, latents).prev_sample
    return latents


def model_images(tiles_u8: Tensor | np.ndarray, image_size: int) -> Tensor:
    """uint8 tiles ((B, 3, H, W) tensor or (B, H, W, 3) array) → float (B, 3, S, S) in [-1, 1], resized if needed."""
    images = to_model_range(tiles_u8)
    if images.shape[-1] != image_size or images.shape[-2] != image_size:
        images = F.interpolate(
            images, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
        ).clamp(-1.0, 1.0)
    return images


@torch.no_grad()
def render(
    ldm,
    contexts: Tensor,
    seeds: np.ndarray,
    cfg: SamplerConfig,  # noqa: ANN001 -- LoadedLDM
    init_latents: Tensor | None = None,
    strengths: np.ndarray | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """uint8 (M, S, S, 3) images of M samples (context, seed[, init latent, strength]), `batch_size` at a time.

    Samples of equal strength are denoised together; each sample's result depends only on its own inputs.
    """
    m = len(contexts)
    strengths = (
        np.ones(m, np.float32) if strengths is None else np.broadcast_to(np.asarray(strengths, np.float32), (m,))
    )
    out = np.zeros((m, ldm.image_size, ldm.image_size, 3), np.uint8)
    for value in np.unique(strengths):
        group = np.flatnonzero(strengths == value)
        for start in range(0, len(group), batch_size):
            idx = group[start : start + batch_size]
            init = init_latents[idx] if init_latents is not None else None
            latents = sample_latents(ldm, contexts[idx], cfg, make_generators(seeds[idx]), init, float(value))
            out[idx] = to_uint8(ldm.codec.decode(latents))
    return out


def _contexts(ldm, embeddings: Tensor, n_views: int) -> Tensor:  # noqa: ANN001 -- LoadedLDM
    """(B*K, T, C') contexts: each source's context repeated for its K views (source-major)."""
    context = ldm.denoiser.context(torch.as_tensor(embeddings).float().to(_device(ldm)))
    return context.repeat_interleave(n_views, dim=0)


def _rows(rows: Sequence[int] | np.ndarray | None, n: int) -> np.ndarray:
    return np.arange(n) if rows is None else np.asarray(rows)


def generate_views(
    ldm,
    embeddings: Tensor,
    n_views: int,
    cfg: SamplerConfig,
    seed: int,  # noqa: ANN001
    rows: Sequence[int] | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """K views per source embedding (B, D) from pure noise: uint8 (B, K, S, S, 3). `rows` (default 0..B-1)
    are the sources' bank rows, which with `seed` and the view index fix each view's noise."""
    b = len(embeddings)
    seeds = view_seeds(seed, _rows(rows, b), n_views).reshape(-1)
    images = render(ldm, _contexts(ldm, embeddings, n_views), seeds, cfg, batch_size=batch_size)
    return images.reshape(b, n_views, *images.shape[1:])


def interpolate_views(
    ldm,
    e1: Tensor,
    e2: Tensor,
    alphas: np.ndarray | float,
    cfg: SamplerConfig,  # noqa: ANN001
    seed: int,
    rows: Sequence[int] | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """Gen-SIS interpolated views: view k of source b is conditioned on slerp(e1[b], e2[b], alphas[b, k])
    (alpha = weight on e1; alphas (B, K), or a scalar with K = 1). uint8 (B, K, S, S, 3)."""

    b = len(e1)
    alphas = np.asarray(alphas, np.float32)
    alphas = alphas.reshape(1, 1).repeat(b, 0) if alphas.ndim == 0 else alphas.reshape(b, -1)
    k = alphas.shape[1]
    e1 = torch.as_tensor(e1).float().repeat_interleave(k, dim=0)
    e2 = torch.as_tensor(e2).float().repeat_interleave(k, dim=0)
    mixed = slerp(e1, e2, torch.from_numpy(alphas.reshape(-1)))
    seeds = view_seeds(seed, _rows(rows, b), k).reshape(-1)
    images = render(ldm, _contexts(ldm, mixed, 1), seeds, cfg, batch_size=batch_size)
    return images.reshape(b, k, *images.shape[1:])


def img2img_views(
    ldm,
    tiles_u8: Tensor | np.ndarray,
    embeddings: Tensor,  # noqa: ANN001 -- LoadedLDM
    strength: float | np.ndarray,
    cfg: SamplerConfig,
    seed: int,
    n_views: int = 1,
    rows: Sequence[int] | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """K img2img views per source tile: its latent noised at `strength` (a scalar, one per source (B,),
    or one per view (B, K)) and denoised conditioned on its embedding. uint8 (B, K, S, S, 3)."""
    b = len(embeddings)
    init = ldm.codec.encode(model_images(tiles_u8, ldm.image_size).to(_device(ldm)))
    strengths = np.asarray(strength, np.float32)
    strengths = np.broadcast_to(strengths.reshape(b, -1) if strengths.ndim else strengths, (b, n_views))
    seeds = view_seeds(seed, _rows(rows, b), n_views).reshape(-1)
    images = render(
        ldm,
        _contexts(ldm, embeddings, n_views),
        seeds,
        cfg,
        init.repeat_interleave(n_views, dim=0),
        strengths.reshape(-1),
        batch_size,
    )
    return images.reshape(b, n_views, *images.shape[1:])
