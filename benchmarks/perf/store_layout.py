"""Why the tile store looks the way it does: on-disk layouts of the same tiles, measured in one run.

Two tile sets, 224×224×3 uint8 at 0.5 µm/px, cut where pathgen's tissue detector finds tissue:
  * synthetic  8,192 tiles of a generated 20,000 × 15,000 px H&E-like slide (tiling.synthetic);
               the grid stride is 112 px because the slide holds fewer disjoint tissue tiles
  * real       every tissue tile of CMU-1-Small-Region.svs (49 with pathgen's defaults: that is all
               the slide has). Only writes, bytes per tile and PSNR are measured on them: so few
               tiles sit in the libraries' caches, which makes random-read rates meaningless.
               They show how real tissue compresses, which the synthetic texture only imitates;
               writing 49 tiles takes tens of milliseconds, so treat those write rates as rough.
For each layout: write tiles/s, random single-tile reads/s (handle kept open), random batch-of-64
reads/s, bytes per tile and number of files of the tiles array, and PSNR against the source tiles
for lossy codecs. Every figure is also printed as a ratio to h5py with one LZF tile per chunk (the
layout the SSL issue compares against), measured in the same run.

Layouts: pathgen's store (tiling.store: zstd-1, 256 tiles per shard) read by its direct shard
reader; the same layout written and read through zarr-python; zarr with one file per tile; h5py
LZF and gzip-1; pathgen's JPEG codec at quality 80/90/95; 64 and 1024 tiles per shard; zstd-3.

Each figure is the better of two runs, because the machine may be shared (writes: the two halves
of the store, timed apart; reads: two rounds over all layouts), and rates are printed per
wall-clock second and per CPU-second of this process; the second is what other jobs cannot lower,
and the conclusion uses it. Reads come from the OS page cache (the files were just written), so
they measure the software's cost per tile, not the disk's. A read run stops at a time cap (marked
*); h5py and zarr batches are read both by fancy indexing and by a loop, and the faster counts.

    python benchmarks/perf/store_layout.py                 # ≈ 4 min on 2 idle cores, more if shared
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
    grid = GridSpec(slide.dimensions, slide.level0_mpp, MPP, TILE_PX, TILE_PX - stride_px)
    xy = level0_coords(grid, grid_indices(grid))  # as pathgen lays it; tiles are read unresampled
    xy = xy[tissue_fractions(mask, thumb_mpp, slide.level0_mpp, xy, grid.tile_size_level0) >= 0.25]
    if limit is not None and len(xy) > limit:
        xy = xy[np.linspace(0, len(xy) - 1, limit).round().astype(int)]
    tiles = np.empty((len(xy), TILE_PX, TILE_PX, 3), np.uint8)
    for y in np.unique(xy[:, 1]):  # one read per grid row, spanning its kept tiles
        rows = np.flatnonzero(xy[:, 1] == y)
        x0 = int(xy[rows, 0].min())
        strip = slide.read_rgb((x0, int(y)), 0, (int(xy[rows, 0].max()) - x0 + TILE_PX, TILE_PX))
        for row in rows:
            tiles[row] = strip[:, xy[row, 0] - x0 : xy[row, 0] - x0 + TILE_PX]
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


LAYOUTS = {  # key: layout; the first is the baseline of every ratio
    "h5-lzf": Layout("h5py lzf, 1 tile/chunk", "h5", "lzf", 0),
    "pathgen": Layout("pathgen zstd-1, 256/shard", "pathgen"),
    "via-zarr": Layout("  same files via zarr-python", "pathgen-zarr"),
    "zarr-files": Layout("zarr zstd-1, 1 file/tile", "zarr"),
    "h5-gzip": Layout("h5py gzip-1, 1 tile/chunk", "h5", "gzip", 1),
    "shard64": Layout("pathgen zstd-1, 64/shard", "pathgen", tiles_per_shard=64),
    "shard1024": Layout("pathgen zstd-1, 1024/shard", "pathgen", tiles_per_shard=1024),
    "zstd3": Layout("pathgen zstd-3, 256/shard", "pathgen", level=3),
    "jpeg80": Layout("pathgen jpeg q80", "pathgen", "jpeg", 80),
    "jpeg90": Layout("pathgen jpeg q90", "pathgen", "jpeg", 90),
    "jpeg95": Layout("pathgen jpeg q95", "pathgen", "jpeg", 95),
}
BASELINE = "h5-lzf"


class Writer:
    """Create a layout's files for n tiles, write BLOCK-aligned runs of tiles, finish."""

    def __init__(self, layout: Layout, path: Path, n_tiles: int):
        self.layout, self.path, shape = layout, path, (n_tiles, TILE_PX, TILE_PX, 3)
        if layout.kind.startswith("pathgen"):
            self.store_layout = StoreLayout(n_tiles, TILE_PX, layout.tiles_per_shard)
            cfg = StoreConfig(
                codec=layout.codec,
                zstd_level=layout.level,
                jpeg_quality=layout.level,
                tiles_per_shard=layout.tiles_per_shard,
            )
            create_store(
                path,
                self.store_layout,
                np.zeros((n_tiles, 2)),
                np.ones(n_tiles),
                np.zeros((8, 8, 3), np.uint8),
                np.ones((8, 8), np.uint8),
                {},
                cfg,
            )
            self.array = zarr.open_array(path / "tiles", mode="r+") if layout.kind == "pathgen-zarr" else None
        elif layout.kind == "zarr":
            self.array = zarr.create_array(
                path, shape=shape, dtype="uint8", chunks=(1, *shape[1:]), compressors=ZstdCodec(level=layout.level)
            )
        else:
            self.file = h5py.File(path, "w")
            options = {"compression_opts": layout.level} if layout.codec == "gzip" else {}
            self.array = self.file.create_dataset(
                "tiles", shape=shape, dtype="uint8", chunks=(1, *shape[1:]), compression=layout.codec, **options
            )

    def write(self, start: int, tiles: np.ndarray) -> None:
        if self.layout.kind == "pathgen":
            per_shard = self.layout.tiles_per_shard
            for shard in range(start // per_shard, -(-(start + len(tiles)) // per_shard)):
                rows = self.store_layout.shard_slice(shard)
                write_shard(self.path, self.store_layout, shard, tiles[rows.start - start : rows.stop - start])
        else:
            self.array[start : start + len(tiles)] = tiles

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
        self.batch_ways = {"fancy": fancy, "loop": lambda idx: np.stack([array[int(i)] for i in idx])}

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


# ---------------------------------------------------------------------------------- measurement


@dataclass
class Rate:
    """A measurement's better run, in tiles per wall-clock second and per CPU-second of this process
    (user + system, all threads): the second is what other jobs on a shared machine cannot lower."""

    wall: float = 0.0
    cpu: float = 0.0
    capped: bool = False  # a run stopped at the time cap before its last item

    def keep_better(self, tiles: int, wall_s: float, cpu_s: float, capped: bool) -> None:
        self.wall, self.cpu = max(self.wall, tiles / wall_s), max(self.cpu, tiles / max(cpu_s, 1e-9))
        self.capped |= capped


@dataclass
class Result:
    """The measured figures of one layout on one tile set (reads None when not measured)."""

    write: Rate
    single: Rate | None = None
    batch: Rate | None = None
    batch_way: str = ""  # the fastest way; all ways measured are in batch_ways
    batch_ways: dict[str, Rate] = field(default_factory=dict)
    bytes_per_tile: float = 0.0
    files: int = 0
    psnr: float | None = None


def run_timed(fn, items: list, tiles_per_item: int, cap_s: float) -> tuple[int, float, float, bool]:
    """Call fn on items until done or past cap_s: (tiles, wall s, process CPU s, stopped early)."""
    wall0, cpu0, done = time.perf_counter(), time.process_time(), 0
    for item in items:
        fn(item)
        done += 1
        if time.perf_counter() - wall0 > cap_s:
            break
    return done * tiles_per_item, time.perf_counter() - wall0, time.process_time() - cpu0, done < len(items)


def write_all(workdir: Path, tiles: np.ndarray) -> dict[str, Rate]:
    """Write every layout's store, timing two runs each: the store's two halves (creation counts in
    the first, finishing in the second), or, for a set too small to halve, two whole stores. Each
    run goes over every layout in turn, so a busy spell on a shared machine hits them all alike."""
    n, half = len(tiles), (len(tiles) // (2 * BLOCK)) * BLOCK
    rates, writers = {key: Rate() for key in LAYOUTS}, {}
    for lo, hi in [(0, half), (half, n)] if half else [(0, n), (0, n)]:
        for key, layout in LAYOUTS.items():
            wall0, cpu0 = time.perf_counter(), time.process_time()
            if lo == 0:
                writers[key] = Writer(layout, fresh(workdir / key), n)
            for block in range(lo, hi, BLOCK):
                writers[key].write(block, tiles[block : min(hi, block + BLOCK)])
            if hi == n:
                writers[key].finish()
            rates[key].keep_better(hi - lo, time.perf_counter() - wall0, time.process_time() - cpu0, False)
    return rates


def fresh(path: Path) -> Path:
    """`path` with nothing there."""
    if path.is_file():
        path.unlink()
    shutil.rmtree(path, ignore_errors=True)
    return path


def read_all(readers: dict[str, Reader], results: dict[str, Result], n_tiles: int, n_reads: int, cap_s: float) -> None:
    """Random single-tile and batch reads, the same indices for every layout; two rounds over all
    layouts, the better kept; for a batch, the fastest way the layout offers."""
    rng = np.random.default_rng(0)
    singles = rng.integers(0, n_tiles, n_reads).tolist()
    batches = [rng.choice(n_tiles, min(BATCH, n_tiles), replace=False) for _ in range(-(-n_reads // BATCH))]
    single = {key: Rate() for key in readers}
    batch = {key: {way: Rate() for way in reader.batch_ways} for key, reader in readers.items()}
    for _ in range(2):
        for key, reader in readers.items():
            single[key].keep_better(*run_timed(reader.one, singles, 1, cap_s))
            for way, read_batch in reader.batch_ways.items():
                cap = cap_s / 3 if way == "fancy" else cap_s  # known to be slow: a few batches show it
                batch[key][way].keep_better(*run_timed(read_batch, batches, len(batches[0]), cap))
    for key, result in results.items():
        result.single = single[key]
        result.batch_ways = batch[key]
        result.batch_way, result.batch = max(batch[key].items(), key=lambda item: item[1].cpu)


def check_and_size(layout: Layout, path: Path, reader: Reader, tiles: np.ndarray, result: Result) -> None:
    """Files and bytes of the tiles; lossless: some tiles read back equal; lossy: PSNR of all."""
    data = layout.data_path(path)
    files = [data] if data.is_file() else [p for p in data.rglob("*") if p.is_file()]
    result.files, result.bytes_per_tile = len(files), sum(p.stat().st_size for p in files) / len(tiles)
    if layout.lossy:
        squared_error = 0
        for start in range(0, len(tiles), BATCH):
            rows = np.arange(start, min(len(tiles), start + BATCH))
            error = reader.batch_ways["direct"](rows).astype(np.int32) - tiles[rows]
            squared_error += int((error * error).sum(dtype=np.int64))
        result.psnr = float(10 * np.log10(255.0**2 / (squared_error / tiles.size)))
        return
    check = np.arange(0, len(tiles), max(1, len(tiles) // BATCH))
    if not np.array_equal(np.stack([reader.one(i) for i in check]), tiles[check]):
        raise AssertionError(f"{layout.name}: tiles read back differ from those written")


def run_set(title: str, tiles: np.ndarray, workdir: Path, n_reads: int, cap_s: float) -> dict[str, Result]:
    """Measure every layout on one tile set (reads only if n_reads > 0) and print its table."""
    t0 = time.perf_counter()
    workdir.mkdir(parents=True)
    results = {key: Result(rate) for key, rate in write_all(workdir, tiles).items()}
    readers = {key: Reader(layout, workdir / key) for key, layout in LAYOUTS.items()}
    if n_reads:
        read_all(readers, results, len(tiles), n_reads, cap_s)
    for key, layout in LAYOUTS.items():
        check_and_size(layout, workdir / key, readers[key], tiles, results[key])
        readers[key].close()
    print_table(
        f"{title}: {len(tiles)} tiles of {TILE_PX}×{TILE_PX}×3, measured in {time.perf_counter() - t0:.0f} s", results
    )
    return results


# -------------------------------------------------------------------------------------- report


def print_table(title: str, results: dict[str, Result]) -> None:
    """Rates per wall-clock second with sizes, then rates per CPU-second; each with its ratio."""
    base = results[BASELINE]
    header = f"{'layout':<29}{'write/s':>8}{'×':>6}{'1-tile/s':>9}{'×':>6}{'batch/s':>8}{'×':>6}"
    print(f"\n{title}\n(× = ratio to {LAYOUTS[BASELINE].name}; * = a read run stopped at the time cap)")
    print(f"{header}  {'batch via':<10}{'KB/tile':>8}{'×':>6}{'files':>6}{'PSNR dB':>8}")
    for key, r in results.items():
        psnr = "—" if r.psnr is None else f"{r.psnr:.1f}"
        print(
            f"{LAYOUTS[key].name:<29}{rates(r, base, 'wall')}  {r.batch_way:<10}{r.bytes_per_tile / 1024:>8.1f}"
            f"{r.bytes_per_tile / base.bytes_per_tile:>6.2f}{r.files:>6}{psnr:>8}"
        )
    print(f"the same rates per CPU-second of this process (what other jobs on the machine cannot lower):\n{header}")
    for key, r in results.items():
        print(f"{LAYOUTS[key].name:<29}{rates(r, base, 'cpu')}")


def rates(r: Result, base: Result, clock: str) -> str:
    """Write, single and batch rates of one layout on one clock, each followed by its ratio."""
    cells = []
    for what, width in (("write", 8), ("single", 9), ("batch", 8)):
        rate, ref = getattr(r, what), getattr(base, what)
        if rate is None:
            cells.append(f"{'—':>{width}}{'':>6}")
        else:
            value = getattr(rate, clock)
            cells.append(f"{f'{value:.0f}' + '*' * rate.capped:>{width}}{value / getattr(ref, clock):>6.2f}")
    return "".join(cells)


def times(ratio: float, more: str = "faster", less: str = "slower") -> str:
    """ "2.3× faster" for a ratio of 2.3, "2.3× slower" for one of 1/2.3."""
    return f"{ratio:.1f}× {more}" if ratio >= 1 else f"{1 / ratio:.1f}× {less}"


def conclusion(res: dict[str, Result], real: dict[str, Result] | None, n_real: int) -> str:
    """One paragraph, every number and every direction taken from the results (rates per CPU-second)."""
    base, ours, zarr_io, many = res[BASELINE], res["pathgen"], res["via-zarr"], res["zarr-files"]
    gzip, zstd3, jpeg = res["h5-gzip"], res["zstd3"], res["jpeg90"]
    sizes = {64: res["shard64"], 256: ours, 1024: res["shard1024"]}
    vs = lambda a, b, what: times(getattr(a, what).cpu / getattr(b, what).cpu)
    gap = lambda what: 100 * (1 - getattr(ours, what).cpu / max(getattr(r, what).cpu for r in sizes.values()))
    place = lambda what: "the fastest" if gap(what) < 0.5 else f"{gap(what):.0f}% below the fastest"
    listed = lambda what: "/".join(f"{getattr(r, what).cpu:.0f}" for r in sizes.values())
    smaller = lambda a, b: 100 * (1 - a.bytes_per_tile / b.bytes_per_tile)
    text = [
        f"Per CPU-second and against h5py+LZF (one chunk per tile), pathgen's store writes "
        f"{vs(ours, base, 'write')}, reads random single tiles {vs(ours, base, 'single')} and random batches "
        f"of {BATCH} {vs(ours, base, 'batch')}, at {ours.bytes_per_tile / base.bytes_per_tile:.2f}× the bytes, "
        f"in {ours.files} files.",
        f"Through zarr-python the same files read single tiles {vs(zarr_io, ours, 'single')}, batches "
        f"{vs(zarr_io, ours, 'batch')} (best of a loop, {zarr_io.batch_ways['loop'].cpu:.0f} tiles/s, and fancy "
        f"indexing, {zarr_io.batch_ways['fancy'].cpu:.0f} tiles/s) and write {vs(zarr_io, ours, 'write')} than through "
        f"pathgen's direct shard reader and writer.",
        f"One file per tile makes {many.files} files ({many.files / ours.files:.0f}× as many) and reads single "
        f"tiles {vs(many, ours, 'single')}.",
        f"gzip-1 is {smaller(gzip, base):.0f}% smaller than LZF and writes {vs(gzip, base, 'write')}; zstd-3 is "
        f"{smaller(zstd3, ours):.0f}% smaller than zstd-1 and writes {vs(zstd3, ours, 'write')}.",
        f"With 64/256/1024 tiles per shard, single reads run at {listed('single')} and writes at {listed('write')} "
        f"tiles/s for {'/'.join(str(r.files) for r in sizes.values())} files: 256 is {place('single')} in single "
        f"reads and {place('write')} in writes.",
        f"JPEG-90 is {ours.bytes_per_tile / jpeg.bytes_per_tile:.1f}× smaller than zstd-1 at {jpeg.psnr:.1f} dB PSNR, "
        f"writes {vs(jpeg, ours, 'write')} and reads single tiles {vs(jpeg, ours, 'single')}.",
    ]
    if real is not None:
        text.append(
            f"On the {n_real} real tissue tiles zstd-1 takes {real['pathgen'].bytes_per_tile / 1024:.0f} KB "
            f"a tile ({real['pathgen'].bytes_per_tile / real[BASELINE].bytes_per_tile:.2f}× LZF) and JPEG-90 "
            f"{real['jpeg90'].bytes_per_tile / 1024:.0f} KB at {real['jpeg90'].psnr:.1f} dB."
        )
    return " ".join(text)


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
    print(
        f"{os.cpu_count()} CPUs, load average {load:.1f} at start; each figure is the better of two runs, "
        "but other jobs on a shared machine can still lower any of them",
        flush=True,
    )
    synthetic = synthetic_tiles(args.workdir, args.tiles)
    real = tissue_tiles(args.real_slide, TILE_PX, None) if args.real_slide.is_file() else None
    n_real = 0 if real is None else len(real)
    print(f"tiles cut: {len(synthetic)} synthetic, {n_real} real ({time.perf_counter() - started:.0f} s)", flush=True)
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="pathgen_store_layout_") as tmp:
        results = run_set("synthetic", synthetic, Path(tmp) / "synthetic", args.reads, args.cap)
        real_results = None
        if real is not None:
            real_results = run_set(
                f"real ({args.real_slide.name}), writes and sizes only", real, Path(tmp) / "real", 0, args.cap
            )
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end; total {time.perf_counter() - started:.0f} s")
    print("\n" + conclusion(results, real_results, n_real))


if __name__ == "__main__":
    main()
