"""NCT-CRC-HE-100K / CRC-VAL-HE-7K (Kather et al., 2018; zenodo record 1214456).

Layout (as unzipped; eva reads the same):
    ROOT/NCT-CRC-HE-100K/<CLASS>/*.tif   100,000 tiles, 224 px at 0.5 µm/px (Macenko-normalised)
    ROOT/CRC-VAL-HE-7K/<CLASS>/*.tif       7,180 tiles from 50 other patients
with the 9 classes ADI BACK DEB LYM MUC MUS NORM STR TUM (labels 0..8 in that order, as eva).

The publisher gives no validation split and no patient ids for the 100K set. Protocols:
- "holdout" (default): train = a seeded stratified 90 % of NCT-CRC-HE-100K, val = the other
  10 %, test = CRC-VAL-HE-7K. Validation is not patient-disjoint from train (only model
  selection sees it); the reported split is.
- "eva": train = NCT-CRC-HE-100K, val = CRC-VAL-HE-7K and no test: eva selects the checkpoint
  on CRC-VAL-HE-7K and reports on it too. Use it to compare with eva's leaderboard.
"""

from __future__ import annotations

from pathlib import Path

from pathgen.eval.datasets.files import class_folder_files, class_index, require_dir
from pathgen.eval.datasets.patches import PatchDataset, Pool, with_holdout_val

CLASS_NAMES = ("ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM")
TRAIN_FOLDER, EVAL_FOLDER = "NCT-CRC-HE-100K", "CRC-VAL-HE-7K"
MPP = 0.5
PUBLISHED = {"train": 100_000, "test": 7_180}


def _pool(folder: Path) -> Pool:
    samples = class_folder_files(folder, (".tif", ".tiff"), known=CLASS_NAMES, required=CLASS_NAMES)
    return Pool([path for path, _ in samples], class_index([name for _, name in samples], CLASS_NAMES))


def read_crc(
    root: str | Path,
    protocol: str = "holdout",
    val_fraction: float = 0.1,
    seed: int = 0,
    train_folder: str = TRAIN_FOLDER,
) -> PatchDataset:
    """CRC-100K as a PatchDataset; `train_folder` may be "NCT-CRC-HE-100K-NONORM"."""
    root = require_dir(root, "CRC")
    train, evaluation = _pool(root / train_folder), _pool(root / EVAL_FOLDER)
    if protocol == "holdout":
        train, val = with_holdout_val(train, val_fraction, seed)
        pools = {"train": train, "val": val, "test": evaluation}
        published = {"train": round(PUBLISHED["train"] * (1 - val_fraction)), "test": PUBLISHED["test"]}
        rule = f"val = stratified {val_fraction:.0%} of {train_folder} (seed {seed}), test = {EVAL_FOLDER}"
    elif protocol == "eva":
        pools = {"train": train, "val": evaluation}
        published = {"train": PUBLISHED["train"], "val": PUBLISHED["test"]}
        rule = f"eva: train = {train_folder}, val = {EVAL_FOLDER} (reported on val)"
    else:
        raise ValueError(f"CRC protocol must be 'holdout' or 'eva', got {protocol!r}")
    splits = {name: pool.split(name, CLASS_NAMES, str(root)) for name, pool in pools.items()}
    return PatchDataset("crc", root, CLASS_NAMES, splits, MPP, rule, published)
