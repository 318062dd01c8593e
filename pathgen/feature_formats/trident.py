"""TRIDENT's patch-feature layout (mahmoodlab/TRIDENT ``WSI.extract_features`` / ``IO.save_h5``).

``DIR/features_<encoder>/<slide>.h5`` holds ``features`` (N, D) float32 with attrs ``name``,
``savetodir``, ``encoder``, and ``coords`` (N, 2) int64 level-0 corners with the coordinate attrs
TRIDENT's patcher writes: ``patch_size`` (at the target magnification), ``patch_size_level0``,
``level0_magnification``, ``target_magnification``, ``overlap``, ``name``, ``savetodir``,
``level0_width``, ``level0_height``. Magnifications are 10 / (µm per pixel).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from pathgen.feature_formats.bags import SlideBag, atomic_file


def trident_dir(out: Path, encoder: str) -> Path:
    """The folder TRIDENT names after the patch encoder."""
    return out / f"features_{encoder}"


def coords_attrs(bag: SlideBag, savetodir: Path) -> dict:
    """TRIDENT's coordinate attrs for one slide, from the store's slide and tiling attrs."""
    slide, tiling = bag.attrs.get("slide", {}), bag.attrs["tiling"]
    attrs = {
        "patch_size": bag.tile_size_px,
        "patch_size_level0": bag.tile_size_level0,
        "level0_magnification": bag.magnification(slide.get("level0_mpp")),
        "target_magnification": bag.magnification(tiling.get("target_mpp")),
        "overlap": int(tiling.get("overlap_px", 0)),
        "name": bag.slide_id,
        "savetodir": str(savetodir),
        "level0_width": slide.get("level0_width"),
        "level0_height": slide.get("level0_height"),
    }
    return {k: v for k, v in attrs.items() if v is not None}


def write_trident(bag: SlideBag, out: Path, encoder: str) -> list[Path]:
    """One slide's feature h5 in TRIDENT's layout under `out`."""
    folder = trident_dir(out, encoder)
    path = folder / f"{bag.slide_id}.h5"

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            feats = f.create_dataset("features", data=bag.features.astype(np.float32))
            feats.attrs.update({"name": bag.slide_id, "savetodir": str(folder), "encoder": encoder})
            coords = f.create_dataset("coords", data=bag.coords.astype(np.int64))
            coords.attrs.update(coords_attrs(bag, folder))

    atomic_file(path, write)
    return [path]
