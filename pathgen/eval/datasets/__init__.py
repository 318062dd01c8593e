"""Readers for public pathology benchmarks in their published on-disk formats; nothing is downloaded.

Each reader takes the dataset's root folder (or CSV file) plus options and returns either a
`PatchDataset` (patch classification: a lazily read `PatchSplit` per split) or a `SlideDataset`
(slide level: `SlideRecord`s with path, label, split and annotation). Every reader checks what it
finds and raises ValueError with one line naming the file and the problem.

    from pathgen.eval.datasets import read_dataset
    pcam = read_dataset("pcam", "/data/pcam")
    image, label = pcam.split("train")[0]
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from pathgen.eval.datasets.bach import read_bach
from pathgen.eval.datasets.camelyon16 import read_camelyon16
from pathgen.eval.datasets.crc import read_crc
from pathgen.eval.datasets.image_csv import read_image_csv
from pathgen.eval.datasets.image_folder import read_image_folder
from pathgen.eval.datasets.mhist import read_mhist
from pathgen.eval.datasets.patches import (
    FilePatchSplit,
    H5PatchSplit,
    PatchDataset,
    PatchSplit,
)
from pathgen.eval.datasets.pcam import read_pcam
from pathgen.eval.datasets.slide_csv import read_slide_csv
from pathgen.eval.datasets.slides import SlideDataset, SlideRecord

DATASETS: dict[str, Callable[..., PatchDataset | SlideDataset]] = {
    "pcam": read_pcam,
    "crc": read_crc,
    "mhist": read_mhist,
    "bach": read_bach,
    "image_folder": read_image_folder,
    "image_csv": read_image_csv,
    "camelyon16": read_camelyon16,
    "slide_csv": read_slide_csv,
}
SLIDE_DATASETS = frozenset({"camelyon16", "slide_csv"})


def check_reader_options(name: str, options: dict) -> None:
    """ValueError naming the dataset and option unless reader `name` exists and takes every option."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    parameters = inspect.signature(DATASETS[name]).parameters
    takes = [
        p
        for p in list(parameters)[1:]
        if parameters[p].kind is inspect.Parameter.KEYWORD_ONLY
        or parameters[p].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise ValueError(
            f"options.{unknown[0]}: the {name} reader takes no such option (it takes: {', '.join(takes) or 'none'})"
        )


def read_dataset(name: str, root: str | Path, **options) -> PatchDataset | SlideDataset:
    """Read dataset `name` from `root` with the reader's keyword `options`."""
    check_reader_options(name, options)
    return DATASETS[name](root, **options)


__all__ = [
    "DATASETS",
    "SLIDE_DATASETS",
    "FilePatchSplit",
    "H5PatchSplit",
    "PatchDataset",
    "PatchSplit",
    "SlideDataset",
    "SlideRecord",
    "read_bach",
    "read_camelyon16",
    "read_crc",
    "read_dataset",
    "read_image_csv",
    "read_image_folder",
    "read_mhist",
    "read_pcam",
    "read_slide_csv",
]
