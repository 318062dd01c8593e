"""Resampling a tile from its level-0 box: Pillow's Lanczos (what tiling does) against pyvips' lanczos3.

Resampled tiling (e.g. a 0.4 µm/px scan tiled at 0.5 µm/px) spends most of a worker's time in
Pillow's Lanczos resize, one call per tile on the region read for its run (tiling/tile_read.py).
libvips has a vectorised lanczos3 `reduce`; this measures, on rows of real tissue from
CMU-1-Small-Region.svs, both resamplers' CPU time per tile and how far pyvips' tiles are from
Pillow's (the reference the geometry tests hold tiling to). pyvips' `reduce` takes no sub-pixel
offset and pads its input by copying edge pixels, so each tile is the reduce of exactly its box
(a region starting `margin` px earlier would put its output grid elsewhere).

    python benchmarks/perf/resamplers.py
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import pyvips
from PIL import Image

from tiling.reader import open_slide

REAL_SLIDE = Path("/work/shared/data/slides/CMU-1-Small-Region.svs")
CASES = {"0.4 → 0.5 µm/px, 224 px": (280.0, 224), "0.25 → 0.5 µm/px, 224 px": (448.0, 224)}
MARGIN_PX = 16  # room for Pillow's filter around each box: its real neighbours, not copies


def pillow_tiles(region: np.ndarray, corners: list[int], side: float, tile_px: int) -> list[np.ndarray]:
    """As tiling does it: one Pillow image of the run's region, each tile resized from its own box."""
    image = Image.fromarray(region)
    return [
        np.asarray(
            image.resize((tile_px, tile_px), Image.Resampling.LANCZOS, box=(x, MARGIN_PX, x + side, MARGIN_PX + side))
        )
        for x in corners
    ]


def vips_tiles(region: np.ndarray, corners: list[int], side: float, tile_px: int) -> list[np.ndarray]:
    """pyvips' lanczos3 reduce of each box, cropped to whole pixels."""
    image = pyvips.Image.new_from_memory(region.data, region.shape[1], region.shape[0], 3, "uchar")
    crop = math.ceil(side)
    tiles = []
    for x in corners:
        shrink = crop / tile_px
        reduced = image.crop(x, MARGIN_PX, crop, crop).reduce(shrink, shrink, kernel="lanczos3")
        pixels = np.ndarray((reduced.height, reduced.width, 3), np.uint8, reduced.write_to_memory())
        tiles.append(pixels[:tile_px, :tile_px])
    return tiles


def cpu_ms_per_tile(fn, rounds: int, *args) -> float:
    """Median CPU ms per tile of `fn(*args)` over `rounds` calls."""
    times = []
    for _ in range(rounds):
        start = time.process_time()
        tiles = fn(*args)
        times.append((time.process_time() - start) / len(tiles))
    return float(np.median(times)) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    slide = open_slide(REAL_SLIDE)
    width, height = slide.dimensions
    for name, (side, tile_px) in CASES.items():
        n_tiles = int((width - 2 * MARGIN_PX) // side)
        corners = [MARGIN_PX + round(k * side) for k in range(n_tiles)]
        diffs, pillow_ms, vips_ms = [], [], []
        for y in range(0, int(height - side - 2 * MARGIN_PX), int(side)):
            region = np.ascontiguousarray(slide.read_rgb((0, y), 0, (width, int(side) + 2 * MARGIN_PX + 1)))
            pillow_ms.append(cpu_ms_per_tile(pillow_tiles, args.rounds, region, corners, side, tile_px))
            vips_ms.append(cpu_ms_per_tile(vips_tiles, args.rounds, region, corners, side, tile_px))
            for a, b in zip(pillow_tiles(region, corners, side, tile_px), vips_tiles(region, corners, side, tile_px)):
                diffs.append(np.abs(a.astype(np.int16) - b))
        diff = np.stack(diffs)
        inner = diff[:, 8:-8, 8:-8]
        print(
            f"{name}: {len(diffs)} tiles from boxes of {side:g} px | CPU ms/tile: Pillow {np.median(pillow_ms):.2f}, "
            f"pyvips {np.median(vips_ms):.2f} ({np.median(pillow_ms) / np.median(vips_ms):.2f}× faster) | pyvips − "
            f"Pillow: mean {diff.mean():.3f}, max {diff.max()} grey levels; 8 px from the edges mean "
            f"{inner.mean():.3f}, max {inner.max()}; {np.mean(diff > 1):.2%} of values differ by more than 1"
        )
    slide.close()


if __name__ == "__main__":
    main()
