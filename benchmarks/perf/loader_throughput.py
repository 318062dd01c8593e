"""Random-access tiles/s of the SSL training loader against an h5 file and a PNG folder, in one run.

The same tiles are read in the same shuffled order (pathgen's `ResumableSampler`), through a torch
DataLoader with the same workers, batch size and augmentations, from
  * pathgen   `TileDataset` over a `pathgen tile` output folder (zarr v3 shards, zstd)
  * h5        one h5 file, lzf, one tile per chunk (the baseline; each worker opens its own handle)
  * png       a folder with one PNG file per tile
each with no augmentation (I/O + decode + collate only) and with the SSL config's augmentations
(default: the DINO multi-crop of configs/ssl/dino_vits16.yaml, 2 × 224 + 8 × 96). The data are
synthesized and tiled once under --workdir and reused: ~5,000 tiles of 224 px at 0.5 µm/px
(about 2–3 minutes the first time).

    python benchmarks/perf/loader_throughput.py
    python benchmarks/perf/loader_throughput.py --workers 0 2 4 --profile on
    python benchmarks/perf/loader_throughput.py augment.n_local=2     # SSL config overrides

Numbers are tiles per second with a warm page cache (every file fits in memory), best of
--repeats windows; all sources are measured in the same run, interleaved, so the ratios hold even
on a busy machine while the absolute numbers do not.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing import Pool
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from pathgen.config import load_config
from pathgen.data.recipes import build_transform
from pathgen.data.tiles import ResumableSampler, TileDataset
from pathgen.data.views import AugmentedViews, TileKey
from pathgen.stages.train_ssl import SSLConfig
from tiling.store import is_complete, list_store_paths

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pathgen", "h5", "png")
WARMUP_EPOCH = 10_000  # sampler epoch of the warm-up pass, never one of the measured windows
DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice, before --main-threads changes it
Transform = Callable[..., object] | None  # TileDataset's transform(tile, key, generator)


class _SameItems(Dataset):
    """Items exactly as TileDataset makes them (its `__getitem__`, seeding and epochs); subclasses
    only say where tile `index` (TileDataset's global index) comes from."""

    __getitem__ = TileDataset.__getitem__
    generator = TileDataset.generator
    set_epoch = TileDataset.set_epoch

    def __init__(self, name: str, n_tiles: int, transform: Transform = None, seed: int = 0):
        self.name, self.n_tiles, self.transform = name, n_tiles, transform
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return self.n_tiles

    def key(self, index: int) -> TileKey:
        return TileKey(self.name, int(index))


class H5Tiles(_SameItems):
    """Tiles from `/tiles` of an h5 file, opened lazily so each DataLoader worker has its own handle."""

    def __init__(self, path: Path, transform: Transform = None, seed: int = 0):
        with h5py.File(path, "r") as handle:
            n_tiles = len(handle["tiles"])
        super().__init__(str(path), n_tiles, transform, seed)
        self.path, self._tiles = path, None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tiles": None}

    def tile(self, index: int) -> np.ndarray:
        if self._tiles is None:
            self._tiles = h5py.File(self.path, "r")["tiles"]
        return self._tiles[int(index)]


class PngTiles(_SameItems):
    """Tiles from `<folder>/<index>.png`, one file per tile."""

    def __init__(self, folder: Path, n_tiles: int, transform: Transform = None, seed: int = 0):
        super().__init__(str(folder), n_tiles, transform, seed)
        self.folder = folder

    def tile(self, index: int) -> np.ndarray:
        with Image.open(png_path(self.folder, index)) as image:
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def png_path(folder: Path, index: int) -> Path:
    """The PNG file of tile `index`."""
    return folder / f"{int(index):06d}.png"


# ---------------------------------------------------------------------------------------- data
def run_cli(*args: str) -> None:
    """`pathgen ARGS`, failing loudly with its stderr."""
    done = subprocess.run([sys.executable, "-m", "pathgen.cli", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pathgen {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")


def build_tiles(root: Path, n_slides: int, width: int, height: int, tile_px: int, mpp: float) -> Path:
    """Synthetic slides (level 0 at `mpp`, so tiles are straight reads) tiled by `pathgen tile`; cached."""
    slides, tiles = root / "slides", root / "tiles"
    if not (slides / ".done").exists():
        print(f"synthesizing {n_slides} slides of {width} × {height} px …", flush=True)
        run_cli(
            "synth",
            str(slides),
            "--n",
            str(n_slides),
            "--width",
            str(width),
            "--height",
            str(height),
            "--mpp",
            str(mpp),
            "--tissue-regions",
            "4",
            "--seed",
            "5",
        )
        (slides / ".done").touch()
    stores = list_store_paths(tiles) if (tiles / "tiles.zarr").is_dir() else []
    if len(stores) < n_slides or not all(map(is_complete, stores)):
        print("tiling them with `pathgen tile` …", flush=True)
        run_cli(
            "tile",
            str(slides),
            "--out",
            str(tiles),
            "--mpp",
            str(mpp),
            "--tile-size",
            str(tile_px),
            "--workers",
            "2",
            "--no-progress",
        )
    return tiles


def export_h5(dataset: TileDataset, path: Path) -> None:
    """Every tile, in TileDataset order, into one h5 dataset (lzf, one tile per chunk); cached."""
    if path.exists():
        return
    print(f"exporting {len(dataset)} tiles to {path.name} …", flush=True)
    tmp, tile_shape = path.with_suffix(".tmp"), dataset.tile(0).shape
    with h5py.File(tmp, "w") as handle:
        out = handle.create_dataset(
            "tiles", (len(dataset), *tile_shape), np.uint8, chunks=(1, *tile_shape), compression="lzf"
        )
        for start in range(0, len(dataset), 256):
            rows = range(start, min(len(dataset), start + 256))
            out[rows.start : rows.stop] = np.stack([dataset.tile(i) for i in rows])
    os.replace(tmp, path)


def _write_pngs(args: tuple[TileDataset, Path, list[int], int]) -> None:
    dataset, folder, indices, level = args
    for index in indices:
        Image.fromarray(dataset.tile(index)).save(png_path(folder, index), compress_level=level)


def export_png(dataset: TileDataset, folder: Path, level: int) -> None:
    """Every tile as `<index>.png` (2 processes); cached. Decoding, what is measured, costs about
    the same at every zlib level; a low one only makes this one-off export faster."""
    if (folder / ".done").exists():
        return
    print(f"exporting {len(dataset)} tiles to PNG (zlib level {level}) …", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    parts = [(dataset, folder, list(range(k, len(dataset), 16)), level) for k in range(16)]
    with Pool(2) as pool:
        pool.map(_write_pngs, parts)
    (folder / ".done").touch()


def check_same_tiles(datasets: dict[str, Dataset], n_checks: int = 16) -> None:
    """The three sources hold identical pixels at the same index (checked at random indices)."""
    n_tiles = len(datasets["pathgen"])
    for index in np.random.default_rng(0).choice(n_tiles, min(n_checks, n_tiles), replace=False):
        ref = datasets["pathgen"].tile(int(index))
        for name, dataset in datasets.items():
            if not np.array_equal(dataset.tile(int(index)), ref):
                raise RuntimeError(f"{name} tile {index} differs from pathgen's; delete the cache and re-run")


def warm_page_cache(paths: list[Path]) -> None:
    """Read every file once so all sources start from a warm page cache."""
    for path in paths:
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            with file.open("rb") as handle:
                while handle.read(1 << 23):
                    pass


# --------------------------------------------------------------------------------- measurement
def make_datasets(tiles: Path, h5_path: Path, png_dir: Path, transform: Transform = None) -> dict[str, Dataset]:
    """The three sources of the same tiles, each with `transform`."""
    pathgen = TileDataset([tiles], transform)
    return {"pathgen": pathgen, "h5": H5Tiles(h5_path, transform), "png": PngTiles(png_dir, len(pathgen), transform)}


def items_in(batch: torch.Tensor | list[torch.Tensor]) -> int:
    """Tiles in a batch: a uint8 tensor (no augmentation) or a list of view tensors."""
    return len(batch) if isinstance(batch, torch.Tensor) else len(batch[0])


def tiles_per_s(loader: DataLoader, sampler: ResumableSampler, epoch: int, count: int) -> float:
    """Tiles/s over `count` tiles of epoch `epoch`'s shuffled order (a random window of the data)."""
    sampler.set_epoch(epoch, start=sampler.n_items - count)
    started, seen = time.perf_counter(), 0
    for batch in loader:
        seen += items_in(batch)
    return seen / (time.perf_counter() - started)


def make_loader(dataset: Dataset, workers: int, batch_size: int) -> tuple[DataLoader, ResumableSampler]:
    """A DataLoader as the Trainer builds it, but with persistent workers so that their start-up and
    their lazy file opening happen once, in the warm-up pass, outside the timed windows."""
    sampler = ResumableSampler(len(dataset), seed=0)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, persistent_workers=workers > 0
    )
    return loader, sampler


def measure_group(
    datasets: dict[str, Dataset], workers: int, args: argparse.Namespace, count: int, cache_paths: list[Path]
) -> dict[str, float]:
    """Best tiles/s of each source over `args.repeats` windows, sources interleaved per window."""
    warm_page_cache(cache_paths)
    loaders = {name: make_loader(dataset, workers, args.batch_size) for name, dataset in datasets.items()}
    for loader, sampler in loaders.values():
        tiles_per_s(loader, sampler, WARMUP_EPOCH, args.batch_size * max(1, workers) * 2)
    best = dict.fromkeys(datasets, 0.0)
    for epoch in range(args.repeats):
        for name, (loader, sampler) in loaders.items():
            best[name] = max(best[name], tiles_per_s(loader, sampler, epoch, count))
    return best


def window_orders(n_tiles: int, count: int) -> Iterator[int]:
    """The indices of the first measured window (what the profile reads)."""
    sampler = ResumableSampler(n_tiles, seed=0)
    sampler.set_epoch(0, start=n_tiles - count)
    return iter(sampler)


def profile_io(datasets: dict[str, Dataset], count: int, top: int) -> None:
    """cProfile of reading one window item by item in this process, pathgen then h5 (no augmentation)."""
    for name in ("pathgen", "h5"):
        dataset = datasets[name]
        dataset[0]  # open handles outside the profile
        profiler = cProfile.Profile()
        profiler.enable()
        for index in window_orders(len(dataset), count):
            dataset[index]
        profiler.disable()
        print(f"\n── cProfile: {count} random tiles from {name}, one process, sorted by own time ──")
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(top)


def thread_check(dataset: Dataset, n_tiles: int, main_threads: int) -> None:
    """Augmentation tiles/s in this process with torch's default thread count against one thread."""
    for threads in sorted({DEFAULT_THREADS, 1}, reverse=True):
        torch.set_num_threads(threads)
        started = time.perf_counter()
        for index in range(n_tiles):
            dataset[index]
        print(
            f"  main-process augmentation with torch.set_num_threads({threads}): "
            f"{n_tiles / (time.perf_counter() - started):.1f} tiles/s"
        )
    torch.set_num_threads(main_threads)


# --------------------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the SSL config (augment.n_local=2 …)")
    parser.add_argument(
        "--config",
        type=Path,
        default=REPO / "configs/ssl/dino_vits16.yaml",
        help="SSL config whose `augment` section is used",
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pathgen_bench_loader"), help="data cache")
    parser.add_argument("--slides", type=int, default=3, help="synthetic slides (~1,700 tiles each)")
    parser.add_argument("--slide-size", type=int, nargs=2, default=(16384, 12288), metavar=("W", "H"))
    parser.add_argument("--mpp", type=float, default=0.5, help="µm/px of slides and tiles")
    parser.add_argument("--tile-px", type=int, default=224)
    parser.add_argument("--png-level", type=int, default=1, help="zlib level of the PNG export")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader num_workers")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--io-tiles", type=int, default=1024, help="tiles per timed window, no augmentation")
    parser.add_argument("--aug-tiles", type=int, default=128, help="tiles per timed window, augmented")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per cell; the best is kept")
    parser.add_argument(
        "--main-threads", type=int, default=1, help="torch threads of this process (workers=0 runs the transform here)"
    )
    parser.add_argument(
        "--profile",
        choices=("auto", "on", "off"),
        default="auto",
        help="cProfile pathgen and h5 reads (auto: only when pathgen is slower without augmentation)",
    )
    parser.add_argument(
        "--skip-thread-check",
        action="store_true",
        help="skip timing main-process augmentation with torch's default threads",
    )
    return parser.parse_args()


def print_table(rows: list[tuple[str, int, dict[str, float]]]) -> None:
    print(
        f"\n{'augmentation':<14}{'workers':>8}"
        + "".join(f"{s + ' tiles/s':>16}" for s in SOURCES)
        + f"{'pathgen/h5':>12}{'png/h5':>9}"
    )
    for label, workers, best in rows:
        print(
            f"{label:<14}{workers:>8}"
            + "".join(f"{best[s]:>16.1f}" for s in SOURCES)
            + f"{best['pathgen'] / best['h5']:>12.2f}{best['png'] / best['h5']:>9.2f}"
        )


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.main_threads)
    cfg = load_config(SSLConfig, args.config, args.overrides)
    width, height = args.slide_size
    root = args.workdir / f"{args.slides}x{width}x{height}_mpp{args.mpp}_{args.tile_px}px"
    tiles = build_tiles(root, args.slides, width, height, args.tile_px, args.mpp)
    h5_path, png_dir = root / "tiles.h5", root / "png"
    export_h5(TileDataset([tiles]), h5_path)
    export_png(TileDataset([tiles]), png_dir, args.png_level)
    plain = make_datasets(tiles, h5_path, png_dir)
    check_same_tiles(plain)
    views = AugmentedViews(build_transform(cfg.augment))
    augmented = make_datasets(tiles, h5_path, png_dir, views.views)
    n_views = f"{cfg.augment.n_global}×{cfg.augment.global_size}+{cfg.augment.n_local or 0}×{cfg.augment.local_size}"
    print(
        f"{len(plain['pathgen'])} tiles of {args.tile_px} px from {root}; batch {args.batch_size}; "
        f"augmentation '{cfg.augment.recipe}' {n_views} from {args.config.name}; best of {args.repeats} windows "
        f"of {args.io_tiles} (plain) / {args.aug_tiles} (augmented) shuffled tiles; warm page cache; "
        f"{os.cpu_count()} CPUs, possibly shared with other jobs: compare ratios, not absolute numbers.",
        flush=True,
    )
    cache_paths = [tiles, h5_path, png_dir]
    rows = []
    for label, datasets, count in (("none", plain, args.io_tiles), (cfg.augment.recipe, augmented, args.aug_tiles)):
        for workers in args.workers:
            rows.append((label, workers, measure_group(datasets, workers, args, count, cache_paths)))
            print(f"  measured {label} / {workers} workers", flush=True)
    print_table(rows)
    slower = any(best["pathgen"] < best["h5"] for label, _, best in rows if label == "none")
    if args.profile == "on" or (args.profile == "auto" and slower):
        profile_io(plain, args.io_tiles, top=14)
    if not args.skip_thread_check:
        print("\nthread check (same tiles, this process, one pass each):")
        thread_check(augmented["pathgen"], 12, args.main_threads)


if __name__ == "__main__":
    main()
