"""Tiles/s of `pathgen tile` against a naive loop, the OpenSlide bound and the decode limit, in one run.

On one large synthetic JPEG-tiled slide (tens of thousands of tissue tiles by default), in two cases:
  * aligned      0.5 µm/px slide, 256-px tiles on the file's own 256-px tile grid (no resampling)
  * resampled    0.4 µm/px slide, 224-px tiles at 0.5 µm/px (each read 280 px wide and resized)
and in each, with 2 worker processes:
  * pathgen        the whole `pathgen tile` command, from starting its interpreter to its exit
                   (imports, discovery, planning, tissue detection, QC, stores, manifest)
  * pathgen slide  the same run's own time for the slide (manifest: opening it to marking its
                   store complete), without the command's start-up and wind-down
  * openslide      only OpenSlide read_region of the level-0 boxes of the tiles pathgen kept
  * turbo limit    only libjpeg-turbo (tiling.fast_codecs: imagecodecs, else Pillow) decoding
                   the file's compressed tiles under those boxes, each once: the physical limit
                   of any reader of this file
  * naive          thumbnail Otsu + one read_region per tile + one zarr chunk write per tile
Every rate is printed beside its ratio to the OpenSlide bound and to the turbo limit of the same
case, by wall time and by CPU time (CPU: all of a variant's processes, polled from /proc; the
pools' parts count only their own work), measured in the same run. The machine may be shared:
only same-run ratios compare, the CPU ratios least blurred by other load (the load average before
and after each case is printed with it). Peak memory is the largest peak RSS (VmHWM) of any one
process of the variant: for pathgen, the command's own process and each worker. The aligned case
also prints bytes on disk per tile for the lossless and JPEG stores.

    python benchmarks/perf/tile_throughput.py                 # 40,000 × 30,000 px
    python benchmarks/perf/tile_throughput.py --width 12000 --height 9000   # a quick look
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
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
from tiling.tiff_tiles import decode_jpeg_tile, find_tiled_levels

TARGET_MPP = 0.5
CASES = {"aligned": (0.5, 256), "resampled": (0.4, 224)}  # slide µm/px, tile px at TARGET_MPP


def make_slide(workdir: Path, width: int, height: int, mpp: float) -> Path:
    """The benchmark slide, generated once per size and reused."""
    path = workdir / f"bench_{width}x{height}_{mpp}.tif"
    if not path.exists():
        print(f"generating {path.name} …", flush=True)
        write_synthetic_slide(path, SyntheticSlideSpec(width, height, mpp=mpp, seed=11, tissue_regions=8))
    return path


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it (the fork server's workers are grandchildren)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo.extend(int(child) for child in (task / "children").read_text().split())
            except OSError:
                pass
    return found


def _peak_rss_mb(pid: int) -> float:
    """A live process's peak resident set (VmHWM) in MB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a live process has used so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def run_measured(cmd: list[str]) -> tuple[float, float, float]:
    """Run a command; (wall seconds from its start to its exit, peak RSS in MB of its largest
    process, CPU seconds of all its processes).

    Peaks and CPU times are polled from /proc while it runs (both only grow, so a poll misses
    only what a process adds in its last 0.05 s)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, float] = {}
    cpu: dict[int, float] = {}
    while proc.poll() is None:
        for pid in _descendants(proc.pid):
            peaks[pid] = max(peaks.get(pid, 0.0), _peak_rss_mb(pid))
            cpu[pid] = max(cpu.get(pid, 0.0), _cpu_seconds(pid))
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
    return seconds, max(peaks.values(), default=0.0), sum(cpu.values())


def run_pathgen(slide: Path, out: Path, workers: int, codec: str, tile_px: int) -> dict[str, dict]:
    """`pathgen tile` on the slide into a fresh folder: {"pathgen": the whole command, "pathgen slide":
    the slide's own seconds from the manifest, opening it to marking its store complete}."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "pathgen.cli",
        "tile",
        str(slide),
        "--out",
        str(out),
        "--workers",
        str(workers),
        "--codec",
        codec,
        "--tile-size",
        str(tile_px),
        "--mpp",
        str(TARGET_MPP),
        "--no-progress",
    ]
    seconds, peak_mb, cpu_s = run_measured(cmd)
    row = read_manifest(out)[slide.stem]
    tiles = int(row["tiles"])
    return {
        "pathgen": {"tiles": tiles, "seconds": seconds, "peak_mb": peak_mb, "cpu_s": cpu_s},
        "pathgen slide": {"tiles": tiles, "seconds": float(row["seconds"]), "peak_mb": peak_mb, "cpu_s": None},
    }


def _part_result(start: float, cpu: float, tiles: int) -> tuple[float, float, int, float]:
    """(wall seconds, peak RSS MB, tiles, CPU seconds) of one pool part since `start` / `cpu`."""
    wall, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    return wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, tiles, cpu_s


