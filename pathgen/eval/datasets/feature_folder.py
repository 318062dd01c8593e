"""Slide bags from feature folders other tools wrote: CLAM's ``h5_files/`` and TRIDENT's ``features_<encoder>/``.

A lab that already extracted features benchmarks them with ``bench --encoder NAME=features:DIR``:
DIR is a CLAM feature folder (``DIR/h5_files/<slide>.h5``), a TRIDENT job folder holding exactly
one ``features_<encoder>/`` folder, or such a folder itself. Each h5 file holds ``features``
(N, D) and ``coords`` (N, 2), as both tools write them; files are opened read-only with h5py
(no pickles are read).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

PREFIX = "features:"


def feature_h5_dir(folder: str | Path) -> Path:
    """The folder of per-slide h5 files inside a CLAM or TRIDENT feature folder."""
    folder = Path(folder)
    if (folder / "h5_files").is_dir():
        return folder / "h5_files"
    trident = sorted(p for p in folder.glob("features_*") if p.is_dir())
    if len(trident) == 1:
        return trident[0]
    if len(trident) > 1:
        raise ValueError(
            f"{folder}: several TRIDENT feature folders ({', '.join(p.name for p in trident)}); pass one of them"
        )
    if any(folder.glob("*.h5")):
        return folder
    raise ValueError(f"{folder}: not a CLAM (h5_files/) or TRIDENT (features_<encoder>/) feature folder")


def read_bag(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) float32 features and (N, 2) int64 coords of one slide's h5 file."""
    try:
        with h5py.File(path, "r") as f:
            features, coords = np.asarray(f["features"][:], np.float32), np.asarray(f["coords"][:], np.int64)
    except (OSError, KeyError) as err:
        raise ValueError(f"{path}: not a feature h5 file with 'features' and 'coords' ({err})") from err
    if features.ndim != 2 or coords.shape != (len(features), 2):
        raise ValueError(f"{path}: features must be (N, D) and coords (N, 2), got {features.shape} and {coords.shape}")
    return features, coords


def read_feature_bags(folder: str | Path, slide_ids: list[str]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Bags {slide_id: (N, D)} and coords {slide_id: (N, 2)} of the given slides; a missing slide is an error."""
    h5_dir = feature_h5_dir(folder)
    missing = [s for s in slide_ids if not (h5_dir / f"{s}.h5").is_file()]
    if missing:
        raise ValueError(f"{h5_dir}: no feature file for slide(s) {', '.join(missing[:5])}")
    pairs = {slide: read_bag(h5_dir / f"{slide}.h5") for slide in slide_ids}
    dims = {bag.shape[1] for bag, _ in pairs.values()}
    if len(dims) > 1:
        raise ValueError(f"{h5_dir}: slides have features of different sizes {sorted(dims)}")
    return {s: p[0] for s, p in pairs.items()}, {s: p[1] for s, p in pairs.items()}
