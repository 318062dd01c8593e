"""The tile grid: where tiles of a given size and resolution sit on a slide, at level 0.

Tiles are laid out in the target resolution's pixel space (so `tile_size_px` and `overlap_px`
mean target pixels) and their top-left corners are stored in level-0 pixels, the convention of
CLAM, TRIDENT and the Camelyon annotations. Only whole tiles inside the slide are kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GridSpec:
    """A regular grid of square tiles at `target_mpp` over a slide of `level0_wh` pixels."""

    level0_wh: tuple[int, int]
    level0_mpp: float
    target_mpp: float
    tile_size_px: int
    overlap_px: int = 0

    def __post_init__(self) -> None:
        if self.tile_size_px <= 0:
            raise ValueError(f"tile size must be positive, got {self.tile_size_px}")
        if not 0 <= self.overlap_px < self.tile_size_px:
            raise ValueError(f"overlap must be in [0, tile size), got {self.overlap_px}")
        if self.target_mpp <= 0 or self.level0_mpp <= 0:
            raise ValueError("resolutions must be positive")

    @property
    def stride_px(self) -> int:
        """Distance between neighbouring tile corners, in target pixels."""
        return self.tile_size_px - self.overlap_px

    @property
    def scale(self) -> float:
        """Level-0 pixels per target pixel (2.0 for a 0.25 µm/px scan tiled at 0.5 µm/px)."""
        return self.target_mpp / self.level0_mpp

    @property
    def tile_size_level0(self) -> float:
        """Side of one tile in level-0 pixels."""
        return self.tile_size_px * self.scale

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of whole tiles that fit inside the slide."""
        target_w = int(self.level0_wh[0] / self.scale + 1e-6)
        target_h = int(self.level0_wh[1] / self.scale + 1e-6)
        rows = (target_h - self.tile_size_px) // self.stride_px + 1 if target_h >= self.tile_size_px else 0
        cols = (target_w - self.tile_size_px) // self.stride_px + 1 if target_w >= self.tile_size_px else 0
        return rows, cols


def grid_indices(spec: GridSpec) -> np.ndarray:
    """(N, 2) int64 (row, column) of every tile of the grid, in raster order."""
    rows, cols = spec.shape
    row_idx, col_idx = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return np.stack([row_idx.ravel(), col_idx.ravel()], axis=1).astype(np.int64)


def level0_coords(spec: GridSpec, row_col: np.ndarray) -> np.ndarray:
    """(N, 2) int64 level-0 (x, y) of the top-left corner of each (row, column) tile."""
    target_xy = row_col[:, ::-1].astype(np.float64) * spec.stride_px
    return np.round(target_xy * spec.scale).astype(np.int64)


def horizontal_runs(row_col: np.ndarray, max_run: int) -> list[tuple[int, int]]:
    """Split raster-ordered tiles into [start, end) runs of neighbours on one row.

    A run is read from the slide with one region request, which amortises the reader's
    per-call cost and decodes each JPEG tile of the slide once rather than up to four times.
    """
    if len(row_col) == 0:
        return []
    same_row = row_col[1:, 0] == row_col[:-1, 0]
    next_col = row_col[1:, 1] == row_col[:-1, 1] + 1
    breaks = np.flatnonzero(~(same_row & next_col)) + 1
    runs = []
    for start, end in zip(np.r_[0, breaks], np.r_[breaks, len(row_col)]):
        for chunk_start in range(int(start), int(end), max_run):
            runs.append((chunk_start, min(int(end), chunk_start + max_run)))
    return runs
