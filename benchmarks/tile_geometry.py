"""Geometry exactness of tiling: is every tile the resample of exactly its own level-0 box?

For each tile of a slide's grid, read the way `pathgen tile` reads it (horizontal runs through
`tiling.tile_slide.read_run`), this compares the tile with the exact-field reference: the
fractional level-0 box [x, x + s) × [y, y + s) (s = tile_size_level0) resampled with Lanczos
straight from level 0. It reports the PSNR against that reference and the tile's sub-pixel
shift: the offset (target px, along x and along y) of the reference box that matches the tile
best, found on a 0.1-px grid and refined with a parabola. A tile placed exactly has shift 0.

    python benchmarks/tile_geometry.py ../shared/data/slides/CMU-1-Small-Region.svs --mpp 0.5 0.75 1.0
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from tiling.grid import GridSpec, grid_indices, horizontal_runs, level0_coords
from tiling.reader import Slide, open_slide
from tiling.tile_slide import read_run

SHIFTS_PX = np.round(np.arange(-1.2, 1.2001, 0.1), 3)  # candidate offsets, target px


def reference_tile(slide: Slide, level0_xy: tuple[float, float], side_level0: float, tile_px: int) -> np.ndarray:
    """Lanczos resample of the fractional level-0 box at `level0_xy` of side `side_level0` to tile_px²."""
    margin = int(math.ceil(3 * max(side_level0 / tile_px, 1.0))) + 2
    x0 = max(0, int(math.floor(level0_xy[0])) - margin)
    y0 = max(0, int(math.floor(level0_xy[1])) - margin)
    width, height = slide.dimensions
    w = min(width - x0, int(math.ceil(level0_xy[0] + side_level0)) + margin - x0)
    h = min(height - y0, int(math.ceil(level0_xy[1] + side_level0)) + margin - y0)
    region = Image.fromarray(np.ascontiguousarray(slide.read_rgb((x0, y0), 0, (w, h))))
    box = (level0_xy[0] - x0, level0_xy[1] - y0, level0_xy[0] - x0 + side_level0, level0_xy[1] - y0 + side_level0)
    return np.asarray(region.resize((tile_px, tile_px), Image.Resampling.LANCZOS, box=box))


def psnr(a: np.ndarray, b: np.ndarray, crop_px: int = 0) -> float:
    """PSNR (dB, 8-bit peak) between two tiles, optionally ignoring a border of `crop_px`."""
    if crop_px:
        a, b = a[crop_px:-crop_px, crop_px:-crop_px], b[crop_px:-crop_px, crop_px:-crop_px]
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def best_shift(slide: Slide, tile: np.ndarray, level0_xy: np.ndarray, grid: GridSpec, axis: int) -> float:
    """Offset (target px) along `axis` (0 = x, 1 = y) of the reference box that best matches `tile`."""
    scores = []
    for shift in SHIFTS_PX:
        xy = np.asarray(level0_xy, np.float64).copy()
        xy[axis] += shift * grid.scale
        if xy.min() < 0 or (xy + grid.tile_size_level0 > slide.dimensions).any():
            scores.append(-math.inf)  # the shifted box leaves the slide
            continue
        scores.append(psnr(tile, reference_tile(slide, tuple(xy), grid.tile_size_level0, grid.tile_size_px), 4))
    i = int(np.argmax(scores))
    if 0 < i < len(scores) - 1 and all(abs(s) < math.inf for s in scores[i - 1 : i + 2]):
        left, mid, right = scores[i - 1 : i + 2]
        curvature = left - 2 * mid + right
        if curvature < 0:
            return float(SHIFTS_PX[i] + 0.1 * 0.5 * (left - right) / curvature)
    return float(SHIFTS_PX[i])


def measure(slide_path: Path, target_mpp: float, tile_px: int, max_run: int, max_tiles: int) -> dict:
    """PSNR and sub-pixel shifts of the first `max_tiles` grid tiles (in runs of `max_run`) of one slide."""
    slide = open_slide(slide_path)
    grid = GridSpec(slide.dimensions, slide.level0_mpp, target_mpp, tile_px)
    level = slide.best_level_for(target_mpp)
    row_col = grid_indices(grid)[:max_tiles]
    coords = level0_coords(grid, row_col)
    tiles = np.empty((len(row_col), tile_px, tile_px, 3), np.uint8)
    for start, end in horizontal_runs(row_col, max_run):
        read_run(slide, grid, level, coords[start:end], tiles[start:end])
    psnrs = [psnr(t, reference_tile(slide, tuple(c), grid.tile_size_level0, tile_px)) for t, c in zip(tiles, coords)]
    shift_x = [best_shift(slide, t, c, grid, 0) for t, c in zip(tiles, coords)]
    shift_y = [best_shift(slide, t, c, grid, 1) for t, c in zip(tiles, coords)]
    return {
        "slide": slide_path.name,
        "target_mpp": target_mpp,
        "level": level,
        "level_downsample": slide.level_downsamples[level],
        "tiles": len(tiles),
        "psnr_db_min": round(min(psnrs), 2),
        "psnr_db_median": round(float(np.median(psnrs)), 2),
        "shift_x_px_max_abs": round(max(map(abs, shift_x)), 3),
        "shift_y_px_max_abs": round(max(map(abs, shift_y)), 3),
    }


def main() -> None:
    """Print one JSON line per (slide, target mpp)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("slides", nargs="+", type=Path)
    parser.add_argument("--mpp", nargs="+", type=float, default=[0.5])
    parser.add_argument("--tile", type=int, default=224)
    parser.add_argument("--max-run", type=int, default=16)
    parser.add_argument("--max-tiles", type=int, default=64, help="first tiles of the grid, in raster order")
    args = parser.parse_args()
    for path in args.slides:
        for mpp in args.mpp:
            print(json.dumps(measure(path, mpp, args.tile, args.max_run, args.max_tiles)))


if __name__ == "__main__":
    main()
