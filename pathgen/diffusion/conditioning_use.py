"""How much a trained denoiser uses its conditioning: its prediction error with the right context,
another tile's context and the null context, on the same noised latents, per timestep.

A conditioned LDM whose views do not retrieve their source can fail in two ways: the denoiser ignores
the embedding (the three errors are equal), or it follows the embedding but its samples are off the
tiles' distribution. This tells them apart without sampling. The "other" context is a fixed derangement
of the batch (tile i gets tile i+1's), so every tile is paired with a real embedding that is not its own.
At one timestep the errors of the eps, v and x0 parameterisations are fixed multiples of each other (the
clean-latent error is (1 − ᾱ)/ᾱ times the eps error and (1 − ᾱ) times the v error), so the share of
the error that the right context removes ("gain") means the same for every prediction type.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import DDPMScheduler
from torch import Tensor

from pathgen.diffusion.ldm import ConditionedDenoiser, LDMConfig, prediction_target, scheduler_kwargs

DEFAULT_TIMESTEPS = (100, 300, 500, 700, 900)


@torch.no_grad()
def conditioning_use(
    denoiser: ConditionedDenoiser,
    ldm_config: LDMConfig,
    latents: Tensor,
    embeddings: Tensor,
    timesteps: Sequence[int] = DEFAULT_TIMESTEPS,
    seed: int = 0,
) -> dict[int, dict[str, float]]:
    """Per timestep t, the mean squared error of the model's prediction (eps, v or x0, as it was trained) on
    `latents` (B, C, h, w) noised at t with one seeded noise, given each tile's own `embeddings` (B, D)
    ("own"), the next tile's ("other") and the null context ("null"), and the share of the other-context
    error that the own context removes ("gain")."""
    if len(latents) < 2 or len(latents) != len(embeddings):
        raise ValueError(f"need >= 2 latents with one embedding each, got {len(latents)} and {len(embeddings)}")
    device = next(denoiser.parameters()).device
    latents, embeddings = latents.to(device).float(), embeddings.to(device).float()
    scheduler = DDPMScheduler(**scheduler_kwargs(ldm_config))
    generator = torch.Generator().manual_seed(seed)
    contexts = {
        "own": denoiser.context(embeddings),
        "other": denoiser.context(embeddings.roll(-1, dims=0)),
        "null": denoiser.null_context(len(latents), device),
    }
    result: dict[int, dict[str, float]] = {}
    for t in timesteps:
        noise = torch.randn(latents.shape, generator=generator).to(device)
        steps = torch.full((len(latents),), int(t), device=device, dtype=torch.long)
        noisy = scheduler.add_noise(latents, noise, steps)
        target = prediction_target(scheduler, latents, noise, steps)
        errors = {
            name: float((denoiser(noisy, steps, context).float() - target).pow(2).mean())
            for name, context in contexts.items()
        }
        errors["gain"] = 1.0 - errors["own"] / errors["other"] if errors["other"] > 0 else 0.0
        result[int(t)] = errors
    return result
