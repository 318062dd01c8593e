"""The SSL-embedding-conditioned latent diffusion denoiser (Large-Image-Diffusion, Graikos et al., CVPR 2024).

A diffusers UNet2DConditionModel predicts the noise (eps) added to VAE latents; its cross-attention
context is the projected, L2-normalised SSL embedding of the tile (pathgen.diffusion.conditioning).
LID trains with 1000 linear-beta steps from 0.0015 to 0.0195 (CompVis "linear", which is diffusers
"scaled_linear") and p_uncond 0.1; ZoomLDM adds an EMA of the weights with LitEma's warm-up. Saved
models (`save_ldm` / `load_ldm` / `LoadedLDM`) live in pathgen.diffusion.ldm_io and are re-exported here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from torch import Tensor, nn

from pathgen.diffusion.conditioning import EmbeddingConditioner


@dataclass
class LDMConfig:
    """Denoiser architecture, conditioning and noise schedule of one latent diffusion model."""

    block_out_channels: list[int] = field(default_factory=lambda: [64, 128, 128])
    layers_per_block: int = 1
    attention_head_dim: int = 8  # channels per attention head (a level of C channels gets C / 8 heads)
    cross_attention_dim: int = 256  # context_dim: width of each conditioning token
    n_context_tokens: int = 1
    norm_num_groups: int = 32
    cross_attention_levels: list[int] | None = None  # levels with cross-attention; None: all but the first (LID)
    # the context also added to the timestep embedding, so it reaches every ResNet block (ADM's class
    # conditioning with the SSL embedding as the label); LID: false (cross-attention only)
    time_conditioning: bool = False
    p_uncond: float = 0.1
    # standardise embeddings with the training tiles' mean and std before the unit sphere (RCG); LID: false
    standardize_embeddings: bool = False
    num_train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"  # CompVis "linear" = diffusers scaled_linear
    beta_start: float = 0.0015
    beta_end: float = 0.0195
    prediction_type: str = "epsilon"
    ema_decay: float = 0.9999  # with the num_updates warm-up min(decay, (1+n)/(10+n)); 0 disables EMA


def scheduler_kwargs(cfg: LDMConfig) -> dict[str, Any]:
    """Keyword arguments shared by the DDPM / DDIM / DPM-Solver schedulers so all use the training schedule."""
    return {
        "num_train_timesteps": cfg.num_train_timesteps,
        "beta_schedule": cfg.beta_schedule,
        "beta_start": cfg.beta_start,
        "beta_end": cfg.beta_end,
        "prediction_type": cfg.prediction_type,
    }


def prediction_target(scheduler: Any, latents: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
    """What the denoiser learns to predict for `latents` noised with `noise` at `timesteps`, by the
    scheduler's prediction_type: the noise (epsilon), the velocity (v_prediction) or the clean latents (sample)."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    if kind == "sample":
        return latents
    raise ValueError(f"ldm.prediction_type must be epsilon, v_prediction or sample, got {kind!r}")


