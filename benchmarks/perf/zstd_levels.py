"""Which zstd level for the lossless tile store: bytes per tile against encode and decode time, in one run.

Two tile sets of 256 × 256 RGB uint8, encoded as the store encodes a tile (tiling.fast_codecs) and
decoded as its reader decodes one (tiling.shards.TileCodec):
  * real       tissue tiles of CMU-1-Small-Region.svs (an Aperio JPEG slide), cut every 128 px
  * synthetic  tissue tiles of a generated slide (tiling.synthetic), whose texture mosaic repeats
               patches: long repeats that zstd's slower levels find and real tissue lacks
Each level's figures are medians of `--rounds` rounds of CPU time of this process (the machine may
be shared), and every figure is printed as a ratio to the store's default level.

    python benchmarks/perf/zstd_levels.py
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tiling.config import StoreConfig
from tiling.fast_codecs import zstd_compress
from tiling.reader import open_slide
from tiling.shards import TileCodec
from tiling.synthetic import SyntheticSlideSpec, write_synthetic_slide

REAL_SLIDE = Path("/work/shared/data/slides/CMU-1-Small-Region.svs")
LEVELS = (3, 1, -1, -3, -5)
TILE_PX = 256


def tissue_tiles(path: Path, step_px: int, limit: int) -> list[np.ndarray]:
    """Up to `limit` level-0 tiles of `path` whose mean is below glass (220), cut every `step_px`."""
    slide = open_slide(path)
    width, height = slide.dimensions
    tiles = []
    for y in range(0, height - TILE_PX + 1, step_px):
        for x in range(0, width - TILE_PX + 1, step_px):
            tile = np.ascontiguousarray(slide.read_rgb((x, y), 0, (TILE_PX, TILE_PX)))
            if tile.mean() < 220:
                tiles.append(tile)
    slide.close()
    return tiles[:: max(1, len(tiles) // limit)][:limit]


def measure(tiles: list[np.ndarray], level: int, rounds: int) -> tuple[float, float, float]:
    """(bytes per tile, encode CPU ms per tile, decode CPU ms per tile) at `level`, medians of `rounds`."""
    codec = TileCodec("zstd", level)
    encode, decode = [], []
    for _ in range(rounds):
        start = time.process_time()
        frames = [zstd_compress(tile, level) for tile in tiles]
        encode.append((time.process_time() - start) / len(tiles))
        start = time.process_time()
        for frame in frames:
            codec.decode(frame, tiles[0].shape)
        decode.append((time.process_time() - start) / len(tiles))
    return sum(map(len, frames)) / len(tiles), float(np.median(encode)) * 1e3, float(np.median(decode)) * 1e3


def report(name: str, tiles: list[np.ndarray], rounds: int) -> None:
    """One table: each level's bytes, encode and decode per tile, and their ratios to the default level."""
    rows = {level: measure(tiles, level, rounds) for level in LEVELS}
    base = rows[StoreConfig().zstd_level]
    print(f"\n{name}: {len(tiles)} tiles of {TILE_PX} px (raw {TILE_PX * TILE_PX * 3 / 1024:.0f} KB)")
    ratio = f"{'× default':>11}"
    print(f"{'level':>6}{'KB/tile':>9}{ratio}{'encode ms':>11}{ratio}{'decode ms':>11}{ratio}")
    for level, (size, enc, dec) in rows.items():
        print(
            f"{level:>6}{size / 1024:>9.1f}{size / base[0]:>11.3f}{enc:>11.3f}{enc / base[1]:>11.2f}"
            f"{dec:>11.3f}{dec / base[2]:>11.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=200, help="tiles per set, at most")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"default store level: zstd {StoreConfig().zstd_level}; CPU time of this process, medians of {args.rounds}")
    if REAL_SLIDE.is_file():
        report("real (CMU-1-Small-Region.svs)", tissue_tiles(REAL_SLIDE, TILE_PX // 2, args.tiles), args.rounds)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "synthetic.tif"
        write_synthetic_slide(path, SyntheticSlideSpec(6000, 4500, mpp=0.5, seed=11, tissue_regions=4))
        report("synthetic (tiling.synthetic)", tissue_tiles(path, TILE_PX, args.tiles), args.rounds)


if __name__ == "__main__":
    main()
