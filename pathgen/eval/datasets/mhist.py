"""MHIST (Wei et al., 2021): colorectal polyps, hyperplastic (HP) vs sessile serrated (SSA).

Layout (BMIRDS release; eva reads the same):
    ROOT/annotations.csv   "Image Name", "Majority Vote Label" (HP/SSA),
                           "Number of Annotators who Selected SSA (Out of 7)", "Partition" (train/test)
    ROOT/images/MHIST_*.png  224 × 224 px
Published: 2,175 train, 977 test. Labels: HP = 0, SSA = 1 (SSA, the precancerous lesion, is
the positive class; eva numbers them the other way, which leaves balanced accuracy, AUROC and
macro-F1 unchanged). The vote count is checked against the majority label and kept in
`split.meta["ssa_votes"]`.

Protocols:
- "holdout" (default): val = a seeded stratified 10 % of the train partition, test = the test partition.
- "eva": train = the train partition, val = the test partition, no test (eva selects and reports on it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pathgen.eval.datasets.files import (
    class_index,
    read_csv_rows,
    require_dir,
    require_file,
)
from pathgen.eval.datasets.patches import PatchDataset, Pool, with_holdout_val

CLASS_NAMES = ("HP", "SSA")
NAME, LABEL, VOTES, PARTITION = (
    "Image Name",
    "Majority Vote Label",
    "Number of Annotators who Selected SSA (Out of 7)",
    "Partition",
)
PUBLISHED = {"train": 2_175, "test": 977}


def _row_sample(row: dict[str, str], images: Path, where: str) -> tuple[Path, str, int, str]:
    name, label, votes, partition = row[NAME], row[LABEL], row[VOTES], row[PARTITION]
    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"{where}: image name {name!r} must be a plain file name inside images/")
    if label not in CLASS_NAMES:
        raise ValueError(f"{where}: label {label!r} is not HP or SSA")
    if partition not in ("train", "test"):
        raise ValueError(f"{where}: partition {partition!r} is not train or test")
    if not votes.isdigit() or int(votes) > 7:
        raise ValueError(f"{where}: SSA vote count {votes!r} is not an integer 0..7")
    if (int(votes) >= 4) != (label == "SSA"):
        raise ValueError(f"{where}: {votes} of 7 votes for SSA contradict the majority label {label}")
    path = require_file(images / name, f"image listed in {where}")
    return path, label, int(votes), partition


def read_mhist(root: str | Path, protocol: str = "holdout", val_fraction: float = 0.1, seed: int = 0) -> PatchDataset:
    """MHIST from annotations.csv and images/ as a PatchDataset."""
    root = require_dir(root, "MHIST")
    csv_path = require_file(root / "annotations.csv", "MHIST annotations.csv")
    images = require_dir(root / "images", "MHIST images")
    rows = read_csv_rows(csv_path, (NAME, LABEL, VOTES, PARTITION))
    samples = [_row_sample(row, images, f"{csv_path}, row {i + 2}") for i, row in enumerate(rows)]
    names = [path.name for path, *_ in samples]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"{csv_path}: image {duplicate!r} is listed more than once")
    pools = {}
    for partition in ("train", "test"):
        chosen = [s for s in samples if s[3] == partition]
        if not chosen:
            raise ValueError(f"{csv_path}: no rows with Partition = {partition}")
        pools[partition] = Pool(
            [s[0] for s in chosen],
            class_index([s[1] for s in chosen], CLASS_NAMES),
            {"ssa_votes": np.array([s[2] for s in chosen], dtype=np.int64)},
        )
    if protocol == "holdout":
        train, val = with_holdout_val(pools["train"], val_fraction, seed)
        pools = {"train": train, "val": val, "test": pools["test"]}
        rule = f"val = stratified {val_fraction:.0%} of the train partition (seed {seed}), test = test partition"
    elif protocol == "eva":
        pools = {"train": pools["train"], "val": pools["test"]}
        rule = "eva: train = train partition, val = test partition (reported on val)"
    else:
        raise ValueError(f"MHIST protocol must be 'holdout' or 'eva', got {protocol!r}")
    splits = {name: pool.split(name, CLASS_NAMES, str(csv_path)) for name, pool in pools.items()}
    published = {"test": PUBLISHED["test"]} if protocol == "holdout" else {"train": 2_175, "val": 977}
    return PatchDataset("mhist", root, CLASS_NAMES, splits, None, rule, published)