def build_unet(cfg: LDMConfig, latent_channels: int, latent_size: int) -> UNet2DConditionModel:
    """The diffusers UNet of `cfg` for (latent_channels, latent_size, latent_size) latents, random init."""
    channels = list(cfg.block_out_channels)
    n_levels = len(channels)
    levels = set(range(1, n_levels) if cfg.cross_attention_levels is None else cfg.cross_attention_levels)
    if not levels <= set(range(n_levels)):
        raise ValueError(f"ldm.cross_attention_levels {sorted(levels)} must be level indices below {n_levels}")
    if latent_size % 2 ** (n_levels - 1):
        raise ValueError(
            f"latent size {latent_size} is not divisible by 2^{n_levels - 1} (the UNet's "
            f"{n_levels} levels); change image_size or ldm.block_out_channels"
        )
    bad = [c for c in channels if c % cfg.attention_head_dim or c % cfg.norm_num_groups]
    if bad:
        raise ValueError(
            f"ldm.block_out_channels {bad} must be multiples of ldm.attention_head_dim "
            f"({cfg.attention_head_dim}) and ldm.norm_num_groups ({cfg.norm_num_groups})"
        )
    down = ["CrossAttnDownBlock2D" if i in levels else "DownBlock2D" for i in range(n_levels)]
    up = ["CrossAttnUpBlock2D" if n_levels - 1 - i in levels else "UpBlock2D" for i in range(n_levels)]
    # diffusers' `attention_head_dim` is really the number of heads per level (its issue #2011)
    heads = [c // cfg.attention_head_dim for c in channels]
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        block_out_channels=tuple(channels),
        layers_per_block=cfg.layers_per_block,
        attention_head_dim=heads,
        cross_attention_dim=cfg.cross_attention_dim,
        norm_num_groups=cfg.norm_num_groups,
        mid_block_type="UNetMidBlock2DCrossAttn",
        class_embed_type="projection" if cfg.time_conditioning else None,
        projection_class_embeddings_input_dim=(
            cfg.n_context_tokens * cfg.cross_attention_dim if cfg.time_conditioning else None
        ),
    )


class ConditionedDenoiser(nn.Module):
    """diffusers UNet2DConditionModel whose cross-attention context is the projected SSL embedding (with
    `time_conditioning`, the flattened context is also projected into the timestep embedding)."""

    def __init__(self, cfg: LDMConfig, embed_dim: int, latent_channels: int, latent_size: int):
        super().__init__()
        self.cfg, self.embed_dim = cfg, embed_dim
        self.latent_channels, self.latent_size = latent_channels, latent_size
        self.unet = build_unet(cfg, latent_channels, latent_size)
        self.conditioner = EmbeddingConditioner(embed_dim, cfg.cross_attention_dim, cfg.n_context_tokens)

    def forward(self, latents: Tensor, timesteps: Tensor, context: Tensor) -> Tensor:
        """The noise (eps) prediction for noisy `latents` (B, C, h, w) at `timesteps` (B,) given `context`."""
        labels = context.flatten(1) if self.cfg.time_conditioning else None
        return self.unet(latents, timesteps, encoder_hidden_states=context, class_labels=labels).sample

    def context(self, embeddings: Tensor, drop: Tensor | None = None) -> Tensor:
        """(B, n_tokens, context_dim) context of SSL embeddings (B, D); rows with `drop` True get the null context."""
        return self.conditioner(embeddings, drop)

    def null_context(
        self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Tensor:
        """The unconditional context (the projection of a zero embedding), for classifier-free guidance."""
        return self.conditioner.null(batch_size, device, dtype)


def ema_decay_at(decay: float, num_updates: int) -> float:
    """LitEma's warm-up: the decay used at update `num_updates` (1-based) is min(decay, (1+n)/(10+n))."""
    return min(decay, (1 + num_updates) / (10 + num_updates))


class EMA(nn.Module):
    """An exponential moving average of a module's weights (CompVis LitEma, as ZoomLDM trains with).

    The averaged copy (`shadow`) and the update count are in this module's state dict, so a checkpoint
    of a model holding an EMA resumes it exactly. Buffers are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = copy.deepcopy(model).requires_grad_(False).eval()
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        """Move the average towards `model`'s current weights; returns the decay used."""
        self.num_updates += 1
        decay = ema_decay_at(self.decay, int(self.num_updates))
        for average, current in zip(self.shadow.parameters(), model.parameters(), strict=True):
            average.lerp_(current.detach().to(average.dtype), 1.0 - decay)
        for average, current in zip(self.shadow.buffers(), model.buffers(), strict=True):
            average.copy_(current)
        return decay

    def train(self, mode: bool = True) -> EMA:
        """The shadow stays in eval mode (it is never trained)."""
        super().train(mode)
        self.shadow.eval()
        return self
