"""Slide-level datasets: one record per whole-slide image (path, label, split, annotation).

Slide readers only list and check files; bags of tile features come from `pathgen tile` and
`pathgen embed`, keyed by `slide_id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pathgen.eval.datasets.patches import SPLITS


@dataclass(frozen=True)
class SlideRecord:
    """One slide: `slide_id` is the file stem ("tumor_001"), unique within a dataset."""

    slide_id: str
    path: Path
    label: int
    label_name: str
    split: str
    annotation_path: Path | None = None


@dataclass(frozen=True)
class SlideDataset:
    """What a slide reader returns: records in a fixed order, with the rule that split them."""

    name: str
    root: Path
    class_names: tuple[str, ...]
    records: tuple[SlideRecord, ...]
    protocol: str

    def __post_init__(self) -> None:
        ids = [record.slide_id for record in self.records]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"{self.root}: slide id {duplicates[0]!r} appears more than once (ids are file stems)")
        bad = [r for r in self.records if r.split not in SPLITS]
        if bad:
            raise ValueError(f"{bad[0].path}: split {bad[0].split!r} is not one of {', '.join(SPLITS)}")
        for name in ("train", "val"):
            counts = np.bincount(self.labels(name), minlength=len(self.class_names))
            absent = [c for c, n in zip(self.class_names, counts) if n == 0]
            if absent:
                raise ValueError(f"{self.root}: the {name} split has no slides of class(es) {', '.join(absent)}")

    def split(self, name: str) -> list[SlideRecord]:
        return [record for record in self.records if record.split == name]

    def labels(self, name: str) -> np.ndarray:
        return np.array([record.label for record in self.split(name)], dtype=np.int64)

    @property
    def report_split(self) -> str:
        return "test" if self.split("test") else "val"

    def summary(self) -> str:
        sizes = ", ".join(f"{name} {len(self.split(name))}" for name in SPLITS if self.split(name))
        return f"{self.name}: {len(self.records)} slides, {len(self.class_names)} classes; {sizes} ({self.protocol})"
