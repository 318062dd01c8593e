"""The picture of a view bank: one row per source tile, the tile first, then its K generated views.

A quick visual check of what the diffusion model makes of each source (and, in interpolation mode,
of the SLERP weight: the secondary tile follows the primary, so both ends of the interpolation are
in the picture), written as `BANK_DIR/grid.png` by `pathgen generate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pathgen.atomic import atomic_target

BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


def grid_size(
    n_rows: int, n_views: int, cell_px: int, pad: int = 2, label_px: int = 0, n_real: int = 1
) -> tuple[int, int]:
    """(width, height) in pixels of a grid of n_rows × (n_real + n_views) cells (label band above each row)."""
    width = pad + (n_real + n_views) * (cell_px + pad)
    height = pad + n_rows * (label_px + cell_px + pad)
    return width, height


def _cell(image: np.ndarray, cell_px: int) -> Image.Image:
    picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if picture.size != (cell_px, cell_px):
        upscale = picture.width < cell_px
        picture = picture.resize((cell_px, cell_px), Image.NEAREST if upscale else Image.LANCZOS)
    return picture


def make_grid(
    sources: Sequence[np.ndarray],
    views: Sequence[np.ndarray],
    cell_px: int | None = None,
    pad: int = 2,
    labels: Sequence[Sequence[str]] | None = None,
    label_px: int = 11,
    secondaries: Sequence[np.ndarray] | None = None,
) -> Image.Image:
    """Grid picture: row r = sources[r] (H, W, 3) uint8, secondaries[r] when given (the second tile of an
    interpolation), then views[r] (K, S, S, 3) uint8.

    `cell_px` (default: the view size) is the side of every cell; tiles of other sizes are resized
    (nearest when enlarging, so pixels stay visible). `labels[r]` (1 + K short strings) are drawn in a
    small band above the row's cells; without labels there is no band.
    """
    if len(sources) != len(views) or not len(views):
        raise ValueError(f"grid needs one source per row of views, got {len(sources)} sources and {len(views)} rows")
    if secondaries is not None and len(secondaries) != len(views):
        raise ValueError(f"grid needs one secondary tile per row, got {len(secondaries)} for {len(views)} rows")
    n_views = int(views[0].shape[0])
    cell_px = int(cell_px or views[0].shape[1])
    label_px = label_px if labels is not None else 0
    n_real = 1 if secondaries is None else 2
    canvas = Image.new("RGB", grid_size(len(views), n_views, cell_px, pad, label_px, n_real), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default() if labels is not None else None
    for r, (source, row_views) in enumerate(zip(sources, views)):
        top = pad + r * (label_px + cell_px + pad)
        real = [source] if secondaries is None else [source, secondaries[r]]
        for c, image in enumerate([*real, *row_views]):
            left = pad + c * (cell_px + pad)
            canvas.paste(_cell(image, cell_px), (left, top + label_px))
            if labels is not None and c < len(labels[r]):
                draw.text((left, top), str(labels[r][c]), fill=TEXT, font=font)
    return canvas


def write_grid(
    path: str | Path,
    sources: Sequence[np.ndarray],
    views: Sequence[np.ndarray],
    cell_px: int | None = None,
    pad: int = 2,
    labels: Sequence[Sequence[str]] | None = None,
    secondaries: Sequence[np.ndarray] | None = None,
) -> Path:
    """Save `make_grid(...)` as a PNG at `path` (temporary name, then renamed); returns the path."""
    path = Path(path)
    with atomic_target(path) as temporary:
        make_grid(sources, views, cell_px, pad, labels, secondaries=secondaries).save(temporary, format="PNG")
    return path
