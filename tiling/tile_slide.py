"""Tile one slide, in three kinds of task that worker processes run: plan it, then fill its shards
and write its overview.

`plan_slide` opens the slide, checks its resolution, finds tissue on a thumbnail, lays the grid,
keeps the tiles with enough tissue and creates the (incomplete) store, and does no more: every
worker waits for a plan before it has shards to fill. `fill_shard` reads the tiles of one shard
from the slide and writes that shard file. `write_overview` stores the thumbnail and tissue mask
and draws the QC picture, while other workers fill shards. Shards and the overview of one slide
can run in different processes at once; the caller marks the store complete when all are done.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tiling import __version__
from tiling.config import TilingConfig
from tiling.grid import GridSpec, grid_indices, horizontal_runs, level0_coords
from tiling.manifest import now_iso
from tiling.qc import resolution_note, save_qc_png
from tiling.reader import Slide, SlideError, open_slide
from tiling.slide_tasks import OverviewTask, ShardTask, SlideJob, SlidePlan
from tiling.store import StoreLayout, create_store, write_overview_arrays, write_shard
from tiling.tile_read import RESAMPLER, read_run
from tiling.tissue import detect_tissue, tissue_fractions

_MPP_TOLERANCE = 1e-3
_OPEN_SLIDES: dict[tuple[str, float | None], Slide] = {}
_MAX_THUMBNAIL_PIXELS = 8_000_000  # 2,800² px: a 20 × 20 mm section at 8 µm/px; larger slides get a coarser one
_MAX_OPEN_SLIDES = 2  # each holds a decoded-tile cache of TilingConfig.reader_cache_mb


def cached_slide(path: Path, mpp_override: float | None, cache_mb: int = 0) -> Slide:
    """This process's open handle on a slide (OpenSlide handles must not cross processes)."""
    key = (str(path), mpp_override)
    if key not in _OPEN_SLIDES:
        if len(_OPEN_SLIDES) >= _MAX_OPEN_SLIDES:
            _OPEN_SLIDES.pop(next(iter(_OPEN_SLIDES))).close()
        _OPEN_SLIDES[key] = open_slide(path, mpp_override, cache_mb)
    return _OPEN_SLIDES[key]


def forget_slide(path: Path) -> None:
    """Close this process's handles on `path` (after an error, OpenSlide handles are unusable)."""
    for key in [key for key in _OPEN_SLIDES if key[0] == str(path)]:
        _OPEN_SLIDES.pop(key).close()


def plan_slide(job: SlideJob, cfg: TilingConfig) -> SlidePlan:
    """Check the slide, find its tissue, create its empty store; raise SlideError if it cannot be tiled."""
    try:
        slide = cached_slide(job.slide_path, job.mpp_override, cfg.reader_cache_mb)
        return _plan_open_slide(slide, job, cfg)
    except SlideError:
        forget_slide(job.slide_path)
        raise


def _plan_open_slide(slide: Slide, job: SlideJob, cfg: TilingConfig) -> SlidePlan:
    if slide.level0_mpp > cfg.target_mpp * (1 + _MPP_TOLERANCE):
        raise SlideError(
            slide.path,
            f"resolution {slide.level0_mpp:.4g} µm/px is coarser than the target "
            f"{cfg.target_mpp:g} µm/px; pathgen does not upsample (lower --mpp)",
        )
    grid = GridSpec(slide.dimensions, slide.level0_mpp, cfg.target_mpp, cfg.tile_size_px, cfg.overlap_px)
    if 0 in grid.shape:
        raise SlideError(
            slide.path,
            f"slide of {slide.dimensions[0]}×{slide.dimensions[1]} px is smaller than one "
            f"{cfg.tile_size_px}-px tile at {cfg.target_mpp:g} µm/px",
        )
    thumbnail = slide.thumbnail(detection_mpp(slide, cfg.tissue.thumbnail_mpp))
    thumb_mpp = slide.level0_mpp * slide.dimensions[0] / thumbnail.shape[1]
    tissue = detect_tissue(thumbnail, thumb_mpp, cfg.tissue)
    row_col = grid_indices(grid)
    coords = level0_coords(grid, row_col)
    fractions = tissue_fractions(tissue.tissue, thumb_mpp, slide.level0_mpp, coords, grid.tile_size_level0)
    keep = fractions >= cfg.min_tissue
    boxes = np.concatenate([coords[keep], coords[keep] + grid.tile_size_level0], axis=1) * (
        slide.level0_mpp / thumb_mpp
    )
    overview = OverviewTask(
        job,
        thumbnail,
        tissue.tissue,
        tissue.ink,
        boxes,
        f"{job.slide_id}: {int(keep.sum())} tiles at {cfg.target_mpp:g} µm/px",
        resolution_note(slide.level0_mpp, slide.mpp_source),
    )
    if not keep.any():
        _save_qc(overview)  # the picture shows why
        raise SlideError(
            slide.path,
            f"no tissue: none of {len(keep)} tiles reaches min_tissue={cfg.min_tissue:g} (see the QC picture)",
        )
    layout = StoreLayout(int(keep.sum()), cfg.tile_size_px, cfg.store.tiles_per_shard)
    attrs = _store_attrs(slide, grid, cfg, tissue.saturation_threshold, thumb_mpp)
    create_store(job.group_path, layout, coords[keep], fractions[keep], None, None, attrs, cfg.store)
    shards = _shard_tasks(job, layout, grid, slide, row_col[keep], coords[keep], cfg)
    return SlidePlan(job, slide.level0_mpp, shards, overview)


