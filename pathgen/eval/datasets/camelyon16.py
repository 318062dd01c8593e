"""Camelyon16 slide level (Bejnordi et al., 2017): metastasis or not, one label per slide.

Two layouts:
    challenge release (as eva documents it):
        ROOT/training/normal/normal_NNN.tif       159 slides
        ROOT/training/tumor/tumor_NNN.tif         111 slides
        ROOT/training/lesion_annotations/tumor_NNN.xml   (lesion_annotations.zip unzipped; optional)
        ROOT/testing/images/test_NNN.tif          130 slides
        ROOT/testing/reference.csv                no header: slide id, Tumor/Normal, then extra columns
        ROOT/testing/lesion_annotations/test_NNN.xml     (optional)
    AWS open-data copy (s3://camelyon-dataset/CAMELYON16/):
        ROOT/images/{normal,tumor,test}_NNN.tif   all slides in one flat folder
        ROOT/evaluation/reference.csv             the test labels
        ROOT/annotations/*.xml                    (optional)
ASAP XML annotations are also looked for in ROOT/annotations/ and beside the slide. Labels:
normal 0, tumor 1 (eva). Every test slide must have a reference.csv row; rows without a slide
are allowed.

Test set: 129 slides, as eva evaluates (its Camelyon16 dataset expects 129 test files). Slide
test_049 is left out, with a warning when it is present: the organisers found it to be a
duplicate of another slide and removed it from the slide- and lesion-level evaluation (noted by
the FDA DIDSR team, github.com/DIDSR/dldp, "Data Description"; the Camelyon16 page of eva's
documentation cites the same note). test_114 (not exhaustively annotated) was removed from the lesion-level
task only, so it stays in this slide-level test set.

Validation split (official train/test kept):
- "eva" (default): eva's fixed 54 validation slides, the PCam metadata split (216/54/129).
  On a partial copy it must still leave both classes in train and val.
- "stratified": a seeded stratified `val_fraction` of the training slides.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from pathgen.eval.datasets.files import read_csv_rows, require_dir, require_file
from pathgen.eval.datasets.slides import SlideDataset, SlideRecord
from pathgen.eval.datasets.stratify import stratified_holdout

CLASS_NAMES = ("normal", "tumor")
# kaiko-ai/eva, src/eva/vision/data/datasets/classification/camelyon16.py (`_val_slides`)
EVA_VAL_NORMAL = (
    10,
    13,
    16,
    17,
    19,
    20,
    25,
    30,
    31,
    32,
    52,
    56,
    57,
    67,
    76,
    79,
    85,
    95,
    98,
    99,
    101,
    102,
    105,
    106,
    109,
    129,
    132,
    137,
    142,
    143,
    148,
    152,
)
EVA_VAL_TUMOR = (1, 5, 11, 12, 13, 19, 31, 37, 43, 46, 57, 65, 69, 71, 73, 79, 80, 81, 82, 85, 97, 109)
EXCLUDED_TEST_SLIDES = {"test_049": "a duplicate slide, removed by the organisers from slide-level evaluation"}
EVA_VAL_SLIDES = frozenset([f"normal_{i:03d}" for i in EVA_VAL_NORMAL] + [f"tumor_{i:03d}" for i in EVA_VAL_TUMOR])


def _annotation(root: Path, folder: str, slide: Path) -> Path | None:
    for candidate in (root / folder / "lesion_annotations", root / "annotations", slide.parent):
        path = candidate / f"{slide.stem}.xml"
        if path.is_file():
            return path
    return None


def _slides(folder: Path, prefix: str, flat: bool = False) -> list[Path]:
    """The `<prefix>_NNN.tif` slides of a folder; any other .tif is an error (a misplaced slide).

    flat=True (the AWS layout's one images/ folder): other slides' prefixes are expected there too.
    """
    require_dir(folder, "Camelyon16")
    slides = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".tif" and not p.name.startswith("."))
    if flat:
        slides = [p for p in slides if p.stem.lower().startswith(f"{prefix}_")]
    wrong = [p for p in slides if not re.fullmatch(rf"{prefix}_\d+", p.stem)]
    if wrong:
        raise ValueError(f"{wrong[0]}: expected only {prefix}_NNN.tif slides in {folder}")
    if not slides:
        raise ValueError(f"{folder}: no {prefix}_*.tif slides")
    return slides


def read_reference(path: Path) -> dict[str, str]:
    """testing/reference.csv as {slide id: "normal" | "tumor"}; a header row is tolerated."""
    rows = read_csv_rows(require_file(path, "Camelyon16 test labels (reference.csv)"), (), header=False)
    labels: dict[str, str] = {}
    for i, row in enumerate(rows):
        slide, label = row["0"], row.get("1", "").lower()
        if i == 0 and label not in CLASS_NAMES and not re.fullmatch(r"test_\d+", slide):
            continue  # a header
        if label not in CLASS_NAMES:
            raise ValueError(f"{path}, row {i + 1}: label {row.get('1', '')!r} is not Tumor or Normal")
        if slide in labels:
            raise ValueError(f"{path}, row {i + 1}: slide {slide!r} is listed twice")
        labels[slide] = label
    return labels


def _val_ids(train: list[tuple[Path, int]], val: str, val_fraction: float, seed: int) -> set[str]:
    if val == "eva":
        return {path.stem for path, _ in train if path.stem in EVA_VAL_SLIDES}
    if val == "stratified":
        held = stratified_holdout(np.array([label for _, label in train]), val_fraction, seed)[1]
        return {train[i][0].stem for i in held}
    raise ValueError(f"Camelyon16 val must be 'eva' or 'stratified', got {val!r}")


def _layout(root: Path) -> tuple[dict[str, Path], Path, bool]:
    """({prefix: slide folder}, reference.csv path, flat?) of the challenge or the AWS layout."""
    if (root / "training").is_dir() or not (root / "images").is_dir():
        folders = {
            "normal": root / "training" / "normal",
            "tumor": root / "training" / "tumor",
            "test": root / "testing" / "images",
        }
        return folders, root / "testing" / "reference.csv", False
    return dict.fromkeys(("normal", "tumor", "test"), root / "images"), root / "evaluation" / "reference.csv", True


def _test_slides(folder: Path, reference_path: Path, flat: bool) -> list[tuple[Path, int]]:
    """Labelled test slides; `EXCLUDED_TEST_SLIDES` are left out with a warning naming them."""
    reference = read_reference(reference_path)
    test = []
    for path in _slides(folder, "test", flat):
        if path.stem in EXCLUDED_TEST_SLIDES:
            warnings.warn(
                f"{path}: left out of the Camelyon16 test set, {EXCLUDED_TEST_SLIDES[path.stem]} "
                "(as eva: 129 test slides)",
                stacklevel=3,
            )
            continue
        if path.stem not in reference:
            raise ValueError(f"{reference_path}: no label row for test slide {path.stem}")
        test.append((path, CLASS_NAMES.index(reference[path.stem])))
    return test


def read_camelyon16(root: str | Path, val: str = "eva", val_fraction: float = 0.2, seed: int = 0) -> SlideDataset:
    """The Camelyon16 slides, labels, splits and lesion annotations as a SlideDataset (either layout)."""
    root = require_dir(root, "Camelyon16")
    folders, reference_path, flat = _layout(root)
    train = [(p, 0) for p in _slides(folders["normal"], "normal", flat)]
    train += [(p, 1) for p in _slides(folders["tumor"], "tumor", flat)]
    test = _test_slides(folders["test"], reference_path, flat)
    val_ids = _val_ids(train, val, val_fraction, seed)
    records = [
        SlideRecord(
            p.stem,
            p,
            label,
            CLASS_NAMES[label],
            "val" if p.stem in val_ids else "train",
            _annotation(root, "training", p),
        )
        for p, label in train
    ]
    records += [
        SlideRecord(p.stem, p, label, CLASS_NAMES[label], "test", _annotation(root, "testing", p)) for p, label in test
    ]
    rule = (
        "official train/test; val = eva's 54 PCam-metadata slides"
        if val == "eva"
        else f"official train/test; val = stratified {val_fraction:.0%} of training slides (seed {seed})"
    )
    rule += "; test without test_049 (duplicate)"
    try:
        return SlideDataset("camelyon16", root, CLASS_NAMES, tuple(records), rule)
    except ValueError as error:
        if val != "eva":
            raise
        hint = "with eva's fixed validation slides (a partial copy?); pass val='stratified'"
        raise ValueError(f"{error} {hint}") from None
