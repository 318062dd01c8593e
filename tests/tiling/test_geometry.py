"""Geometry exactness: every tile of a run is the resample of exactly its own level-0 box.

Slides with non-integer pyramid downsamples (2.0005, 4.03, 3.7; level sizes rounded, so the
x and y ratios differ) are read the way `pathgen tile` reads them and each tile is compared
with the exact-field reference, the fractional level-0 box resampled with Lanczos from level 0.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from tiling.grid import GridSpec, grid_indices, horizontal_runs, level0_coords
from tiling.reader import open_slide
from tiling.synthetic_pyramid import level_sizes, smooth_rgb_field, write_pyramid_tiff
from tiling.tile_read import is_whole_pixel_box, level_boxes, read_run

MPP = 0.25
SHIFTS_PX = (-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3)  # candidate offsets of the reference box, target px
PYRAMIDS = {"ds2.0005-4.03": (2.0005, 4.03), "ds3.7": (3.7,)}


@pytest.fixture(scope="module")
def pyramids(tmp_path_factory):
    """{name: (path, level-0 array)}: one smooth 2311×1733 field written with two pyramids."""
    folder = tmp_path_factory.mktemp("pyramids")
    level0 = smooth_rgb_field(2311, 1733, sigma_px=5.0, seed=3)
    return {
        name: (write_pyramid_tiff(folder / f"{name}.tif", level0, ds, MPP), level0) for name, ds in PYRAMIDS.items()
    }


def reference(level0: np.ndarray, x: float, y: float, side: float, tile_px: int) -> np.ndarray:
    """The exact-field reference: Lanczos from the fractional level-0 box."""
    return np.asarray(
        Image.fromarray(level0).resize((tile_px, tile_px), Image.Resampling.LANCZOS, box=(x, y, x + side, y + side))
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def best_shifts(tile, level0, xy, grid) -> tuple[float, float]:
    """Offsets (target px) along x and along y of the reference box that match `tile` best."""
    found = []
    for axis in (0, 1):
        scores = []
        for shift in SHIFTS_PX:
            x, y = float(xy[0]), float(xy[1])
            x, y = (x + shift * grid.scale, y) if axis == 0 else (x, y + shift * grid.scale)
            inside = (
                x >= 0
                and y >= 0
                and x + grid.tile_size_level0 <= level0.shape[1]
                and y + grid.tile_size_level0 <= level0.shape[0]
            )
            scores.append(
                psnr(tile, reference(level0, x, y, grid.tile_size_level0, grid.tile_size_px)) if inside else -math.inf
            )
        found.append(SHIFTS_PX[int(np.argmax(scores))])
    return found[0], found[1]


def read_rows(path, grid, rows, max_run):
    """Tiles of the given grid rows, read in runs as fill_shard reads them, with their corners."""
    slide = open_slide(path)
    row_col = grid_indices(grid)
    row_col = row_col[np.isin(row_col[:, 0], rows)]
    coords = level0_coords(grid, row_col)
    tiles = np.empty((len(row_col), grid.tile_size_px, grid.tile_size_px, 3), np.uint8)
    level = slide.best_level_for(grid.target_mpp)
    for start, end in horizontal_runs(row_col, max_run):
        read_run(slide, grid, level, coords[start:end], tiles[start:end])
    return tiles, coords, slide.level_downsamples[level]


@pytest.mark.parametrize(
    "name, target_mpp, tile_px, expected_ds",
    [
        ("ds2.0005-4.03", 0.5, 64, 2.0005),  # level 1 at 0.500125 µm/px: nearly the target, still resampled
        ("ds2.0005-4.03", 0.63, 48, 2.0005),
        ("ds2.0005-4.03", 1.1, 32, 4.03),
        ("ds2.0005-4.03", 0.3, 40, 1.0),
        ("ds3.7", 1.0, 32, 3.7),
        ("ds3.7", 0.925, 48, 3.7),
    ],
)
def test_every_tile_of_a_run_matches_its_exact_box(pyramids, name, target_mpp, tile_px, expected_ds):
    path, level0 = pyramids[name]
    grid = GridSpec((level0.shape[1], level0.shape[0]), MPP, target_mpp, tile_px)
    tiles, coords, downsample = read_rows(path, grid, rows=[0, 3, grid.shape[0] - 1], max_run=6)
    assert downsample == pytest.approx(expected_ds, abs=2e-3)
    assert len(tiles) >= 3 * min(6, grid.shape[1])
    for tile, xy in zip(tiles, coords):
        value = psnr(tile, reference(level0, float(xy[0]), float(xy[1]), grid.tile_size_level0, tile_px))
        assert value >= 40, f"tile at {tuple(xy)}: {value:.1f} dB"
    for tile, xy in list(zip(tiles, coords))[::3]:
        assert best_shifts(tile, level0, xy, grid) == (0.0, 0.0), f"tile at {tuple(xy)} is shifted"


def test_long_run_at_downsample_2_0005_does_not_drift(pyramids):
    """16 tiles of 224 px in one read: the reported drift was ~0.9 level-1 px at the run's end."""
    path, level0 = pyramids["ds2.0005-4.03"]
    grid = GridSpec((level0.shape[1], level0.shape[0]), MPP, 0.5, 224)
    tiles, coords, _ = read_rows(path, grid, rows=[1], max_run=16)
    assert len(tiles) == grid.shape[1] >= 5
    for tile, xy in zip(tiles, coords):
        assert psnr(tile, reference(level0, float(xy[0]), float(xy[1]), grid.tile_size_level0, 224)) >= 40
    assert best_shifts(tiles[-1], level0, coords[-1], grid) == (0.0, 0.0)


def test_level_boxes_use_each_axis_ratio(pyramids):
    path, level0 = pyramids["ds3.7"]
    slide = open_slide(path)
    (w0, h0), (w1, h1) = level_sizes((2311, 1733), (3.7,))
    assert slide.level_dimensions[1] == (w1, h1) and w0 / w1 != h0 / h1
    box = level_boxes(slide, 1, np.array([[1000, 800]]), 370.0)[0]
    np.testing.assert_allclose(box, [1000 * w1 / w0, 800 * h1 / h0, 1370 * w1 / w0, 1170 * h1 / h0])


def test_whole_pixel_boxes_are_copied_and_fractional_ones_resampled():
    assert is_whole_pixel_box(np.array([3.0, 5.0, 35.0, 37.0]), 32)
    assert is_whole_pixel_box(np.array([3.01, 5.0, 35.01, 37.0]), 32)
    assert not is_whole_pixel_box(np.array([3.5, 5.0, 35.5, 37.0]), 32)
    assert not is_whole_pixel_box(np.array([3.0, 5.0, 34.9, 36.9]), 32)  # 0.3 % smaller: resampled
    assert not is_whole_pixel_box(np.array([3.0, 5.0, 36.0, 38.0]), 32)


def test_integer_level_reads_are_bit_exact_copies(pyramids):
    """Target mpp equal to level 0's: the tile is level 0's pixels, untouched."""
    path, level0 = pyramids["ds3.7"]
    grid = GridSpec((level0.shape[1], level0.shape[0]), MPP, MPP, 64)
    tiles, coords, _ = read_rows(path, grid, rows=[2], max_run=4)
    for tile, (x, y) in zip(tiles, coords):
        np.testing.assert_array_equal(tile, level0[y : y + 64, x : x + 64])
