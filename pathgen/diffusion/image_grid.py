"""The picture of a view bank: one row per source tile, the tile first, then its K generated views.

A quick visual check of what the diffusion model makes of each source (and, in interpolation mode,
of the SLERP weight), written as `BANK_DIR/grid.png` by `pathgen generate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


def grid_size(n_rows: int, n_views: int, cell_px: int, pad: int = 2, label_px: int = 0) -> tuple[int, int]:
    """(width, height) in pixels of a grid of n_rows × (1 + n_views) cells (label band above each row)."""
    width = pad + (1 + n_views) * (cell_px + pad)
    height = pad + n_rows * (label_px + cell_px + pad)
    return width, height


def _cell(image: np.ndarray, cell_px: int) -> Image.Image:
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if picture.size != (cell_px, cell_px):
        upscale = picture.width < cell_px
        picture = picture.resize((cell_px, cell_px), Image.NEAREST if upscale else Image.LANCZOS)
    return picture


def make_grid(sources: Sequence[np.ndarray], views: Sequence[np.ndarray], cell_px: int | None = None,
              pad: int = 2, labels: Sequence[Sequence[str]] | None = None, label_px: int = 11) -> Image.Image:
    """Grid picture: row r = sources[r] (H, W, 3) uint8 then views[r] (K, S, S, 3) uint8.

    `cell_px` (default: the view size) is the side of every cell; tiles of other sizes are resized
    (nearest when enlarging, so pixels stay visible). `labels[r]` (1 + K short strings) are drawn in a
    small band above the row's cells; without labels there is no band.
    """
    if len(sources) != len(views) or not len(views):
        raise ValueError(f"grid needs one source per row of views, got {len(sources)} sources and {len(views)} rows")
    n_views = int(views[0].shape[0])
    cell_px = int(cell_px or views[0].shape[1])
    label_px = label_px if labels is not None else 0
    canvas = Image.new("RGB", grid_size(len(views), n_views, cell_px, pad, label_px), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default() if labels is not None else None
    for r, (source, row_views) in enumerate(zip(sources, views)):
        top = pad + r * (label_px + cell_px + pad)
        for c, image in enumerate([source, *row_views]):
            left = pad + c * (cell_px + pad)
            canvas.paste(_cell(image, cell_px), (left, top + label_px))
            if labels is not None and c < len(labels[r]):
                draw.text((left, top), str(labels[r][c]), fill=TEXT, font=font)
    return canvas


def write_grid(path: str | Path, sources: Sequence[np.ndarray], views: Sequence[np.ndarray],
               cell_px: int | None = None, pad: int = 2, labels: Sequence[Sequence[str]] | None = None) -> Path:
    """Save `make_grid(...)` as a PNG at `path`; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_grid(sources, views, cell_px, pad, labels).save(path, format="PNG")
    return path