def _decode_part(args: tuple[str, np.ndarray, int]) -> tuple[float, float, int]:
    """OpenSlide read_region of each level-0 box, nothing else."""
    path, coords, box_px = args
    start, cpu = time.perf_counter(), time.process_time()
    slide = openslide.OpenSlide(path)
    for x, y in coords:
        slide.read_region((int(x), int(y)), 0, (box_px, box_px))
    return _part_result(start, cpu, len(coords))


def covered_file_tiles(slide: Path, coords: np.ndarray, box_px: int) -> np.ndarray:
    """Indices of the slide's level-0 file tiles that the level-0 boxes touch, in file order."""
    with tifffile.TiffFile(slide) as tif:
        page = tif.pages[0]
        tw, th, across = page.tilewidth, page.tilelength, -(-page.imagewidth // page.tilewidth)
    covered = set()
    for x, y in coords:
        for ty in range(int(y) // th, (int(y) + box_px - 1) // th + 1):
            for tx in range(int(x) // tw, (int(x) + box_px - 1) // tw + 1):
                covered.add(ty * across + tx)
    return np.asarray(sorted(covered))


def _turbo_part(args: tuple[str, np.ndarray, int]) -> tuple[float, float, int]:
    """Read and decode these compressed file tiles, once each; counts the kept tiles they serve."""
    path, file_tiles, n_kept = args
    start, cpu = time.perf_counter(), time.process_time()
    with tifffile.TiffFile(path) as tif:
        size = (tif.pages[0].imagewidth, tif.pages[0].imagelength)
    level = find_tiled_levels(Path(path), (size,))[0]
    with open(path, "rb") as handle:
        for index in file_tiles:
            handle.seek(int(level.offsets[index]))
            decode_jpeg_tile(handle.read(int(level.byte_counts[index])), level)
    return _part_result(start, cpu, n_kept)


def _naive_part(args: tuple[str, str, int, int, int, int]) -> tuple[float, float, int]:
    """The loop people write first: Otsu on a thumbnail, then read → resize → write, tile by tile."""
    path, out, part, n_parts, tile_px, box_px = args
    start, cpu = time.perf_counter(), time.process_time()
    slide = openslide.OpenSlide(path)
    width, height = slide.dimensions
    thumb = np.asarray(slide.get_thumbnail((width // 16, height // 16)).convert("RGB"))
    saturation = rgb2hsv(thumb)[..., 1]
    mask = saturation > threshold_otsu(saturation)
    step = box_px // 16
    coords = [
        (x * 16, y * 16)
        for y in range(0, mask.shape[0] - step + 1, step)
        for x in range(0, mask.shape[1] - step + 1, step)
        if mask[y : y + step, x : x + step].mean() >= 0.25
    ]
    coords = coords[part::n_parts]
    store = zarr.create_array(
        f"{out}/part{part}.zarr",
        shape=(len(coords), tile_px, tile_px, 3),
        dtype="uint8",
        chunks=(1, tile_px, tile_px, 3),
        compressors=zarr.codecs.ZstdCodec(level=1),
    )
    for i, (x, y) in enumerate(coords):
        region = slide.read_region((x, y), 0, (box_px, box_px)).convert("RGB")
        store[i] = np.asarray(region if box_px == tile_px else region.resize((tile_px, tile_px), 1))
    return _part_result(start, cpu, len(coords))


def run_pool(fn, parts: list, workers: int) -> dict:
    """Run `fn` over `parts` in `workers` processes, one part each, started together; the time is
    the slowest part's own and the CPU the parts' own (process start-up not counted: more than
    pathgen's whole-command row is granted)."""
    with mp.get_context("spawn").Pool(workers) as pool:
        results = pool.map(fn, parts)
    return {
        "seconds": max(r[0] for r in results),
        "peak_mb": max(r[1] for r in results),
        "tiles": sum(r[2] for r in results),
        "cpu_s": sum(r[3] for r in results),
    }


def slide_bytes_per_tile(slide: Path, coords: np.ndarray, tile_px: int) -> float:
    """The slide's own compressed bytes for the area of the kept tiles, per tile."""
    with tifffile.TiffFile(slide) as tif:
        page = tif.pages[0]
        tw, th = page.tilewidth, page.tilelength
        counts = np.asarray(page.databytecounts)
    covered = covered_file_tiles(slide, coords, tile_px)
    return counts[covered].sum() / (len(covered) * tw * th) * tile_px * tile_px


def store_bytes_per_tile(out: Path, slide_id: str) -> float:
    """Bytes of the tiles array's shard files per tile."""
    files = [p for p in (out / "tiles.zarr" / slide_id / "tiles" / "c").rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / len(open_store(out / "tiles.zarr" / slide_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=40000)
    parser.add_argument("--height", type=int, default=30000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/pathgen_perf"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    for case, (slide_mpp, tile_px) in CASES.items():
        slide = make_slide(args.workdir, args.width, args.height, slide_mpp)
        load_before = os.getloadavg()[0]
        rows, coords = run_case(
            slide, args.workdir / case, args.workers, tile_px, round(tile_px * TARGET_MPP / slide_mpp)
        )
        print(
            f"\n{case}: slide {slide.name} ({slide_mpp} µm/px), {len(coords)} tissue tiles of {tile_px} px at "
            f"{TARGET_MPP} µm/px, {args.workers} workers; load average {load_before:.2f} before, "
            f"{os.getloadavg()[0]:.2f} after, on {os.cpu_count()} CPUs"
        )
        report(rows)
        if case == "aligned":
            report_bytes(slide, coords, tile_px, args.workdir / case, args.workers)


def run_case(slide: Path, workdir: Path, workers: int, tile_px: int, box_px: int) -> tuple[dict, np.ndarray]:
    """All variants on one slide; the OpenSlide and turbo rows read the tiles pathgen kept."""
    rows = run_pathgen(slide, workdir / "pathgen", workers, "zstd", tile_px)
    coords = open_store(workdir / "pathgen" / "tiles.zarr" / slide.stem).coords
    parts = [(str(slide), part, box_px) for part in np.array_split(coords, workers)]
    rows["openslide"] = run_pool(_decode_part, parts, workers)
    file_tiles = covered_file_tiles(slide, coords, box_px)
    parts = [(str(slide), part, len(coords) // workers) for part in np.array_split(file_tiles, workers)]
    rows["turbo limit"] = run_pool(_turbo_part, parts, workers)
    naive_dir = workdir / "naive"
    shutil.rmtree(naive_dir, ignore_errors=True)
    naive_dir.mkdir(parents=True)
    parts = [(str(slide), str(naive_dir), k, workers, tile_px, box_px) for k in range(workers)]
    rows["naive"] = run_pool(_naive_part, parts, workers)
    return rows, coords


def report(rows: dict) -> None:
    """Print tiles/s of each variant and its ratios to the OpenSlide bound and the turbo limit, by wall
    time and by CPU time (CPU ms per tile of all the variant's processes: what a loaded machine's
    wall ratios blur, since every variant then waits for the cores by a different share)."""
    bound = rows["openslide"]["tiles"] / rows["openslide"]["seconds"]
    limit = rows["turbo limit"]["tiles"] / rows["turbo limit"]["seconds"]
    bound_cpu = rows["openslide"]["cpu_s"] / rows["openslide"]["tiles"]
    limit_cpu = rows["turbo limit"]["cpu_s"] / rows["turbo limit"]["tiles"]
    print(
        f"{'variant':<15}{'tiles':>8}{'seconds':>9}{'tiles/s':>9}{'× openslide':>13}{'× turbo':>9}{'peak MB':>9}"
        f"{'CPU ms/tile':>13}{'× openslide':>13}{'× turbo':>9}   (CPU)"
    )
    for name, r in rows.items():
        rate = r["tiles"] / r["seconds"]
        cpu = "" if r["cpu_s"] is None else f"{r['cpu_s'] / r['tiles'] * 1e3:>13.2f}"
        if r["cpu_s"] is not None:
            per_tile = r["cpu_s"] / r["tiles"]
            cpu += f"{bound_cpu / per_tile:>13.2f}{limit_cpu / per_tile:>9.2f}"
        print(
            f"{name:<15}{r['tiles']:>8}{r['seconds']:>9.1f}{rate:>9.0f}{rate / bound:>13.2f}{rate / limit:>9.2f}"
            f"{r['peak_mb']:>9.0f}{cpu}"
        )


def report_bytes(slide: Path, coords: np.ndarray, tile_px: int, workdir: Path, workers: int) -> None:
    """Bytes per tile: the slide's own JPEG, the lossless store and a JPEG store."""
    run_pathgen(slide, workdir / "pathgen_jpeg", workers, "jpeg", tile_px)
    source = slide_bytes_per_tile(slide, coords, tile_px)
    lossless = store_bytes_per_tile(workdir / "pathgen", slide.stem)
    lossy = store_bytes_per_tile(workdir / "pathgen_jpeg", slide.stem)
    print(
        f"bytes per tile: slide (JPEG q90 source) {source / 1024:.1f} KB | pathgen zstd-1 {lossless / 1024:.1f} KB "
        f"({lossless / source:.1f}× the slide) | pathgen jpeg-90 {lossy / 1024:.1f} KB ({lossy / source:.1f}×)"
        f" | raw {tile_px * tile_px * 3 / 1024:.0f} KB"
    )


if __name__ == "__main__":
    main()
