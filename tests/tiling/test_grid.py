"""Grid math: tile counts, strides, level-0 corners and read runs, by hand-worked cases."""

import numpy as np
import pytest

from tiling.grid import GridSpec, grid_indices, horizontal_runs, level0_coords


def test_grid_shape_counts_only_whole_tiles():
    # 1000 level-0 px at 0.25 µm/px = 500 target px at 0.5 µm/px → two whole 224-px tiles
    spec = GridSpec((1000, 600), level0_mpp=0.25, target_mpp=0.5, tile_size_px=224)
    assert spec.scale == 2.0
    assert spec.shape == (1, 2)
    assert spec.tile_size_level0 == 448


def test_overlap_shortens_the_stride():
    spec = GridSpec((1000, 224), level0_mpp=0.5, target_mpp=0.5, tile_size_px=224, overlap_px=24)
    assert spec.stride_px == 200
    assert spec.shape == (1, 4)  # corners at 0, 200, 400, 600; 800 + 224 > 1000
    coords = level0_coords(spec, grid_indices(spec))
    assert coords[:, 0].tolist() == [0, 200, 400, 600]


def test_level0_coords_scale_and_raster_order():
    spec = GridSpec((2000, 1000), level0_mpp=0.25, target_mpp=0.5, tile_size_px=100)
    row_col = grid_indices(spec)
    assert spec.shape == (5, 10)
    assert row_col[:3].tolist() == [[0, 0], [0, 1], [0, 2]]
    coords = level0_coords(spec, row_col)
    assert coords[11].tolist() == [200, 200]  # row 1, column 1 → target (100, 100) → level-0 (200, 200)


def test_non_integer_scale_rounds_each_corner():
    spec = GridSpec((5000, 500), level0_mpp=0.2527, target_mpp=0.5, tile_size_px=224)
    coords = level0_coords(spec, grid_indices(spec))
    expected = np.round(np.arange(len(coords)) * 224 * 0.5 / 0.2527)
    assert coords[:, 0].tolist() == expected.astype(int).tolist()


def test_slide_smaller_than_a_tile_has_no_tiles():
    spec = GridSpec((300, 300), level0_mpp=0.25, target_mpp=0.5, tile_size_px=224)
    assert 0 in spec.shape
    assert len(grid_indices(spec)) == 0


@pytest.mark.parametrize("overlap", [-1, 224])
def test_bad_overlap_is_refused(overlap):
    with pytest.raises(ValueError, match="overlap"):
        GridSpec((1000, 1000), 0.25, 0.5, 224, overlap)


def test_horizontal_runs_split_at_gaps_rows_and_cap():
    row_col = np.array([[0, 0], [0, 1], [0, 2], [0, 4], [1, 5], [1, 6], [1, 7], [1, 8], [1, 9]])
    assert horizontal_runs(row_col, max_run=16) == [(0, 3), (3, 4), (4, 9)]
    assert horizontal_runs(row_col, max_run=2) == [(0, 2), (2, 3), (3, 4), (4, 6), (6, 8), (8, 9)]
    assert horizontal_runs(np.zeros((0, 2), int), 4) == []
