"""Write small JPEG-tiled TIFF pyramids in the colour layouts scanners use, for reader tests.

pyvips (tiling/synthetic.py) writes YCbCr JPEG tiles with shared JPEGTables. Scanners also
write RGB-coded JPEG (Aperio: photometric RGB) and self-contained tiles without shared tables.
This writer encodes each tile with Pillow and hands the encoded bytes to tifffile, so every
combination of colour (photometric RGB or YCbCr) and table layout (shared or in each tile) can
be produced without a JPEG-capable TIFF encoder: tifffile writes the encoded bytes under a
placeholder compression it can name without imagecodecs, and the Compression tag is then set to
JPEG (7) in place.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

_TABLE_MARKERS = (0xDB, 0xC4)  # DQT, DHT: the segments an abbreviated stream leaves to JPEGTables


def encode_tile(tile: np.ndarray, colour: str, quality: int = 90) -> bytes:
    """A complete JPEG stream of one RGB tile; colour "rgb" keeps RGB samples (Adobe marker)."""
    buffer = io.BytesIO()
    Image.fromarray(tile).save(
        buffer, format="JPEG", quality=quality, keep_rgb=colour == "rgb", subsampling=0 if colour == "rgb" else 2
    )
    return buffer.getvalue()


def split_tables(stream: bytes) -> tuple[bytes, bytes]:
    """(tables, abbreviated stream): DQT/DHT segments moved out of a complete JPEG stream."""
    tables, rest, pos = [b"\xff\xd8"], [b"\xff\xd8"], 2
    while pos < len(stream):
        marker, length = stream[pos + 1], int.from_bytes(stream[pos + 2 : pos + 4], "big")
        if marker == 0xDA:  # start of scan: the entropy-coded data and EOI follow
            rest.append(stream[pos:])
            break
        segment = stream[pos : pos + 2 + length]
        (tables if marker in _TABLE_MARKERS else rest).append(segment)
        pos += 2 + length
    return b"".join(tables) + b"\xff\xd9", b"".join(rest)


def _level_tiles(
    pixels: np.ndarray, tile_px: int, colour: str, shared_tables: bool
) -> tuple[list[bytes], bytes | None]:
    height, width = pixels.shape[:2]
    padded = np.full((-(-height // tile_px) * tile_px, -(-width // tile_px) * tile_px, 3), 255, np.uint8)
    padded[:height, :width] = pixels
    tiles, tables = [], None
    for y in range(0, padded.shape[0], tile_px):
        for x in range(0, padded.shape[1], tile_px):
            stream = encode_tile(padded[y : y + tile_px, x : x + tile_px], colour)
            if shared_tables:
                tables, stream = split_tables(stream)  # quality fixed: every tile has the same tables
            tiles.append(stream)
    return tiles, tables


def write_jpeg_tiled_tiff(
    path: str | Path,
    pixels: np.ndarray,
    mpp: float,
    tile_px: int = 256,
    colour: str = "rgb",
    shared_tables: bool = True,
    n_levels: int = 2,
) -> Path:
    """Write `pixels` (h, w, 3 uint8) as a JPEG-tiled pyramid, each level a page halving the last."""
    if colour not in ("rgb", "ycbcr"):
        raise ValueError(f"colour must be 'rgb' or 'ycbcr', not {colour!r}")
    path = Path(path)
    level = pixels
    with tifffile.TiffWriter(path) as tif:
        for index in range(n_levels):
            tiles, tables = _level_tiles(level, tile_px, colour, shared_tables)
            extratags = [(347, 7, len(tables), tables, True)] if tables is not None else []
            if colour == "ycbcr":  # the stream's own 4:2:0 sampling, stated as the TIFF tag says it
                extratags.append((530, 3, 2, (2, 2), True))
            tif.write(
                iter(tiles),
                shape=level.shape,
                dtype=np.uint8,
                tile=(tile_px, tile_px),
                compression="zlib",
                photometric="rgb" if colour == "rgb" else "ycbcr",
                resolution=(1e4 / (mpp * 2**index), 1e4 / (mpp * 2**index)),
                resolutionunit="centimeter",
                subfiletype=0 if index == 0 else 1,
                extratags=extratags,
                metadata=None,
            )
            level = np.asarray(Image.fromarray(level).reduce(2))
    with tifffile.TiffFile(path, mode="r+b") as tif:
        for page in tif.pages:
            page.tags["Compression"].overwrite(7)
    return path
