"""The default configs shipped with pathgen (configs/…, benchmarks/suites/…), found without the working
directory: a stage's default `configs/ssl/dino_tiny.yaml` means that file in the installed package when
there is no such file where the command runs.

A wheel carries both folders as package data under pathgen/package_data/ (pyproject.toml); in a checkout
or an editable install pathgen/package_data/ holds links to the repository's folders, and the
repository root is the fallback where links are not available.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DATA = Path(__file__).resolve().parent / "package_data"
SOURCE_ROOT = Path(__file__).resolve().parents[1]
PACKAGED_FOLDERS = ("configs", "benchmarks/suites")


def packaged_file(path: str | Path) -> Path:
    """`path` itself when it exists (absolute, or relative to the working directory); else the packaged copy
    of a relative configs/… or benchmarks/suites/… path; else `path` unchanged, so the reader's error names
    the path that was given."""
    given = Path(path)
    if given.is_absolute() or given.exists() or not _is_packaged(given):
        return given
    for root in (PACKAGE_DATA, SOURCE_ROOT):
        if (root / given).is_file():
            return root / given
    return given


def optional_packaged_file(path: str | Path | None) -> Path | None:
    """packaged_file for an optional config path (None: the dataclass defaults alone)."""
    return None if path is None else packaged_file(path)


def _is_packaged(path: Path) -> bool:
    return any(path.as_posix().startswith(folder + "/") for folder in PACKAGED_FOLDERS)
