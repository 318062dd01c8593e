"""Find the slides to tile, name their stores, and read per-slide resolution overrides."""

from __future__ import annotations

import csv
import hashlib
import math
from collections.abc import Mapping
from pathlib import Path

SLIDE_SUFFIXES = {
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".scn",
    ".mrxs",
    ".svslide",
    ".bif",
    ".png",
    ".jpg",
    ".jpeg",
}


def discover_slides(inputs: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """Slides named directly or found recursively in folders, sorted; and folder files ignored.

    A file named on the command line is always taken (and fails clearly if it is not a slide);
    inside folders only files with a slide suffix are taken, so READMEs and CSVs beside the
    slides are passed over rather than reported as broken slides. An input that does not exist
    is a ValueError naming it (a typo must not start a run that tiles nothing).
    """
    slides: set[Path] = set()
    ignored: list[Path] = []
    for item in map(Path, inputs):
        if not item.exists():
            raise ValueError(f"{item}: no such file or folder")
        if item.is_dir():
            for path in item.rglob("*"):
                if not path.is_file() or path.name.startswith("."):
                    continue
                (slides.add(path.absolute()) if path.suffix.lower() in SLIDE_SUFFIXES else ignored.append(path))
        else:
            slides.add(item.absolute())
    return sorted(slides), sorted(ignored)


def describe_ignored(ignored: list[Path], shown: int = 3) -> str:
    """'ignored N files without a slide suffix: a, b, c and K more' (empty when none were)."""
    if not ignored:
        return ""
    names = ", ".join(str(path) for path in ignored[:shown])
    more = f" and {len(ignored) - shown} more" if len(ignored) > shown else ""
    return f"ignored {len(ignored)} file{'s' * (len(ignored) != 1)} without a slide suffix: {names}{more}"


def shard_from_environment(environ: Mapping[str, str]) -> str | None:
    """The `K/N` shard of a Slurm job-array task, or None outside a job array.

    Slurm numbers array tasks from SLURM_ARRAY_TASK_MIN in steps of SLURM_ARRAY_TASK_STEP (1 when
    unset), with SLURM_ARRAY_TASK_COUNT tasks in all; task ids 0-15 or 1-16 both map to 1/16..16/16.
    Arrays given as an irregular list of ids (`--array=1,4,9`) cannot be mapped: ValueError.
    """
    if "SLURM_ARRAY_TASK_ID" not in environ:
        return None
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT")
    try:
        task_id, task_min, count = (int(environ[name]) for name in names)
        step = int(environ.get("SLURM_ARRAY_TASK_STEP", "1"))
    except (KeyError, ValueError) as err:
        raise ValueError(f"cannot take the shard from the environment ({err}): give --shard K/N") from err
    position, off_step = divmod(task_id - task_min, step) if step > 0 else (-1, 1)
    if off_step or not 0 <= position < count:
        raise ValueError(
            f"SLURM_ARRAY_TASK_ID={task_id} is not task min {task_min} + k×step {step} for k < "
            f"count {count} (an irregular --array list?): give --shard K/N"
        )
    return f"{position + 1}/{count}"


def select_shard(slides: list[Path], shard: str) -> list[Path]:
    """The K-th of N interleaved subsets of a sorted slide list, for `--shard K/N` job arrays."""
    try:
        k_text, n_text = shard.split("/")
        k, n = int(k_text), int(n_text)
    except ValueError as err:
        raise ValueError(f"--shard must look like K/N (e.g. 3/8), got {shard!r}") from err
    if not 1 <= k <= n:
        raise ValueError(f"--shard {shard}: K must be in 1..N")
    return [path for i, path in enumerate(slides) if i % n == k - 1]


def slide_ids(slides: list[Path]) -> dict[Path, str]:
    """A store name per slide: its file stem, made unique with a path hash where stems collide."""
    stems: dict[str, int] = {}
    for path in slides:
        stems[path.stem] = stems.get(path.stem, 0) + 1
    ids = {}
    for path in slides:
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem) or "slide"
        if stems[path.stem] > 1:
            stem += "_" + hashlib.sha1(str(path).encode()).hexdigest()[:8]
        ids[path] = stem
    return ids


def read_mpp_overrides(csv_path: str | Path) -> dict[str, float]:
    """Level-0 µm/px per slide from a CSV with columns `slide` (file name or path) and `mpp`.

    Keys are matched against a slide's resolved path and its file name; the paths are only
    compared, never opened.
    """
    csv_path = Path(csv_path)
    try:
        with csv_path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as err:
        raise ValueError(f"{csv_path}: cannot read mpp overrides ({err.strerror})") from err
    if rows and not {"slide", "mpp"} <= set(rows[0]):
        raise ValueError(f"{csv_path}: mpp overrides need columns 'slide' and 'mpp', found {sorted(rows[0])}")
    overrides = {}
    for line_no, row in enumerate(rows, start=2):
        try:
            mpp = float(row["mpp"])
        except (TypeError, ValueError):
            mpp = math.nan
        if not (math.isfinite(mpp) and mpp > 0):
            raise ValueError(f"{csv_path}:{line_no}: mpp must be a positive number, got {row['mpp']!r}")
        overrides[row["slide"].strip()] = mpp
    return overrides


def override_for(slide: Path, overrides: dict[str, float]) -> float | None:
    """The override that names this slide by path or by file name, if any."""
    for key in (str(slide), slide.name):
        if key in overrides:
            return overrides[key]
    for key, mpp in overrides.items():
        if Path(key).expanduser().resolve() == slide.resolve():
            return mpp
    return None
