"""Any slide-level cohort (PANDA, TCGA subtypes, …) listed in a CSV: `slide,label[,split][,annotation]`.

Paths are relative to the CSV's folder and untrusted (see files.resolve_inside). Labels are
class names (sorted; numerically if all are integers, so ISUP grades 0..5 keep their order).
Without a split column the slides are split stratified and seeded, 70 / 10 / 20 by default;
with one but no val rows, val is a stratified share of train.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pathgen.eval.datasets.files import (
    class_index,
    require_file,
    resolve_inside,
    sorted_class_names,
)
from pathgen.eval.datasets.image_csv import read_labelled_rows
from pathgen.eval.datasets.slides import SlideDataset, SlideRecord
from pathgen.eval.datasets.stratify import stratified_holdout, three_way_split


def _assign_splits(
    given: list[str], labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> tuple[list[str], str]:
    if not any(given):
        splits = [""] * len(labels)
        for name, indices in three_way_split(labels, val_fraction, test_fraction, seed).items():
            for i in indices:
                splits[i] = name
        train = 1 - val_fraction - test_fraction
        return splits, f"stratified {train:.0%}/{val_fraction:.0%}/{test_fraction:.0%} (seed {seed})"
    if "val" in given:
        return list(given), "given splits"
    splits, train = list(given), np.flatnonzero(np.array(given) == "train")
    for i in train[stratified_holdout(labels[train], val_fraction, seed)[1]]:
        splits[i] = "val"
    return splits, f"given splits; val = stratified {val_fraction:.0%} of train (seed {seed})"


def read_slide_csv(
    csv_path: str | Path, val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0
) -> SlideDataset:
    """The slides listed in a `slide,label[,split][,annotation]` CSV as a SlideDataset."""
    csv_path = require_file(csv_path, "slide CSV")
    rows = read_labelled_rows(csv_path, "slide")
    class_names = sorted_class_names([label for _, label, _, _ in rows])
    labels = class_index([label for _, label, _, _ in rows], class_names)
    splits, rule = _assign_splits([split for _, _, split, _ in rows], labels, val_fraction, test_fraction, seed)
    records = []
    for i, ((path, label, _, row), split) in enumerate(zip(rows, splits)):
        annotation = None
        if row.get("annotation"):
            where = f"{csv_path}, row {i + 2}"
            annotation = require_file(
                resolve_inside(csv_path.parent, row["annotation"], where), f"annotation listed in {where}"
            )
        records.append(SlideRecord(path.stem, path, int(labels[i]), label, split, annotation))
    return SlideDataset(csv_path.stem, csv_path, class_names, tuple(records), rule)
