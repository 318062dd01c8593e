"""Tiles/s of `pathgen tile` against a naive loop and the raw decode bound, in one run.

On one large synthetic slide (tens of thousands of tissue tiles by default):
  * pathgen      `pathgen tile` end to end (planning, tissue detection, QC, stores, manifest)
  * naive        thumbnail Otsu + one read_region per tile + one zarr chunk write per tile
  * decode bound only read_region of the tiles pathgen kept (nothing else)
each with 1 and 2 worker processes; peak memory per process; and bytes on disk per tile for
the lossless and JPEG stores beside the slide's own compressed bytes for the same area.

    python benchmarks/perf/tile_throughput.py                 # 40,000 × 30,000 px at 0.5 µm/px
    python benchmarks/perf/tile_throughput.py --width 12000 --height 9000   # a quick look
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import openslide
import tifffile
import zarr
from skimage.color import rgb2hsv
from skimage.filters import threshold_otsu

from tiling.manifest import read_manifest
from tiling.store import open_store
from tiling.synthetic import SyntheticSlideSpec, write_synthetic_slide

TILE_PX = 224


def make_slide(workdir: Path, width: int, height: int, mpp: float) -> Path:
    """The benchmark slide, generated once per size and reused."""
    path = workdir / f"bench_{width}x{height}_{mpp}.tif"
    if not path.exists():
        print(f"generating {path.name} …", flush=True)
        write_synthetic_slide(path, SyntheticSlideSpec(width, height, mpp=mpp, seed=11, tissue_regions=8))
    return path


def run_measured(cmd: list[str]) -> tuple[float, float]:
    """Run a command; (wall seconds, peak RSS in MB of the largest process it started)."""
    script = ("import resource, subprocess, sys, time, json; t = time.perf_counter(); "
              "rc = subprocess.run(sys.argv[1:]).returncode; "
              "print(json.dumps([rc, time.perf_counter() - t, "
              "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))")
    out = subprocess.run([sys.executable, "-c", script, *cmd], capture_output=True, text=True, check=True)
    rc, seconds, peak_mb = json.loads(out.stdout.strip().splitlines()[-1])
    if rc not in (0,):
        raise RuntimeError(f"{cmd} exited {rc}: {out.stderr[-2000:]}")
    return seconds, peak_mb


def run_pathgen(slide: Path, out: Path, workers: int, codec: str) -> dict:
    """`pathgen tile` on the slide into a fresh folder; seconds are the slide's own (manifest),
    from opening it to marking its store complete, so interpreter start-up is not counted."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "pathgen.cli", "tile", str(slide), "--out", str(out), "--workers", str(workers),
           "--codec", codec, "--no-progress"]
    _, peak_mb = run_measured(cmd)
    row = read_manifest(out)[slide.stem]
    return {"tiles": int(row["tiles"]), "seconds": float(row["seconds"]), "peak_mb": peak_mb}


def _decode_part(args: tuple[str, np.ndarray]) -> tuple[float, float, int]:
    path, coords = args
    start = time.perf_counter()
    slide = openslide.OpenSlide(path)
    for x, y in coords:
        slide.read_region((int(x), int(y)), 0, (TILE_PX, TILE_PX))
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, len(coords)


