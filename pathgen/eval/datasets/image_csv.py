"""Any patch dataset listed in a CSV: a header with `path,label` and optionally `split`.

Paths are relative to the CSV's folder and are not trusted: absolute paths, `..` and symlinks
leading outside that folder are refused. `split` values are train / val / test; without the
column (or without val rows) the splits are made as for an ImageFolder (image_folder.split_pools).
"""

from __future__ import annotations

from pathlib import Path

from pathgen.eval.datasets.files import (
    read_csv_rows,
    require_file,
    resolve_inside,
    sorted_class_names,
)
from pathgen.eval.datasets.image_folder import split_pools
from pathgen.eval.datasets.patches import SPLITS, PatchDataset


def read_labelled_rows(csv_path: Path, key: str) -> list[tuple[Path, str, str, dict[str, str]]]:
    """(resolved `key` path, label, split or "", row) for every row, all checked; shared with slide_csv."""
    rows = read_csv_rows(csv_path, (key, "label"))
    has_split = "split" in rows[0]
    base, out, seen = csv_path.parent, [], {}
    for i, row in enumerate(rows):
        where = f"{csv_path}, row {i + 2}"
        path = resolve_inside(base, row[key], where)
        require_file(path, f"file listed in {where}")
        if path in seen:
            raise ValueError(f"{where}: {row[key]!r} is already listed in row {seen[path]}")
        seen[path] = i + 2
        if not row["label"]:
            raise ValueError(f"{where}: empty label")
        split = row["split"] if has_split else ""
        if has_split and split not in SPLITS:
            raise ValueError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
        out.append((path, row["label"], split, row))
    if has_split and not any(split == "train" for _, _, split, _ in out):
        raise ValueError(f"{csv_path}: no rows with split = train")
    return out


def read_image_csv(
    csv_path: str | Path, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> PatchDataset:
    """The images listed in a `path,label[,split]` CSV as a PatchDataset."""
    csv_path = require_file(csv_path, "image CSV")
    rows = read_labelled_rows(csv_path, "path")
    class_names = sorted_class_names([label for _, label, _, _ in rows])
    samples: dict[str, list[tuple[Path, str]]] = {}
    for path, label, split, _ in rows:
        samples.setdefault(split, []).append((path, label))
    pools, rule = split_pools(samples, class_names, val_fraction, test_fraction, seed)
    splits = {name: pool.split(name, class_names, str(csv_path)) for name, pool in pools.items()}
    return PatchDataset(csv_path.stem, csv_path, class_names, splits, None, rule)
