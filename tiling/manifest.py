"""The run record of a tiling output folder: `manifest.csv`, one row per slide, and file locks.

Several runs may share an output folder (job arrays, a re-run started by mistake), so the
manifest is updated under an exclusive lock by merging rows, and each slide is tiled only by the
run holding that slide's lock. The manifest holds, per slide, the row of the run that did the
work: a later run that only skipped, found a slide locked, or refused a complete store never
replaces it. What each run did, and the config it ran with, stay in `runs/<run id>.csv` and
`runs/<run id>.yaml`.
"""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from tiling.store import TILES_DIR, is_complete

MANIFEST = "manifest.csv"
LOCKS_DIR = ".locks"
RUNS_DIR = "runs"
STATUSES = ("done", "failed", "skipped", "locked")


@dataclass
class ManifestRow:
    """What happened to one slide in the latest run that touched it."""

    slide_id: str
    path: str
    status: str  # one of STATUSES; "locked": another live run holds the slide's lock
    reason: str = ""
    tiles: int = 0
    seconds: float = 0.0
    level0_mpp: float | None = None
    finished: str = ""
    run: str = ""  # id of the run that wrote the row: runs/<run>.yaml is its config


class FileLock:
    """An exclusive, non-blocking advisory lock on a file; released on close or process death."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self, blocking: bool = False) -> bool:
        """Take the lock; False when another process holds it and `blocking` is off."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock back."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        self.acquire(blocking=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def slide_lock(out_dir: Path, slide_id: str) -> FileLock:
    """The lock that one run holds while it tiles `slide_id` into `out_dir`."""
    return FileLock(out_dir / LOCKS_DIR / f"{slide_id}.lock")


def read_manifest(out_dir: Path) -> dict[str, dict[str, str]]:
    """Rows of `out_dir/manifest.csv` keyed by slide id (empty when there is none yet)."""
    path = out_dir / MANIFEST
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {row["slide_id"]: row for row in csv.DictReader(handle)}


def new_run_id() -> str:
    """A sortable id for one run, unique among runs started at once: UTC time and process id."""
    return f"{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S.%fZ}-{os.getpid()}"


def write_run_config(out_dir: Path, run_id: str, config: dict) -> Path:
    """Save a run's resolved config as `runs/<run_id>.yaml` (atomically); earlier runs' stay."""
    path = out_dir / RUNS_DIR / f"{run_id}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    os.replace(tmp, path)
    return path


def write_run_rows(out_dir: Path, run_id: str, rows: list[ManifestRow]) -> None:
    """What this run did, slide by slide, as `runs/<run_id>.csv` (atomically)."""
    (out_dir / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    _write_csv(out_dir / RUNS_DIR / f"{run_id}.csv", [_as_strings(row) for row in rows])


def update_manifest(out_dir: Path, rows: list[ManifestRow]) -> None:
    """Merge `rows` into the manifest, atomically and under a lock.

    The newest row wins per slide, except that the row of the run that did the work is kept:
    a "skipped" or "locked" row never replaces a row, and a "failed" one never replaces a "done"
    row whose store is still complete (a re-run refused for other parameters, say).
    """
    with FileLock(out_dir / LOCKS_DIR / "manifest.lock"):
        merged = read_manifest(out_dir)
        for row in rows:
            if _keeps_existing(merged.get(row.slide_id), row, out_dir):
                continue
            merged[row.slide_id] = _as_strings(row)
        _write_csv(out_dir / MANIFEST, [merged[key] for key in sorted(merged)])


def _keeps_existing(existing: dict[str, str] | None, row: ManifestRow, out_dir: Path) -> bool:
    if existing is None:
        return False
    if row.status in ("skipped", "locked"):
        return True
    return (
        row.status == "failed" and existing.get("status") == "done" and is_complete(out_dir / TILES_DIR / row.slide_id)
    )


def _as_strings(row: ManifestRow) -> dict[str, object]:
    return {k: ("" if v is None else v) for k, v in asdict(row).items()}


def _write_csv(path: Path, rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in fields(ManifestRow)], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def now_iso() -> str:
    """UTC time stamp for manifests and attrs."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def elapsed(t0: float) -> float:
    """Seconds since `t0` (a `time.perf_counter()` reading), rounded for the manifest."""
    return round(time.perf_counter() - t0, 3)
