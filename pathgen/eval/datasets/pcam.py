"""PatchCamelyon (Veeling et al., 2018) from its official HDF5 files.

Layout (zenodo record 2546921, unzipped; eva reads the same files):
    ROOT/camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5
x: dataset "x", uint8 (N, 96, 96, 3), patches of level 2 of 0.24 µm/px scans (≈ 0.97 µm/px);
y: dataset "y", (N, 1, 1, 1), 1 when the centre 32 × 32 px holds at least one tumor pixel.
Splits as published: train 262,144, valid (our "val") 32,768, test 32,768.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pathgen.eval.datasets.files import require_dir, require_file
from pathgen.eval.datasets.patches import H5PatchSplit, PatchDataset

CLASS_NAMES = ("no_tumor", "tumor")
PATCH_SHAPE = (96, 96, 3)
FILE_SPLITS = {"train": "train", "val": "valid", "test": "test"}
PUBLISHED_SIZES = {"train": 262_144, "val": 32_768, "test": 32_768}
MPP = 0.972  # level 2 of 0.243 µm/px scans


def pcam_file(root: Path, split: str, part: str) -> Path:
    """The official file name of one split's images (part "x") or labels (part "y")."""
    return Path(root) / f"camelyonpatch_level_2_split_{FILE_SPLITS[split]}_{part}.h5"


def _open_dataset(path: Path, key: str):
    import h5py

    require_file(path, "PCam file")
    try:
        file = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path}: not a readable HDF5 file ({error})") from error
    if key not in file:
        keys = list(file.keys())
        file.close()
        raise ValueError(f"{path}: no dataset {key!r} (found {keys})")
    return file, file[key]


def _read_split(root: Path, split: str) -> H5PatchSplit:
    x_path, y_path = pcam_file(root, split, "x"), pcam_file(root, split, "y")
    x_file, x = _open_dataset(x_path, "x")
    with x_file:
        if x.ndim != 4 or tuple(x.shape[1:]) != PATCH_SHAPE or x.dtype != np.uint8:
            raise ValueError(f"{x_path}: dataset 'x' is {x.dtype} {tuple(x.shape)}, expected uint8 (N, 96, 96, 3)")
        n_images = x.shape[0]
    y_file, y = _open_dataset(y_path, "y")
    with y_file:
        if y.ndim < 1 or any(size != 1 for size in y.shape[1:]):
            raise ValueError(f"{y_path}: dataset 'y' has shape {tuple(y.shape)}, expected (N, 1, 1, 1)")
        if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
            raise ValueError(f"{y_path}: dataset 'y' has dtype {y.dtype}, expected integer 0/1 labels")
        labels = np.asarray(y[...]).reshape(-1).astype(np.int64)
    if len(labels) != n_images:
        raise ValueError(f"{y_path}: {len(labels)} labels but {x_path.name} has {n_images} images")
    bad = np.setdiff1d(np.unique(labels), [0, 1])
    if bad.size:
        raise ValueError(f"{y_path}: labels must be 0 or 1, found {bad[:5].tolist()}")
    return H5PatchSplit(split, x_path, "x", labels, CLASS_NAMES)


def read_pcam(root: str | Path) -> PatchDataset:
    """PCam's official train / valid / test HDF5 files as a PatchDataset (images read lazily)."""
    root = require_dir(root, "PCam")
    splits = {split: _read_split(root, split) for split in FILE_SPLITS}
    return PatchDataset("pcam", root, CLASS_NAMES, splits, MPP, "official PCam splits", PUBLISHED_SIZES)
