"""Read regions of a JPEG-tiled TIFF slide by decoding the file's own tiles, without OpenSlide.

OpenSlide's `read_region` decodes the same compressed tiles with libjpeg-turbo, but then
composites them through cairo into premultiplied ARGB and caches them in a shared cache; that
costs about a third of its time on 256-px tiles. For a TIFF-family slide (generic tiled TIFF,
Aperio SVS) whose pyramid levels are 8-bit, 3-channel, JPEG-compressed tiled pages, this module
fetches the compressed tiles (offsets, byte counts and the shared JPEGTables from tifffile) and
decodes them with libjpeg-turbo (tiling.fast_codecs: through imagecodecs, else Pillow), forcing
the colour space that the TIFF's photometric tag states (Aperio writes RGB-coded JPEG without an
Adobe marker, which a decoder left to guess would read as YCbCr). Decoded tiles are kept in a
bounded LRU cache per handle.

Only whole-pixel positions on a level are read here (OpenSlide would interpolate a fractional
one); anything else — other compressions (JPEG 2000 included), other layouts, fractional
positions — is left to OpenSlide by the caller. See docs/tiff_tiles.md for the format facts.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from tiling.fast_codecs import decode_jpeg_rgb

READ_PATH = "tiff-jpeg"
_JPEG = 7  # TIFF Compression tag value for "new-style" JPEG (TIFF Technical Note 2)
_JPEG_MODE = {2: "RGB", 6: "YCbCr"}  # TIFF Photometric tag → colour space inside the JPEG stream


@dataclass(frozen=True)
class TiledLevel:
    """Where one pyramid level's compressed tiles lie in the file and how to decode them."""

    width: int
    height: int
    tile_w: int
    tile_h: int
    offsets: np.ndarray  # (tiles,) byte offset of each tile, row-major
    byte_counts: np.ndarray  # (tiles,) compressed size of each tile
    jpeg_tables: bytes | None  # shared quantisation/Huffman tables (abbreviated streams)
    jpeg_mode: str  # "RGB" or "YCbCr"

    @property
    def tiles_across(self) -> int:
        """Tiles in one row of the level's tile grid."""
        return -(-self.width // self.tile_w)


def _level_from_page(page: tifffile.TiffPage) -> TiledLevel | None:
    """The page as a TiledLevel, or None when it is not a layout this module decodes."""
    if not (
        page.is_tiled
        and page.compression == _JPEG
        and page.photometric in _JPEG_MODE
        and page.samplesperpixel == 3
        and page.bitspersample == 8
        and page.planarconfig == 1
        and page.imagedepth == 1
        and page.tiledepth == 1
    ):
        return None
    counts = np.asarray(page.databytecounts, dtype=np.int64)
    if (counts <= 0).any():
        return None  # sparse (unscanned) tiles: OpenSlide paints them transparent
    return TiledLevel(
        page.imagewidth,
        page.imagelength,
        page.tilewidth,
        page.tilelength,
        np.asarray(page.dataoffsets, dtype=np.int64),
        counts,
        page.jpegtables,
        _JPEG_MODE[int(page.photometric)],
    )


def find_tiled_levels(path: Path, level_dimensions: tuple[tuple[int, int], ...]) -> dict[int, TiledLevel]:
    """For each OpenSlide level, the TIFF page of the same size if it is a decodable JPEG-tiled page.

    Levels are matched by their (width, height); a level with no such page, or with two
    candidate pages of that size, is left out (and so read by OpenSlide).
    """
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ndpi or tif.is_philips or tif.is_scn or tif.is_bif:
                return {}  # vendor layouts with their own coordinate rules: OpenSlide's job
            by_size: dict[tuple[int, int], list[tifffile.TiffPage]] = {}
            for page in tif.pages:
                if page.is_tiled:
                    by_size.setdefault((page.imagewidth, page.imagelength), []).append(page)
            levels = {}
            for level, size in enumerate(level_dimensions):
                pages = by_size.get(tuple(size), [])
                decodable = _level_from_page(pages[0]) if len(pages) == 1 else None
                if decodable is not None:
                    levels[level] = decodable
            return levels
    except (tifffile.TiffFileError, OSError, ValueError, KeyError):
        return {}


def decode_jpeg_tile(data: bytes, level: TiledLevel, out: np.ndarray | None = None) -> np.ndarray:
    """One compressed tile → RGB uint8 (tile_h, tile_w, 3), in the colour space the TIFF states
    (into `out` when given)."""
    return decode_jpeg_rgb(data, level.jpeg_tables, level.jpeg_mode, (level.tile_w, level.tile_h), out)


class TiffTileReader:
    """Region reads from the JPEG-tiled levels of one TIFF, with an LRU cache of decoded tiles.

    One reader per process (it holds an open file descriptor); `cache_bytes` bounds the decoded
    tiles it keeps, so a worker's memory stays that plus one region.
    """

    def __init__(self, path: Path, levels: dict[int, TiledLevel], cache_bytes: int):
        self.path = path
        self.levels = levels
        self._fd = os.open(path, os.O_RDONLY)
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_bytes = max(0, cache_bytes)
        self._cached_bytes = 0

    def can_read(self, level: int, level_xy: tuple[float, float]) -> bool:
        """Whether this reader decodes `level` at this position (whole pixels on that level)."""
        return level in self.levels and all(float(v).is_integer() for v in level_xy)

    def read_rgb(
        self, level: int, level_xy: tuple[int, int], size_wh: tuple[int, int], out: np.ndarray | None = None
    ) -> np.ndarray:
        """RGB uint8 (h, w, 3) of the level's pixels from `level_xy`; outside the image is white.

        With `out` (h, w, 3) uint8 the pixels are written there (and `out` returned), saving a copy.
        """
        spec = self.levels[level]
        (x0, y0), (w, h) = (int(level_xy[0]), int(level_xy[1])), size_wh
        cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + w, spec.width), min(y0 + h, spec.height)
        if out is None:
            out = np.empty((h, w, 3), np.uint8)
        if out.shape != (h, w, 3) or out.dtype != np.uint8:
            raise ValueError(f"out must be uint8 of shape {(h, w, 3)}, got {out.dtype} {out.shape}")
        if (cx0, cy0, cx1, cy1) != (x0, y0, x0 + w, y0 + h):
            out.fill(255)  # part of the region lies outside the image
        elif (w, h) == (spec.tile_w, spec.tile_h) and x0 % w == 0 and y0 % h == 0:
            index = (y0 // h) * spec.tiles_across + x0 // w
            if (level, index) not in self._cache:  # one whole file tile, as aligned tiling reads each once:
                return decode_jpeg_tile(self._compressed(level, spec, index), spec, out)  # decoded in place, not cached
        for row in range(cy0 // spec.tile_h, -(-cy1 // spec.tile_h)) if cy1 > cy0 else ():
            for col in range(cx0 // spec.tile_w, -(-cx1 // spec.tile_w)) if cx1 > cx0 else ():
                tile = self._tile(level, spec, row * spec.tiles_across + col)
                tx, ty = col * spec.tile_w, row * spec.tile_h
                sx0, sy0 = max(cx0, tx), max(cy0, ty)
                sx1, sy1 = min(cx1, tx + spec.tile_w), min(cy1, ty + spec.tile_h)
                out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = tile[sy0 - ty : sy1 - ty, sx0 - tx : sx1 - tx]
        return out

    def _tile(self, level: int, spec: TiledLevel, index: int) -> np.ndarray:
        key = (level, index)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        tile = decode_jpeg_tile(self._compressed(level, spec, index), spec)
        self._remember(key, tile)
        return tile

    def _compressed(self, level: int, spec: TiledLevel, index: int) -> bytes:
        data = os.pread(self._fd, int(spec.byte_counts[index]), int(spec.offsets[index]))
        if len(data) != spec.byte_counts[index]:
            raise OSError(
                f"tile {index} of level {level} is truncated ({len(data)} of {spec.byte_counts[index]} bytes)"
            )
        return data

    def _remember(self, key: tuple[int, int], tile: np.ndarray) -> None:
        if tile.nbytes > self._cache_bytes:
            return
        self._cache[key] = tile
        self._cached_bytes += tile.nbytes
        while self._cached_bytes > self._cache_bytes:
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= evicted.nbytes

    @property
    def cached_bytes(self) -> int:
        """Bytes of decoded tiles held now (never above the cache bound)."""
        return self._cached_bytes

    def close(self) -> None:
        """Release the file descriptor and the cache."""
        self._cache.clear()
        self._cached_bytes = 0
        os.close(self._fd)


def open_tiff_tiles(
    path: Path, level_dimensions: tuple[tuple[int, int], ...], cache_bytes: int
) -> TiffTileReader | None:
    """A direct reader for the slide's JPEG-tiled levels, or None if no level qualifies."""
    levels = find_tiled_levels(path, level_dimensions)
    return TiffTileReader(path, levels, cache_bytes) if levels else None
