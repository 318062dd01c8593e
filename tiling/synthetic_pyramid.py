"""Slides with arbitrary (non-integer) pyramid downsamples, from an RGB level-0 array, for geometry tests.

Real scanners write levels whose sizes are not exact powers of two of level 0 (an Aperio level
1 of downsample 2.0005, levels of 3.7 or 4.03). `write_pyramid_tiff` writes such a pyramid
losslessly (deflate), each level the Lanczos resample of the whole level-0 image to its integer
size, so level pixel j covers level-0 [j·w0/wL, (j+1)·w0/wL) per axis — the pixel-area
convention of Pillow's `resize` and of OpenSlide's region reads. A tile read through any level
can then be compared with the exact fractional-box resample of level 0 (tests/tiling/test_geometry.py,
benchmarks/tile_geometry.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage


def smooth_rgb_field(width_px: int, height_px: int, sigma_px: float, seed: int = 0) -> np.ndarray:
    """Band-limited RGB uint8 (h, w, 3) noise: Gaussian-smoothed over `sigma_px`, contrast stretched.

    Smooth enough (sigma of a few coarse-level pixels) that resampling through a pyramid level and
    resampling level 0 directly agree to well above 40 dB, so a residual there is geometry, not aliasing.
    """
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.random((height_px, width_px, 3)), (sigma_px, sigma_px, 0))
    low, high = noise.min(), noise.max()
    return ((noise - low) / (high - low) * 235 + 10).astype(np.uint8)


def level_sizes(level0_wh: tuple[int, int], downsamples: tuple[float, ...]) -> list[tuple[int, int]]:
    """(width, height) of each level: level 0, then level 0 divided by each downsample, rounded."""
    width, height = level0_wh
    return [(width, height)] + [(max(1, round(width / ds)), max(1, round(height / ds))) for ds in downsamples]


def write_pyramid_tiff(
    path: str | Path, level0: np.ndarray, downsamples: tuple[float, ...], mpp: float, tile_px: int = 256
) -> Path:
    """Write `level0` (RGB uint8) and one reduced level per entry of `downsamples` as a tiled TIFF OpenSlide
    opens (generic-tiff), with the resolution in pixels per centimetre; returns the path.

    OpenSlide reports each level's downsample as the mean of w0/wL and h0/hL, so the downsamples it
    shows differ slightly from the nominal ones, as on real slides.
    """
    path = Path(path)
    if level0.ndim != 3 or level0.shape[2] != 3 or level0.dtype != np.uint8:
        raise ValueError(f"{path}: level 0 must be RGB uint8 (h, w, 3), got {level0.dtype} {level0.shape}")
    if any(not ds > 1 for ds in downsamples) or list(downsamples) != sorted(downsamples):
        raise ValueError(f"{path}: downsamples must be increasing and > 1, got {downsamples}")
    px_per_cm = 1e4 / mpp
    image = Image.fromarray(level0)
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            level0,
            tile=(tile_px, tile_px),
            photometric="rgb",
            compression="zlib",
            resolution=(px_per_cm, px_per_cm),
            resolutionunit="CENTIMETER",
        )
        for size in level_sizes(image.size, downsamples)[1:]:
            level = np.asarray(image.resize(size, Image.Resampling.LANCZOS))
            tif.write(level, tile=(tile_px, tile_px), photometric="rgb", compression="zlib", subfiletype=1)
    return path
