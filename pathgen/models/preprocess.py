"""An encoder's input contract: how uint8 tiles become its normalised input, and what µm a pixel is.

The evaluation transform is timm's and torchvision's (``Resize(floor(size / crop_pct))`` of the
shorter side, ``CenterCrop(size)``, ``Normalize(mean, std)``), applied to float tensors with
antialiasing so whole batches run on the device. With ``crop_pct`` 1 and square tiles it is a
plain resize (eva's ResizeAndCrop); Prov-GigaPath's 256 → 224 crop is ``crop_pct`` 224/256.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F

INTERPOLATIONS = ("bilinear", "bicubic")


class InputContract(Protocol):
    """What preprocessing reads from an encoder config."""

    input_size_px: int
    interpolation: str
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def resized_shorter_side(input_size_px: int, crop_pct: float = 1.0) -> int:
    """The shorter side a tile is resized to before the centre crop (timm: floor(size / crop_pct))."""
    return math.floor(input_size_px / crop_pct)


def mpp_per_input_pixel(tile_mpp: float, tile_size_px: int, input_size_px: int, crop_pct: float = 1.0) -> float:
    """µm per network-input pixel of `tile_size_px` tiles cut at `tile_mpp` µm/px, once resized for the encoder.

    A 224-px tile at 0.5 µm/px fed at 64 px is 1.75 µm per input pixel; the centre crop does not
    change the scale, only the resize does.
    """
    return tile_mpp * tile_size_px / resized_shorter_side(input_size_px, crop_pct)


def resize_and_crop(
    images: torch.Tensor, size: int, interpolation: str = "bilinear", crop_pct: float = 1.0
) -> torch.Tensor:
    """Shorter side resized to floor(size / crop_pct) (antialiased), then a centred `size` square.

    Matches torchvision's ``Resize(int)`` + ``CenterCrop`` on float tensors (the longer side is
    truncated as torchvision does; the crop offset is rounded); tiles already `size` square are
    returned as they are.
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation {interpolation!r} is not one of {INTERPOLATIONS}")
    height, width = images.shape[-2:]
    if (height, width) == (size, size):
        return images
    short = resized_shorter_side(size, crop_pct)
    if height <= width:
        new_hw = (short, int(short * width / height))
    else:
        new_hw = (int(short * height / width), short)
    if new_hw != (height, width):
        images = F.interpolate(images, size=new_hw, mode=interpolation, antialias=True, align_corners=False)
    top, left = round((new_hw[0] - size) / 2.0), round((new_hw[1] - size) / 2.0)
    return images[..., top : top + size, left : left + size]


def preprocess(tiles_u8: torch.Tensor, config: InputContract) -> torch.Tensor:
    """uint8 (B, 3, H, W) images → the normalised float input the encoder expects."""
    images = resize_and_crop(tiles_u8.float().div_(255.0), config.input_size_px, config.interpolation, config.crop_pct)
    mean = torch.tensor(config.mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std = torch.tensor(config.std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean) / std
