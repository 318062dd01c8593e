"""Why the tile store looks the way it does: on-disk layouts of the same tiles, measured in one run.

Two tile sets, 224×224×3 uint8 at 0.5 µm/px, cut where pathgen's tissue detector finds tissue:
  * synthetic  8,192 tiles of a generated 20,000 × 15,000 px H&E-like slide (tiling.synthetic);
               the grid stride is 112 px because the slide holds fewer disjoint tissue tiles
  * real       every tissue tile of CMU-1-Small-Region.svs (only ~50 exist, so its rates are
               noisy; its bytes per tile and PSNR show how real tissue compresses)
For each layout: write tiles/s, random single-tile reads/s (handle kept open), random batch-of-64
reads/s, bytes per tile and number of files of the tiles array, and PSNR against the source tiles
for lossy codecs. Every figure is also printed as a ratio to h5py with one LZF tile per chunk (the
layout the SSL issue compares against), measured in the same run.

Layouts: pathgen's store (tiling.store: zstd-1, 256 tiles per shard) read by its direct shard
reader; the same layout written and read through zarr-python; zarr with one file per tile; h5py
LZF and gzip-1; pathgen's JPEG codec at quality 80/90/95; 64 and 1024 tiles per shard; zstd-3.

Each figure is the better of two runs, because the machine may be shared (writes: the two halves
of the store, timed apart). Reads come from the OS page cache (the files were just written), so
they measure the software's cost per tile, not the disk's. A read run stops at a time cap (marked
*); h5py and zarr batches are read both by fancy indexing and by a loop, and the faster counts.

    python benchmarks/perf/store_layout.py                 # ≈ 4–5 min on 2 cores
    python benchmarks/perf/store_layout.py --tiles 2048    # a quick look
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from tiling.config import StoreConfig, TissueConfig
from tiling.grid import GridSpec, grid_indices, level0_coords
from tiling.reader import open_slide
from tiling.store import StoreLayout, create_store, mark_complete, open_store, write_shard
from tiling.synthetic import SyntheticSlideSpec, write_synthetic_slide
from tiling.tissue import detect_tissue, tissue_fractions

TILE_PX, MPP, BATCH, BLOCK = 224, 0.5, 64, 1024  # BLOCK: write unit, a multiple of every shard size
REAL_SLIDE = Path("/work/shared/data/slides/CMU-1-Small-Region.svs")


# ------------------------------------------------------------------------------------ tile sets

def tissue_tiles(path: Path, stride_px: int, limit: int | None) -> np.ndarray:
    """(N, T, T, 3) tiles at MPP whose tissue fraction (pathgen's detector) is ≥ 0.25, raster order."""
    slide = open_slide(path)
    if slide.best_level_for(MPP) != 0 or abs(slide.level0_mpp - MPP) > 0.01:
        raise SystemExit(f"{path}: needs a ≈{MPP} µm/px level 0, found {slide.level0_mpp:.3f}")
    thumbnail = slide.thumbnail(8.0)
    thumb_mpp = slide.level0_mpp * slide.dimensions[0] / thumbnail.shape[1]
    mask = detect_tissue(thumbnail, thumb_mpp, TissueConfig()).tissue
    grid = GridSpec(slide.dimensions, slide.level0_mpp, slide.level0_mpp, TILE_PX, TILE_PX - stride_px)
    xy = level0_coords(grid, grid_indices(grid))
    xy = xy[tissue_fractions(mask, thumb_mpp, slide.level0_mpp, xy, TILE_PX) >= 0.25]
    if limit is not None and len(xy) > limit:
        xy = xy[np.linspace(0, len(xy) - 1, limit).round().astype(int)]
    tiles = np.empty((len(xy), TILE_PX, TILE_PX, 3), np.uint8)
    for y in np.unique(xy[:, 1]):  # one read per grid row, spanning its kept tiles
        rows = np.flatnonzero(xy[:, 1] == y)
        x0 = int(xy[rows, 0].min())
        strip = slide.read_rgb((x0, int(y)), 0, (int(xy[rows, 0].max()) - x0 + TILE_PX, TILE_PX))
        for row in rows:
            tiles[row] = strip[:, xy[row, 0] - x0:xy[row, 0] - x0 + TILE_PX]
    slide.close()
    return tiles


def synthetic_tiles(workdir: Path, n_tiles: int) -> np.ndarray:
    """Tiles of the benchmark's synthetic slide (generated once into `workdir`, then reused)."""
    path = workdir / "store_layout_20000x15000_0.5.tif"
    if not path.exists():
        print(f"generating {path} …", flush=True)
        write_synthetic_slide(path, SyntheticSlideSpec(20000, 15000, mpp=MPP, seed=11, tissue_regions=8))
    return tissue_tiles(path, TILE_PX // 2, n_tiles)


# -------------------------------------------------------------------------------------- layouts

@dataclass(frozen=True)
class Layout:
    """One way to put tiles on disk: `kind` picks the writer/reader, the rest are its settings."""

    name: str
    kind: str  # "pathgen" (direct shard I/O), "pathgen-zarr" (same files via zarr), "zarr", "h5"
    codec: str = "zstd"  # zstd | jpeg for pathgen kinds; lzf | gzip for h5
    level: int = 1  # zstd level, JPEG quality or gzip level
    tiles_per_shard: int = 256

    @property
    def lossy(self) -> bool:
        return self.codec == "jpeg"

    def data_path(self, path: Path) -> Path:
        """What holds the tiles: the tiles array folder, or the HDF5 file."""
        return path / "tiles" if self.kind.startswith("pathgen") else path


LAYOUTS = [
    Layout("h5py lzf, 1 tile/chunk", "h5", "lzf", 0),
    Layout("pathgen zstd-1, 256/shard", "pathgen"),
    Layout("  same files via zarr-python", "pathgen-zarr"),
    Layout("zarr zstd-1, 1 file/tile", "zarr"),
    Layout("h5py gzip-1, 1 tile/chunk", "h5", "gzip", 1),
    Layout("pathgen zstd-1, 64/shard", "pathgen", tiles_per_shard=64),
    Layout("pathgen zstd-1, 1024/shard", "pathgen", tiles_per_shard=1024),
    Layout("pathgen zstd-3, 256/shard", "pathgen", level=3),
    Layout("pathgen jpeg q80", "pathgen", "jpeg", 80),
    Layout("pathgen jpeg q90", "pathgen", "jpeg", 90),
    Layout("pathgen jpeg q95", "pathgen", "jpeg", 95),
]
BASELINE = LAYOUTS[0].name


class Writer:
    """Create a layout's files for n tiles, write BLOCK-aligned runs of tiles, finish."""

    def __init__(self, layout: Layout, path: Path, n_tiles: int):
        self.layout, self.path, shape = layout, path, (n_tiles, TILE_PX, TILE_PX, 3)
        if layout.kind.startswith("pathgen"):
            self.store_layout = StoreLayout(n_tiles, TILE_PX, layout.tiles_per_shard)
            cfg = StoreConfig(codec=layout.codec, zstd_level=layout.level, jpeg_quality=layout.level,
                              tiles_per_shard=layout.tiles_per_shard)
            create_store(path, self.store_layout, np.zeros((n_tiles, 2)), np.ones(n_tiles), np.zeros((8, 8, 3), np.uint8),
                         np.ones((8, 8), np.uint8), {}, cfg)
            self.array = zarr.open_array(path / "tiles", mode="r+") if layout.kind == "pathgen-zarr" else None
        elif layout.kind == "zarr":
            self.array = zarr.create_array(path, shape=shape, dtype="uint8", chunks=(1, *shape[1:]),
                                           compressors=ZstdCodec(level=layout.level))
        else:
            self.file = h5py.File(path, "w")
            options = {"compression_opts": layout.level} if layout.codec == "gzip" else {}
            self.array = self.file.create_dataset("tiles", shape=shape, dtype="uint8", chunks=(1, *shape[1:]),
                                                  compression=layout.codec, **options)

    def write(self, start: int, tiles: np.ndarray) -> None:
        if self.layout.kind == "pathgen":
            per_shard = self.layout.tiles_per_shard
            for shard in range(start // per_shard, -(-(start + len(tiles)) // per_shard)):
                rows = self.store_layout.shard_slice(shard)
                write_shard(self.path, self.store_layout, shard, tiles[rows.start - start:rows.stop - start])
        else:
            self.array[start:start + len(tiles)] = tiles

    def finish(self) -> None:
        if self.layout.kind.startswith("pathgen"):
            mark_complete(self.path, {})
        elif self.layout.kind == "h5":
            self.file.close()


class Reader:
    """A layout opened for reading, handle kept open; `batch_ways` are the ways to read a batch."""

    def __init__(self, layout: Layout, path: Path):
        self.file = None
        if layout.kind == "pathgen":
            store = open_store(path)
            self.one = lambda i: store.read([i])[0]
            self.batch_ways = {"direct": store.read}
            return
        if layout.kind == "h5":
            self.file = h5py.File(path, "r")
            array = self.file["tiles"]
            fancy = lambda idx: array[np.sort(idx)][np.argsort(np.argsort(idx))]  # h5py wants sorted
        else:
            array = zarr.open_array(path / "tiles" if layout.kind == "pathgen-zarr" else path, mode="r")
            fancy = lambda idx: array.oindex[idx]
        self.one = lambda i: array[int(i)]
        self.batch_ways = {"fancy index": fancy, "loop": lambda idx: np.stack([array[int(i)] for i in idx])}

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


# ---------------------------------------------------------------------------------- measurement

@dataclass
class Result:
    """The measured figures of one layout on one tile set."""

    write: float = 0.0
    single: float = 0.0
    batch: float = 0.0
    batch_way: str = ""
    capped: set = field(default_factory=set)  # which read figures stopped at the time cap
    bytes_per_tile: float = 0.0
    files: int = 0
    psnr: float | None = None


def best_rate(fn, items: list, n_tiles_per_item: int, cap_s: float) -> tuple[float, bool]:
    """Best of two runs of fn over items, in tiles/s; each run stops once it passes cap_s."""
    best, capped = 0.0, False
    for _ in range(2):
        start, done = time.perf_counter(), 0
        for item in items:
            fn(item)
            done += 1
            if time.perf_counter() - start > cap_s:
                break
        best = max(best, done * n_tiles_per_item / (time.perf_counter() - start))
        capped |= done < len(items)
    return best, capped


def timed_write(layout: Layout, path: Path, tiles: np.ndarray) -> float:
    """Tiles/s writing the store: the better of its two halves timed apart (creation counts in the
    first, finishing in the second); a set too small to halve is written twice instead."""
    n, half = len(tiles), (len(tiles) // (2 * BLOCK)) * BLOCK
    runs = [[(0, half), (half, n)]] if half else [[(0, n)], [(0, n)]]
    rates = []
    for parts in runs:
        if path.is_file():
            path.unlink()
        shutil.rmtree(path, ignore_errors=True)
        writer = None
        for lo, hi in parts:
            start = time.perf_counter()
            writer = writer or Writer(layout, path, n)
            for block in range(lo, hi, BLOCK):
                writer.write(block, tiles[block:min(hi, block + BLOCK)])
            if hi == n:
                writer.finish()
            rates.append((hi - lo) / (time.perf_counter() - start))
    return max(rates)


def measure(layout: Layout, path: Path, tiles: np.ndarray, n_reads: int, cap_s: float) -> Result:
    """Every figure of one layout on one tile set."""
    result = Result(write=timed_write(layout, path, tiles))
    data = layout.data_path(path)
    files = [data] if data.is_file() else [p for p in data.rglob("*") if p.is_file()]
    result.files, result.bytes_per_tile = len(files), sum(p.stat().st_size for p in files) / len(tiles)
    rng = np.random.default_rng(0)
    singles = rng.integers(0, len(tiles), n_reads).tolist()
    batches = [rng.choice(len(tiles), min(BATCH, len(tiles)), replace=False) for _ in range(-(-n_reads // BATCH))]
    reader = Reader(layout, path)
    result.single, capped = best_rate(reader.one, singles, 1, cap_s)
    result.capped |= {"single"} if capped else set()
    for way, read_batch in reader.batch_ways.items():
        rate, capped = best_rate(read_batch, batches, len(batches[0]), cap_s)
        if rate > result.batch:
            result.batch, result.batch_way = rate, way
            result.capped = (result.capped - {"batch"}) | ({"batch"} if capped else set())
    check = np.asarray(reader.batch_ways["loop" if "loop" in reader.batch_ways else "direct"](batches[0]))
    if not layout.lossy and not np.array_equal(check, tiles[batches[0]]):
        raise AssertionError(f"{layout.name}: tiles read back differ from those written")
    if layout.lossy:
        result.psnr = psnr(reader, tiles)
    reader.close()
    return result


def psnr(reader: Reader, tiles: np.ndarray) -> float:
    """PSNR (dB) of every tile read back against its source, over all pixels together."""
    squared_error = 0.0
    for start in range(0, len(tiles), BLOCK):
        rows = np.arange(start, min(len(tiles), start + BLOCK))
        diff = reader.batch_ways["direct"](rows).astype(np.float32) - tiles[rows]
        squared_error += float(np.square(diff).sum())
    return float(10 * np.log10(255.0**2 / (squared_error / tiles.size)))


# -------------------------------------------------------------------------------------- report

def print_table(title: str, results: dict[str, Result]) -> None:
    """Rates and sizes, each with its ratio to the baseline layout."""
    base = results[BASELINE]
    print(f"\n{title}  (× = ratio to {BASELINE.strip()}; * = read run stopped at the time cap)")
    print(f"{'layout':<30}{'write/s':>8}{'×':>6}{'1-tile/s':>10}{'×':>6}{'batch/s':>9}{'×':>6} {'via':<12}"
          f"{'KB/tile':>8}{'×':>6}{'files':>7}{'PSNR':>7}")
    for name, r in results.items():
        single = f"{r.single:.0f}{'*' if 'single' in r.capped else ''}"
        batch = f"{r.batch:.0f}{'*' if 'batch' in r.capped else ''}"
        psnr_text = f"{r.psnr:.1f}" if r.psnr is not None else "—"
        print(f"{name:<30}{r.write:>8.0f}{r.write / base.write:>6.2f}{single:>10}{r.single / base.single:>6.2f}"
              f"{batch:>9}{r.batch / base.batch:>6.2f} {r.batch_way:<12}{r.bytes_per_tile / 1024:>8.1f}"
              f"{r.bytes_per_tile / base.bytes_per_tile:>6.2f}{r.files:>7}{psnr_text:>7}")


def conclusion(synthetic: dict[str, Result], real: dict[str, Result] | None, n_real: int) -> str:
    """One paragraph, every number taken from the results."""
    base, ours, via_zarr = synthetic[BASELINE], synthetic[LAYOUTS[1].name], synthetic[LAYOUTS[2].name]
    many, gzip = synthetic[LAYOUTS[3].name], synthetic[LAYOUTS[4].name]
    shards = [synthetic[LAYOUTS[k].name] for k in (5, 1, 6)]
    zstd3, jpeg90 = synthetic[LAYOUTS[7].name], synthetic[LAYOUTS[9].name]
    span = lambda attr: max(getattr(r, attr) for r in shards) / min(getattr(r, attr) for r in shards)
    real_part = ""
    if real is not None:
        r_ours, r_jpeg = real[LAYOUTS[1].name], real[LAYOUTS[9].name]
        real_part = (f" On the real slide's {n_real} tiles zstd-1 keeps {r_ours.bytes_per_tile / 1024:.0f} KB a tile "
                     f"({r_ours.bytes_per_tile / real[BASELINE].bytes_per_tile:.2f}× LZF) and JPEG-90 "
                     f"{r_jpeg.bytes_per_tile / 1024:.0f} KB at {r_jpeg.psnr:.1f} dB.")
    return (
        f"Against h5py+LZF, pathgen's store writes {ours.write / base.write:.1f}×, reads single tiles "
        f"{ours.single / base.single:.1f}× and batches of {BATCH} {ours.batch / base.batch:.1f}× as fast, at "
        f"{ours.bytes_per_tile / base.bytes_per_tile:.2f}× the bytes, in {ours.files} files. Reading the same files "
        f"through zarr-python is {ours.single / via_zarr.single:.1f}× slower for single tiles and "
        f"{ours.batch / via_zarr.batch:.1f}× slower for batches (best way: {via_zarr.batch_way}), and writing "
        f"through it {ours.write / via_zarr.write:.1f}× slower: that is why the direct shard reader and writer "
        f"exist. One file per tile needs {many.files} files ({many.files / ours.files:.0f}× as many) and reads single "
        f"tiles {ours.single / many.single:.1f}× slower. gzip-1 saves {100 * (1 - gzip.bytes_per_tile / base.bytes_per_tile):.0f}% "
        f"over LZF but writes at {gzip.write / base.write:.2f}×; zstd-3 saves "
        f"{100 * (1 - zstd3.bytes_per_tile / ours.bytes_per_tile):.0f}% over zstd-1 at {zstd3.write / ours.write:.2f}× "
        f"its write rate. 64, 256 and 1024 tiles per shard differ by at most {100 * (span('single') - 1):.0f}% in "
        f"single reads and {100 * (span('write') - 1):.0f}% in writes, so 256 is chosen for the number of files "
        f"({shards[0].files}, {shards[1].files}, {shards[2].files}) and the size of a unit of parallel work. "
        f"JPEG-90 is {ours.bytes_per_tile / jpeg90.bytes_per_tile:.1f}× smaller than zstd-1 at {jpeg90.psnr:.1f} dB "
        f"PSNR, reads at {jpeg90.single / ours.single:.2f}× its rate, and stays an option, not the default, "
        f"because it is lossy.{real_part}"
    )


def run_set(title: str, tiles: np.ndarray, workdir: Path, n_reads: int, cap_s: float) -> dict[str, Result]:
    """Measure every layout on one tile set and print its table."""
    results = {}
    for k, layout in enumerate(LAYOUTS):
        t0 = time.perf_counter()
        results[layout.name] = measure(layout, workdir / f"{title[:4]}_{k}", tiles, n_reads, cap_s)
        print(f"  {title}: {layout.name.strip():<30} {time.perf_counter() - t0:5.1f} s", flush=True)
    print_table(f"{title}: {len(tiles)} tiles of {TILE_PX}×{TILE_PX}×3", results)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=8192, help="synthetic tiles (default 8192)")
    parser.add_argument("--reads", type=int, default=3000, help="random reads per run (default 3000)")
    parser.add_argument("--cap", type=float, default=2.5, help="seconds a read run may last (default 2.5)")
    parser.add_argument("--real-slide", type=Path, default=REAL_SLIDE)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pathgen_perf"), help="slide cache")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    started, load = time.perf_counter(), os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} at start; each figure is the better of two runs, "
          "but other jobs on a shared machine can still lower any of them", flush=True)
    synthetic = synthetic_tiles(args.workdir, args.tiles)
    real = tissue_tiles(args.real_slide, TILE_PX, None) if args.real_slide.is_file() else None
    n_real = 0 if real is None else len(real)
    print(f"tiles cut: {len(synthetic)} synthetic, {n_real} real ({time.perf_counter() - started:.0f} s)", flush=True)
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="pathgen_store_layout_") as tmp:
        results = run_set("synthetic", synthetic, Path(tmp), args.reads, args.cap)
        real_results = None
        if real is not None:
            real_results = run_set("real (CMU-1-Small-Region)", real, Path(tmp), args.reads // 3, args.cap / 3)
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end; total {time.perf_counter() - started:.0f} s")
    print("\n" + conclusion(results, real_results, n_real))


if __name__ == "__main__":
    main()
