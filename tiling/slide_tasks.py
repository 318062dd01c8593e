"""What the tiling pipeline hands its workers and gets back: a slide job, its plan, shard and overview tasks.

Plain data that crosses the process boundary (pickled to and from workers). It lives apart from
the code that runs the tasks (tiling.tile_slide) so that the parent process, which only
schedules them, never imports that code's libraries (scipy.ndimage, scikit-image, matplotlib:
~0.5 CPU-s of imports per process, measured here); the fork server imports them once for every
worker (tiling.workers.TILING_PRELOAD).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tiling.grid import GridSpec
from tiling.store import StoreLayout


@dataclass(frozen=True)
class SlideJob:
    """One slide to tile and where its store goes."""

    slide_path: Path
    slide_id: str
    group_path: Path
    qc_path: Path | None
    mpp_override: float | None = None


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs to read and write one shard of a planned slide."""

    job: SlideJob
    layout: StoreLayout
    shard_index: int
    grid: GridSpec
    read_level: int
    row_col: np.ndarray  # (n, 2) grid positions of this shard's tiles
    level0_xy: np.ndarray  # (n, 2) their level-0 corners
    max_tiles_per_read: int
    reader_cache_mb: int


@dataclass(frozen=True)
class OverviewTask:
    """What no shard waits for: the store's thumbnail and tissue-mask arrays and the QC picture."""

    job: SlideJob
    thumbnail: np.ndarray  # RGB uint8 (H, W, 3), the picture the detector saw
    tissue_mask: np.ndarray  # bool (H, W)
    ink_mask: np.ndarray  # bool (H, W)
    boxes_thumb: np.ndarray  # (n, 4) kept tiles as x0, y0, x1, y1 in thumbnail pixels
    title: str
    mpp_note: str


@dataclass(frozen=True)
class SlidePlan:
    """The result of planning: the store is created; these shards and the overview remain to be written."""

    job: SlideJob
    level0_mpp: float
    shards: list[ShardTask]
    overview: OverviewTask

    @property
    def n_tiles(self) -> int:
        """Tiles the slide's store will hold."""
        return sum(len(task.row_col) for task in self.shards)
