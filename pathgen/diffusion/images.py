"""Pixel conventions of the generative stage: tiles are uint8 RGB, the VAE and the diffusion model
work on float images in [-1, 1] (the latent-diffusion convention)."""

from __future__ import annotations

import numpy as np
import torch


def to_model_range(tiles_u8: torch.Tensor | np.ndarray) -> torch.Tensor:
    """uint8 (B, 3, H, W) tensor or (B, H, W, 3) / (H, W, 3) array → float32 (B, 3, H, W) in [-1, 1]."""
    if isinstance(tiles_u8, np.ndarray):
        array = tiles_u8[None] if tiles_u8.ndim == 3 else tiles_u8
        tiles_u8 = torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
    return tiles_u8.float().div(127.5).sub(1.0)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float (B, 3, H, W) in [-1, 1] → uint8 (B, H, W, 3) array (values outside the range are clipped)."""
    scaled = images.detach().float().add(1.0).mul(127.5).round().clamp(0, 255)
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
