"""conditioning_use tells a denoiser that reads its context from one that ignores it."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler
from torch import Tensor, nn

from pathgen.diffusion.conditioning_use import conditioning_use
from pathgen.diffusion.ldm import LDMConfig, prediction_target, scheduler_kwargs

CFG = LDMConfig()
SHAPE = (4, 4, 4)


class Oracle(nn.Module):
    """Its context is the clean latent itself, so it recovers the exact noise when the context is right."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.alphas_cumprod = DDPMScheduler(**scheduler_kwargs(CFG)).alphas_cumprod

    def context(self, embeddings: Tensor) -> Tensor:
        return embeddings.view(len(embeddings), *SHAPE)

    def null_context(self, batch_size: int, device: torch.device | None = None) -> Tensor:
        return torch.zeros(batch_size, *SHAPE, device=device)

    def forward(self, noisy: Tensor, timesteps: Tensor, context: Tensor) -> Tensor:
        alpha_bar = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        return (noisy - alpha_bar.sqrt() * context) / (1 - alpha_bar).sqrt()


class Ignorer(Oracle):
    """Predicts from the noisy latent alone: every context gives the same output."""

    def forward(self, noisy: Tensor, timesteps: Tensor, context: Tensor) -> Tensor:
        return 0.5 * noisy


@pytest.mark.parametrize("n_tiles", [2, 5])
def test_a_denoiser_that_reads_its_context_gains_everything(n_tiles: int) -> None:
    latents = torch.randn(n_tiles, *SHAPE, generator=torch.Generator().manual_seed(n_tiles))
    use = conditioning_use(Oracle(), CFG, latents, latents.flatten(1), timesteps=(50, 500, 950))
    for errors in use.values():
        assert errors["own"] == pytest.approx(0.0, abs=1e-8)
        assert errors["other"] > 1e-4 and errors["null"] > 1e-4
        assert errors["gain"] == pytest.approx(1.0)


def test_a_denoiser_that_ignores_its_context_gains_nothing() -> None:
    latents = torch.randn(6, *SHAPE, generator=torch.Generator().manual_seed(1))
    use = conditioning_use(Ignorer(), CFG, latents, latents.flatten(1))
    assert sorted(use) == [100, 300, 500, 700, 900]
    for errors in use.values():
        assert errors["own"] == errors["other"] == errors["null"] > 0
        assert errors["gain"] == 0.0


def test_the_noise_is_seeded() -> None:
    latents = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(2))
    first = conditioning_use(Ignorer(), CFG, latents, latents.flatten(1), seed=3)
    assert conditioning_use(Ignorer(), CFG, latents, latents.flatten(1), seed=3) == first
    assert conditioning_use(Ignorer(), CFG, latents, latents.flatten(1), seed=4) != first


def test_one_tile_or_mismatched_embeddings_are_refused() -> None:
    with pytest.raises(ValueError, match="need >= 2"):
        conditioning_use(Oracle(), CFG, torch.zeros(1, *SHAPE), torch.zeros(1, 64))
    with pytest.raises(ValueError, match="need >= 2"):
        conditioning_use(Oracle(), CFG, torch.zeros(3, *SHAPE), torch.zeros(2, 64))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_each_prediction_target_gives_back_the_clean_latents(prediction_type: str) -> None:
    """x0 from x_t and the target: eps -> (x_t - sqrt(1-ab) eps)/sqrt(ab); v -> sqrt(ab) x_t - sqrt(1-ab) v."""
    scheduler = DDPMScheduler(**scheduler_kwargs(LDMConfig(prediction_type=prediction_type)))
    latents, noise = torch.randn(2, 3, *SHAPE, generator=torch.Generator().manual_seed(5)).unbind(0)
    timesteps = torch.tensor([10, 500, 990])
    noisy = scheduler.add_noise(latents, noise, timesteps)
    target = prediction_target(scheduler, latents, noise, timesteps)
    alpha_bar = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    clean = {
        "epsilon": (noisy - (1 - alpha_bar).sqrt() * target) / alpha_bar.sqrt(),
        "v_prediction": alpha_bar.sqrt() * noisy - (1 - alpha_bar).sqrt() * target,
        "sample": target,
    }[prediction_type]
    torch.testing.assert_close(clean, latents, atol=2e-3, rtol=1e-4)


def test_an_unknown_prediction_type_is_refused() -> None:
    scheduler = DDPMScheduler(**scheduler_kwargs(CFG))
    scheduler.register_to_config(prediction_type="flow")
    with pytest.raises(ValueError, match="prediction_type"):
        prediction_target(scheduler, torch.zeros(1, *SHAPE), torch.zeros(1, *SHAPE), torch.zeros(1, dtype=torch.long))
