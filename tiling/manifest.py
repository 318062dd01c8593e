"""The run record of a tiling output folder: `manifest.csv`, one row per slide, and file locks.

Several runs may share an output folder (job arrays, a re-run started by mistake), so the
manifest is updated under an exclusive lock by merging rows, and each slide is tiled only by the
run holding that slide's lock.
"""

from __future__ import annotations

import csv
import fcntl
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

MANIFEST = "manifest.csv"
LOCKS_DIR = ".locks"


@dataclass
class ManifestRow:
    """What happened to one slide in the latest run that touched it."""

    slide_id: str
    path: str
    status: str  # done | failed | skipped
    reason: str = ""
    tiles: int = 0
    seconds: float = 0.0
    level0_mpp: float | None = None
    finished: str = ""


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

    def __enter__(self) -> "FileLock":
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


def update_manifest(out_dir: Path, rows: list[ManifestRow]) -> None:
    """Merge `rows` into the manifest, atomically and under a lock.

    The newest row wins per slide, except that a "skipped" row (already complete, or being tiled by
    another run) never replaces the row of the run that did the work.
    """
    columns = [f.name for f in fields(ManifestRow)]
    with FileLock(out_dir / LOCKS_DIR / "manifest.lock"):
        merged = read_manifest(out_dir)
        for row in rows:
            if row.status == "skipped" and row.slide_id in merged:
                continue
            merged[row.slide_id] = {k: ("" if v is None else v) for k, v in asdict(row).items()}
        tmp = out_dir / f".{MANIFEST}.{os.getpid()}.tmp"
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(merged[key] for key in sorted(merged))
        os.replace(tmp, out_dir / MANIFEST)
