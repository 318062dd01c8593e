"""BACH (ICIAR 2018 grand challenge), part A: 400 labelled microscopy images, 4 classes.

Layout (zenodo record 3632035): ROOT/ICIAR2018_BACH_Challenge/Photos/{Benign,InSitu,Invasive,Normal}/*.tif,
2048 × 1536 px at 0.42 µm/px, 100 per class. ROOT may also be the Photos folder or any folder
holding the four class folders. Labels follow eva: Benign 0, InSitu 1, Invasive 2, Normal 3.

The official test images are unlabelled, so the evaluation split comes from the 400:
- split_rule "eva" (default): eva's fixed, patient-aware index ranges over the 400 images in
  sorted class-then-file order (268 train-pool, 132 eval). Needs the complete official set.
- split_rule "stratified": a seeded stratified 33 % (eva's share) as the eval split, for
  subsets and synthetic copies; not patient-aware (BACH ships no patient ids).
Protocols on top: "holdout" (default) keeps the eval split as test and takes a stratified 10 %
of the train pool as val; "eva" makes the eval split val (eva selects and reports on it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pathgen.eval.datasets.files import class_folder_files, class_index, require_dir
from pathgen.eval.datasets.patches import PatchDataset, Pool, with_holdout_val
from pathgen.eval.datasets.stratify import stratified_holdout

CLASS_NAMES = ("Benign", "InSitu", "Invasive", "Normal")
MPP = 0.42
# eva (kaiko-ai/eva, src/eva/vision/data/datasets/classification/bach.py): [start, stop) ranges
EVA_EVAL_RANGES = ((41, 59), (60, 90), (139, 169), (240, 258), (260, 273), (345, 368))
EVAL_FRACTION = 132 / 400


def bach_photos_folder(root: Path) -> Path:
    """The folder holding the class folders: ROOT, ROOT/Photos or ROOT/ICIAR2018_BACH_Challenge/Photos."""
    for folder in (root, root / "Photos", root / "ICIAR2018_BACH_Challenge" / "Photos"):
        if any((folder / name).is_dir() for name in CLASS_NAMES):
            return folder
    raise ValueError(
        f"{root}: no BACH class folders ({', '.join(CLASS_NAMES)}) here, in Photos/ "
        "or in ICIAR2018_BACH_Challenge/Photos/"
    )


def _eval_indices(labels: np.ndarray, split_rule: str, seed: int, folder: Path) -> np.ndarray:
    if split_rule == "stratified":
        return stratified_holdout(labels, EVAL_FRACTION, seed)[1]
    if split_rule != "eva":
        raise ValueError(f"BACH split_rule must be 'eva' or 'stratified', got {split_rule!r}")
    counts = np.bincount(labels, minlength=len(CLASS_NAMES)).tolist()
    if counts != [100] * len(CLASS_NAMES):
        raise ValueError(
            f"{folder}: eva's fixed BACH split needs the 400 official images (100 per class), "
            f"found {dict(zip(CLASS_NAMES, counts))}; pass split_rule='stratified'"
        )
    return np.concatenate([np.arange(start, stop) for start, stop in EVA_EVAL_RANGES])


def read_bach(
    root: str | Path, protocol: str = "holdout", split_rule: str = "eva", val_fraction: float = 0.1, seed: int = 0
) -> PatchDataset:
    """BACH's labelled microscopy images as a PatchDataset."""
    folder = bach_photos_folder(require_dir(root, "BACH"))
    samples = class_folder_files(folder, (".tif", ".tiff"), known=CLASS_NAMES, required=CLASS_NAMES)
    pool = Pool([path for path, _ in samples], class_index([name for _, name in samples], CLASS_NAMES))
    eval_idx = _eval_indices(pool.labels, split_rule, seed, folder)
    train, evaluation = pool.take(np.setdiff1d(np.arange(len(pool.labels)), eval_idx)), pool.take(eval_idx)
    base = "eva's patient-aware index ranges" if split_rule == "eva" else f"stratified 33% (seed {seed})"
    if protocol == "holdout":
        train, val = with_holdout_val(train, val_fraction, seed)
        pools = {"train": train, "val": val, "test": evaluation}
        rule = f"test = {base}, val = stratified {val_fraction:.0%} of the rest (seed {seed})"
    elif protocol == "eva":
        pools = {"train": train, "val": evaluation}
        rule = f"eva: val = {base} (reported on val)"
    else:
        raise ValueError(f"BACH protocol must be 'holdout' or 'eva', got {protocol!r}")
    splits = {name: p.split(name, CLASS_NAMES, str(folder)) for name, p in pools.items()}
    published = {"val" if protocol == "eva" else "test": 132} if split_rule == "eva" else {}
    return PatchDataset("bach", Path(root), CLASS_NAMES, splits, MPP, rule, published)
