"""Run folders on shared servers: never overwrite a finished run by accident, never let two runs
write one folder, and clear what a killed run left half-written.

Every command that writes a run folder (train-ssl, train-vae, train-ldm, generate, bench, gensis)
calls `prepare_run_folder` before it writes anything: an existing, non-empty folder is refused
unless the user said `--resume` (continue it) or `--overwrite` (delete its pathgen outputs first).
While a run writes a folder it holds `RunLock` on ``OUT/.pathgen.lock`` (an advisory `flock`, which
the kernel releases when the process dies, so a killed run never leaves a stale lock); a second
run into the same folder fails at once with the folder and the holder's pid in the message.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
from pathlib import Path

LOCK_NAME = ".pathgen.lock"
# files and folders whose presence makes a folder a pathgen output that --overwrite may delete
RUN_MARKERS = ("config.yaml", "checkpoints", "metrics.jsonl", "model", "bank.zarr", "results.json", "status.json")


class RunFolderError(ValueError):
    """A run folder that cannot be written as asked (exists, in use, or not a pathgen folder)."""


def prepare_run_folder(out: str | Path, resume: bool = False, overwrite: bool = False) -> Path:
    """Check `out` before a command writes into it; returns it absolute.

    Empty or missing: a fresh run. Non-empty: refused unless `resume` (continue what is there) or
    `overwrite` (its pathgen outputs are deleted first, under the folder's lock). A folder that holds
    no pathgen output is never deleted.
    """
    out = Path(out).expanduser().resolve()
    if resume and overwrite:
        raise RunFolderError(f"{out}: --resume and --overwrite contradict each other; give one")
    existing = _contents(out)
    if not existing or resume:
        return out
    if not overwrite:
        raise RunFolderError(
            f"{out}: already holds a run ({', '.join(sorted(existing)[:4])}); pass --resume to "
            "continue it, --overwrite to replace it, or choose another output folder"
        )
    if not existing & set(RUN_MARKERS):
        raise RunFolderError(
            f"{out}: --overwrite refused: the folder holds no pathgen output "
            f"({', '.join(sorted(existing)[:4])}); choose an empty or new output folder"
        )
    with RunLock(out):
        for name in existing:
            _remove(out / name)
    return out


def _contents(folder: Path) -> set[str]:
    if not folder.is_dir():
        if folder.exists():
            raise RunFolderError(f"{folder}: exists and is not a folder; choose another output folder")
        return set()
    return {entry.name for entry in folder.iterdir() if entry.name != LOCK_NAME}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


class RunLock:
    """An exclusive lock on a run folder for as long as a run writes it (re-entrant in one process).

    ``with RunLock(out): ...`` creates `out` if needed and raises RunFolderError naming the folder
    (and the pid and host that hold it) when another process has it.
    """

    _held: dict[Path, list] = {}  # folder → [open lock file, depth] of this process

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser().resolve()

    def __enter__(self) -> RunLock:
        held = RunLock._held.get(self.folder)
        if held is not None:
            held[1] += 1
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = (self.folder / LOCK_NAME).open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunFolderError(
                f"{self.folder}: in use by another run ({holder}); wait for it to end or choose another output folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        RunLock._held[self.folder] = [handle, 1]
        return self

    def __exit__(self, *exc_info: object) -> None:
        held = RunLock._held[self.folder]
        held[1] -= 1
        if held[1] == 0:
            del RunLock._held[self.folder]
            held[0].close()  # closing the file releases the flock


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the temp files (``.NAME.PID.tmp``) a killed atomic write left in `folder` and its
    ``checkpoints/``; call it while holding the folder's `RunLock`, so none belongs to a live run.
    Returns what was removed."""
    folder = Path(folder)
    stale = [
        path
        for where in (folder, folder / "checkpoints")
        if where.is_dir()
        for path in where.glob(".*.tmp")
        if path.is_file()
    ]
    for path in stale:
        path.unlink()
    return stale


def is_main_process() -> bool:
    """True outside torchrun and on its rank 0: the process that checks and writes run folders."""
    return int(os.environ.get("RANK", "0")) == 0