def _naive_part(args: tuple[str, str, int, int]) -> tuple[float, float, int]:
    """The loop people write first: Otsu on a thumbnail, then read → check → write, tile by tile."""
    path, out, part, n_parts = args
    start = time.perf_counter()
    slide = openslide.OpenSlide(path)
    width, height = slide.dimensions
    thumb = np.asarray(slide.get_thumbnail((width // 16, height // 16)).convert("RGB"))
    saturation = rgb2hsv(thumb)[..., 1]
    mask = saturation > threshold_otsu(saturation)
    step = TILE_PX // 16
    coords = [(x * 16, y * 16) for y in range(0, mask.shape[0] - step + 1, step)
              for x in range(0, mask.shape[1] - step + 1, step) if mask[y:y + step, x:x + step].mean() >= 0.25]
    coords = coords[part::n_parts]
    store = zarr.create_array(f"{out}/part{part}.zarr", shape=(len(coords), TILE_PX, TILE_PX, 3), dtype="uint8",
                              chunks=(1, TILE_PX, TILE_PX, 3), compressors=zarr.codecs.ZstdCodec(level=1))
    for i, (x, y) in enumerate(coords):
        store[i] = np.asarray(slide.read_region((x, y), 0, (TILE_PX, TILE_PX)))[..., :3]
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, len(coords)


def run_pool(fn, parts: list, workers: int) -> dict:
    """Run `fn` over `parts` in `workers` processes, one part each, started together; the time is
    the slowest part's own (process start-up not counted, as for pathgen)."""
    with mp.get_context("spawn").Pool(workers) as pool:
        results = pool.map(fn, parts)
    return {"seconds": max(r[0] for r in results), "peak_mb": max(r[1] for r in results),
            "tiles": sum(r[2] for r in results)}


def slide_bytes_per_tile(slide: Path, coords: np.ndarray) -> float:
    """The slide's own compressed bytes for the area of the kept tiles, per tile."""
    with tifffile.TiffFile(slide) as tif:
        page = tif.pages[0]
        tw, th = page.tilewidth, page.tilelength
        tiles_across = -(-page.imagewidth // tw)
        counts = np.asarray(page.databytecounts)
    covered = set()
    for x, y in coords:
        for ty in range(int(y) // th, (int(y) + TILE_PX - 1) // th + 1):
            for tx in range(int(x) // tw, (int(x) + TILE_PX - 1) // tw + 1):
                covered.add(ty * tiles_across + tx)
    bytes_per_px = counts[sorted(covered)].sum() / (len(covered) * tw * th)
    return bytes_per_px * TILE_PX * TILE_PX


def store_bytes_per_tile(out: Path, slide_id: str) -> float:
    """Bytes of the tiles array's shard files per tile."""
    files = [p for p in (out / "tiles.zarr" / slide_id / "tiles" / "c").rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / len(open_store(out / "tiles.zarr" / slide_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=40000)
    parser.add_argument("--height", type=int, default=30000)
    parser.add_argument("--mpp", type=float, default=0.5, help="slide µm/px (0.5: tiles read at level 0)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pathgen_perf"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    slide = make_slide(args.workdir, args.width, args.height, args.mpp)
    rows = []
    for workers in (1, 2):
        result = run_pathgen(slide, args.workdir / f"pathgen_w{workers}", workers, "zstd")
        rows.append(("pathgen", workers, result))
    coords = open_store(args.workdir / "pathgen_w1" / "tiles.zarr" / slide.stem).coords
    for workers in (1, 2):
        parts = [(str(slide), part) for part in np.array_split(coords, workers)]
        rows.append(("decode bound", workers, run_pool(_decode_part, parts, workers)))
        naive_dir = args.workdir / f"naive_w{workers}"
        shutil.rmtree(naive_dir, ignore_errors=True)
        naive_dir.mkdir()
        parts = [(str(slide), str(naive_dir), k, workers) for k in range(workers)]
        rows.append(("naive", workers, run_pool(_naive_part, parts, workers)))
    jpeg = run_pathgen(slide, args.workdir / "pathgen_jpeg_w2", 2, "jpeg")
    report(rows, jpeg, slide, coords, args.workdir)


def report(rows: list, jpeg: dict, slide: Path, coords: np.ndarray, workdir: Path) -> None:
    """Print the table: tiles/s and the ratio to the decode bound with the same worker count."""
    bound = {w: r["tiles"] / r["seconds"] for name, w, r in rows if name == "decode bound"}
    print(f"\nslide {slide.name}: {len(coords)} tissue tiles of {TILE_PX} px kept by pathgen")
    print(f"{'variant':<14}{'workers':>8}{'tiles':>8}{'seconds':>9}{'tiles/s':>9}{'× bound':>9}{'peak MB':>9}")
    for name, workers, r in sorted(rows, key=lambda row: (row[1], row[0])):
        rate = r["tiles"] / r["seconds"]
        print(f"{name:<14}{workers:>8}{r['tiles']:>8}{r['seconds']:>9.1f}{rate:>9.0f}{rate / bound[workers]:>9.2f}"
              f"{r['peak_mb']:>9.0f}")
    rate = jpeg["tiles"] / jpeg["seconds"]
    print(f"{'pathgen jpeg':<14}{2:>8}{jpeg['tiles']:>8}{jpeg['seconds']:>9.1f}{rate:>9.0f}{rate / bound[2]:>9.2f}"
          f"{jpeg['peak_mb']:>9.0f}")
    source = slide_bytes_per_tile(slide, coords)
    lossless = store_bytes_per_tile(workdir / "pathgen_w2", slide.stem)
    lossy = store_bytes_per_tile(workdir / "pathgen_jpeg_w2", slide.stem)
    print(f"\nbytes per tile: slide (JPEG q90 source) {source / 1024:.1f} KB | pathgen zstd-1 {lossless / 1024:.1f} KB "
          f"({lossless / source:.1f}× the slide) | pathgen jpeg-90 {lossy / 1024:.1f} KB ({lossy / source:.1f}×)"
          f" | raw {TILE_PX * TILE_PX * 3 / 1024:.0f} KB")


if __name__ == "__main__":
    main()
