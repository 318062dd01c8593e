"""Files that say something is finished are written whole or not at all.

A model's ``config.json``, ``results.json``, ``metrics.json`` and a pipeline's ``status.json`` are
read later as proof that work is complete. Written in place, a kill or a full disk mid-write leaves a
truncated file that reads as done (or as an unreadable one with no name in the error). Here every
such file goes to a temporary name in the same folder, is flushed to disk, and is renamed over the
target: POSIX rename is atomic, so a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"


class DiskFullError(OSError):
    """No space left on the device while writing a file; the message names the file."""

    def __init__(self, path: str | Path):
        super().__init__(errno.ENOSPC, f"no space left on device writing {path}")
        self.path = str(path)

    def __reduce__(self):  # noqa: ANN204 -- pickles with its one argument (crosses process pools)
        return type(self), (self.path,)

    def __str__(self) -> str:
        return f"no space left on device writing {self.path}"


def temp_path(path: str | Path) -> Path:
    """The temporary sibling `path` is written to before the rename (hidden, per process)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")


def is_disk_full(err: BaseException) -> bool:
    """True for an OSError with ENOSPC, or torch's serializer error that a full disk causes."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    return isinstance(err, RuntimeError) and "unexpected pos" in str(err)


@contextlib.contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `path`, on any error it is removed.

    A full disk is reported as DiskFullError naming `path` (torch and zarr word it obscurely).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if is_disk_full(err):
            raise DiskFullError(path) from err
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) in one atomic step."""
    with atomic_target(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def write_json_atomic(path: str | Path, value: Any, **dump_kwargs: Any) -> None:
    """Replace `path` with `value` as JSON in one atomic step (`dump_kwargs` go to json.dumps)."""
    write_text_atomic(path, json.dumps(value, **dump_kwargs) + "\n")


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """Parse the JSON at `path`; a missing or unreadable file raises ValueError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{path}: no {what} here") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable {what} ({err}); delete it to redo the step that wrote it") from err


def is_json_file(path: str | Path) -> bool:
    """True when `path` exists and parses as JSON: a completion marker a crash did not truncate."""
    try:
        json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return True
