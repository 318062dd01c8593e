"""CLAM's feature layout (mahmoodlab/CLAM ``extract_features_fp.py`` → ``dataset_generic.py``).

``DIR/h5_files/<slide>.h5`` holds ``features`` (N, D) float32 and ``coords`` (N, 2) int32 level-0
corners, chunked along N as CLAM's ``save_hdf5`` writes them; ``coords`` carries the
``patch_level`` / ``patch_size`` attrs CLAM's patching step writes (level 0, the tile side in
level-0 pixels). ``DIR/pt_files/<slide>.pt`` holds the same features as one torch tensor, which
CLAM's MIL dataset reads with ``torch.load``.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from pathgen.feature_formats.bags import SlideBag, atomic_file

H5_DIR, PT_DIR = "h5_files", "pt_files"


def write_clam_h5(path: Path, features: np.ndarray, coords: np.ndarray, coords_attrs: dict) -> None:
    """One CLAM feature h5 file (written to a temporary name, then renamed)."""

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            chunks = (min(32, max(1, len(features))),)
            f.create_dataset(
                "features",
                data=features.astype(np.float32),
                maxshape=(None, features.shape[1]),
                chunks=chunks + features.shape[1:],
            )
            dset = f.create_dataset("coords", data=coords.astype(np.int32), maxshape=(None, 2), chunks=chunks + (2,))
            for key, value in coords_attrs.items():
                dset.attrs[key] = value

    atomic_file(path, write)


def write_clam(bag: SlideBag, out: Path) -> list[Path]:
    """The h5 and pt files of one slide in CLAM's layout under `out`."""
    h5_path, pt_path = out / H5_DIR / f"{bag.slide_id}.h5", out / PT_DIR / f"{bag.slide_id}.pt"
    write_clam_h5(h5_path, bag.features, bag.coords, {"patch_level": 0, "patch_size": bag.tile_size_level0})
    atomic_file(pt_path, lambda tmp: torch.save(torch.from_numpy(bag.features), tmp))
    return [h5_path, pt_path]