def write_overview(task: OverviewTask) -> int:
    """Store the thumbnail and tissue mask, draw the QC picture; returns 0 (tiles written)."""
    write_overview_arrays(task.job.group_path, task.thumbnail, task.tissue_mask)
    _save_qc(task)
    return 0


def _save_qc(task: OverviewTask) -> None:
    if task.job.qc_path is not None:
        save_qc_png(
            task.job.qc_path,
            task.thumbnail,
            task.tissue_mask,
            task.ink_mask,
            task.boxes_thumb,
            task.title,
            task.mpp_note,
        )


def detection_mpp(slide: Slide, thumbnail_mpp: float) -> float:
    """The thumbnail resolution, coarsened for very large slides so that tissue detection (which
    works in float on every thumbnail pixel) stays within a worker's memory budget."""
    width, height = slide.dimensions
    area_um2 = width * height * slide.level0_mpp**2
    return max(thumbnail_mpp, (area_um2 / _MAX_THUMBNAIL_PIXELS) ** 0.5)


def _shard_tasks(
    job: SlideJob,
    layout: StoreLayout,
    grid: GridSpec,
    slide: Slide,
    row_col: np.ndarray,
    coords: np.ndarray,
    cfg: TilingConfig,
) -> list[ShardTask]:
    level = slide.best_level_for(cfg.target_mpp)
    return [
        ShardTask(
            job,
            layout,
            index,
            grid,
            level,
            row_col[layout.shard_slice(index)],
            coords[layout.shard_slice(index)],
            cfg.max_tiles_per_read,
            cfg.reader_cache_mb,
        )
        for index in range(layout.n_shards)
    ]


def _store_attrs(
    slide: Slide, grid: GridSpec, cfg: TilingConfig, saturation_threshold: float, thumb_mpp: float
) -> dict:
    level = slide.best_level_for(cfg.target_mpp)
    return {
        "slide": {
            "path": str(slide.path),
            "name": slide.path.name,
            "size_bytes": slide.path.stat().st_size,
            "quick_sha256": quick_checksum(slide.path),
            "vendor": slide.vendor,
            "level0_mpp": slide.level0_mpp,
            "mpp_source": slide.mpp_source,
            "read_path": slide.read_path(level),
            "level0_width": slide.dimensions[0],
            "level0_height": slide.dimensions[1],
            "level_downsamples": list(slide.level_downsamples),
            "level_dimensions": [list(dims) for dims in slide.level_dimensions],
        },
        "tiling": {
            "target_mpp": cfg.target_mpp,
            "tile_size_px": cfg.tile_size_px,
            "overlap_px": cfg.overlap_px,
            "stride_px": grid.stride_px,
            "read_level": level,
            "read_level_mpp": slide.level_mpp(level),
            "tile_size_level0": grid.tile_size_level0,
            "resampler": RESAMPLER,
            "min_tissue": cfg.min_tissue,
        },
        "tissue": {
            **asdict(cfg.tissue),
            "saturation_threshold": float(saturation_threshold),
            "thumbnail_mpp_actual": thumb_mpp,
        },
        "store": asdict(cfg.store),
        "pathgen_version": __version__,
        "created": now_iso(),
    }


def quick_checksum(path: Path, block_bytes: int = 2**20) -> str:
    """SHA-256 of the size and the first and last MiB: tells slides apart without reading GBs."""
    digest = hashlib.sha256(str(path.stat().st_size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(block_bytes))
        handle.seek(max(0, path.stat().st_size - block_bytes))
        digest.update(handle.read(block_bytes))
    return digest.hexdigest()


def fill_shard(task: ShardTask) -> int:
    """Read the shard's tiles from the slide and write the shard; returns the tile count."""
    try:
        slide = cached_slide(task.job.slide_path, task.job.mpp_override, task.reader_cache_mb)
        tiles = _shard_buffer(len(task.row_col), task.grid.tile_size_px)
        for start, end in horizontal_runs(task.row_col, task.max_tiles_per_read):
            read_run(slide, task.grid, task.read_level, task.level0_xy[start:end], tiles[start:end])
    except SlideError:
        forget_slide(task.job.slide_path)
        raise
    write_shard(task.job.group_path, task.layout, task.shard_index, tiles)
    return len(tiles)


_SHARD_BUFFER: list[np.ndarray] = []  # this process's one shard of tiles, reused from shard to shard


def _shard_buffer(n_tiles: int, tile_px: int) -> np.ndarray:
    """A (n_tiles, T, T, 3) uint8 array for one shard, the same memory every time: a fresh array's
    pages are faulted in on first write, which cost ~10% of filling a shard (0.12 ms per 256-px tile)."""
    shape = (n_tiles, tile_px, tile_px, 3)
    if not _SHARD_BUFFER or _SHARD_BUFFER[0].shape[1:] != shape[1:] or len(_SHARD_BUFFER[0]) < n_tiles:
        _SHARD_BUFFER[:] = [np.empty(shape, np.uint8)]
    return _SHARD_BUFFER[0][:n_tiles]
