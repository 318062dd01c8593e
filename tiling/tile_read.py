"""Read tiles at the target resolution, each the resample of exactly its own level-0 box.

A tile's box is [x, x + s) × [y, y + s) in level-0 pixels: its stored (integer) corner and the
exact, usually fractional, side s = `GridSpec.tile_size_level0`. Pyramid levels rarely have a
whole-number downsample (an Aperio level 1 of 2.0005, levels of 3.7 or 4.03), and a level's
width and height ratios to level 0 differ slightly, so the box is mapped into the read level
per axis (level px = level-0 px · wL / w0) and resampled from its exact fractional extent
with Lanczos (Pillow's `resize(box=...)`). One region read per horizontal run of tiles keeps
the cost of one OpenSlide call per run; each tile is then cut at its own fractional position
inside that region, so nothing drifts along the run. A box that falls on whole level pixels
at the tile's own size is copied without resampling.

OpenSlide places pixel 0 of a region read at level-0 (X, Y) on level px (X / d, Y / d), d its
level downsample, interpolating when that is fractional; the region's origin is computed the
same way, and chosen where OpenSlide's interpolation is faithful (`region_start_level0`).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from tiling.grid import GridSpec
from tiling.reader import Slide
from tiling.tiff_tiles import READ_PATH

RESAMPLER = "Pillow Lanczos (a=3) of each tile's exact level box; boxes on whole pixels copied"  # store attrs
EXACT_PX = 0.02  # box corners this close to whole level pixels (at the tile's size) are copied, not resampled
_LANCZOS_LOBES = 3  # support of Pillow's Lanczos filter, in source pixels per unit of scale


def level_boxes(slide: Slide, level: int, level0_xy: np.ndarray, side_level0: float) -> np.ndarray:
    """(n, 4) float64 x0, y0, x1, y1 of each tile's level-0 box in `level`'s pixel coordinates."""
    level_w, level_h = slide.level_dimensions[level]
    scale_x = slide.dimensions[0] / level_w  # level-0 px per level px, per axis
    scale_y = slide.dimensions[1] / level_h
    xy = np.asarray(level0_xy, np.float64).reshape(-1, 2)
    return np.stack(
        [
            xy[:, 0] / scale_x,
            xy[:, 1] / scale_y,
            (xy[:, 0] + side_level0) / scale_x,
            (xy[:, 1] + side_level0) / scale_y,
        ],
        axis=1,
    )


def read_run(slide: Slide, grid: GridSpec, level: int, level0_xy: np.ndarray, out: np.ndarray) -> None:
    """Fill `out` (n, T, T, 3) with the tiles whose level-0 corners are `level0_xy` (n, 2), read from `level`.

    The tiles should be close together (a horizontal run): one region covering all their boxes
    is read, then every tile is resampled from its own box inside it. When every box is whole
    level pixels at the tile's size, tiles are copies: no filter margin is read, and a level that
    is decoded from the file's own tiles is read tile by tile straight into `out`.
    """
    tile_px = grid.tile_size_px
    boxes = level_boxes(slide, level, level0_xy, grid.tile_size_level0)
    corners = whole_pixel_corners(slide, level, boxes, tile_px)
    if corners is not None and slide.read_path(level) == READ_PATH:
        for i, corner in enumerate(corners):
            slide.read_rgb(corner, level, (tile_px, tile_px), out=out[i])
        return
    if corners is not None:
        boxes, margin = np.round(boxes), 0  # copies need no filter margin
    else:
        box_side = float(boxes[0, 2] - boxes[0, 0])
        margin = int(math.ceil(_LANCZOS_LOBES * max(1.0, box_side / tile_px))) + 1
    region, origin = _read_covering(slide, level, boxes, margin)
    local = boxes - np.array([origin[0], origin[1], origin[0], origin[1]])
    local[:, 2] = np.minimum(local[:, 2], region.shape[1])  # sub-pixel overhang at the slide's last column
    local[:, 3] = np.minimum(local[:, 3], region.shape[0])
    image = None
    for i, box in enumerate(local):
        if is_whole_pixel_box(box, tile_px):
            x0, y0 = int(round(box[0])), int(round(box[1]))
            out[i] = region[y0 : y0 + tile_px, x0 : x0 + tile_px]
            continue
        if image is None:
            image = Image.fromarray(np.ascontiguousarray(region))
        out[i] = np.asarray(image.resize((tile_px, tile_px), Image.Resampling.LANCZOS, box=tuple(box)))


def whole_pixel_corners(slide: Slide, level: int, boxes: np.ndarray, tile_px: int) -> list[tuple[int, int]] | None:
    """For boxes that are all whole level pixels at the tile's size, the level-0 corner of each that
    OpenSlide places exactly on that whole level pixel; None if any box is not such a copy."""
    if not all(is_whole_pixel_box(box, tile_px) for box in boxes):
        return None
    downsample = slide.level_downsamples[level]
    corners = []
    for x, y in np.round(boxes[:, :2]):
        level0_x, level0_y = region_start_level0(x, downsample), region_start_level0(y, downsample)
        if level0_x / downsample != x or level0_y / downsample != y:
            return None
        corners.append((level0_x, level0_y))
    return corners


def is_whole_pixel_box(box: np.ndarray, tile_px: int) -> bool:
    """True if the box (x0, y0, x1, y1) lies on whole pixels within EXACT_PX and is `tile_px` wide and high."""
    corners = np.asarray(box, np.float64)
    if np.abs(corners - np.round(corners)).max() > EXACT_PX:
        return False
    return round(corners[2] - corners[0]) == tile_px and round(corners[3] - corners[1]) == tile_px


def _read_covering(slide: Slide, level: int, boxes: np.ndarray, margin: int) -> tuple[np.ndarray, tuple[float, float]]:
    """The level region covering all boxes plus `margin` px (clipped to the level), and the level px
    (x, y) where its pixel 0 lies."""
    downsample = slide.level_downsamples[level]
    level_w, level_h = slide.level_dimensions[level]
    level0_x = region_start_level0(max(0.0, math.floor(boxes[:, 0].min()) - margin), downsample)
    level0_y = region_start_level0(max(0.0, math.floor(boxes[:, 1].min()) - margin), downsample)
    origin = (level0_x / downsample, level0_y / downsample)
    width = min(math.ceil(boxes[:, 2].max() + margin - origin[0]), math.floor(level_w - origin[0]))
    height = min(math.ceil(boxes[:, 3].max() + margin - origin[1]), math.floor(level_h - origin[1]))
    return slide.read_rgb((level0_x, level0_y), level, (int(width), int(height))), origin


def region_start_level0(level_px: float, downsample: float) -> int:
    """The level-0 coordinate at or before level px `level_px` from which to read a region.

    OpenSlide starts a region read at level-0 X on level px X / downsample. A whole level pixel
    is read as it is; a fractional one is interpolated, and one within ~0.06 px of a whole pixel is
    snapped to it (OpenSlide 4.0 / cairo), which would shift the tiles. So, among the start points
    of the ceil(downsample) + 1 level-0 pixels at or before the wanted one, take one on a whole
    level pixel if there is one, else the one whose fraction is nearest 0.5 (one always lies in
    [0.25, 0.75], the fractions being 1 / downsample ≤ 0.5 apart).
    """
    wanted = int(math.floor(level_px * downsample))
    candidates = [x for x in range(wanted - math.ceil(downsample), wanted + 1) if x >= 0]
    fractions = [(x / downsample) % 1.0 for x in candidates]
    whole = [x for x, f in zip(candidates, fractions) if min(f, 1 - f) < 1e-6]
    if whole:
        return whole[-1]
    return min(zip(candidates, fractions), key=lambda cf: (abs(cf[1] - 0.5), -cf[0]))[0]
