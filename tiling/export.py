"""Export tile coordinates to the CLAM / TRIDENT h5 layout, so existing tools can reuse a tiling.

Each slide gets ``<out>/<slide_id>.h5`` with a ``coords`` dataset (int64, (N, 2), level-0 x, y)
whose attrs follow CLAM: ``patch_level`` is the pyramid level pathgen read and ``patch_size`` the
tile side *in that level's pixels* (CLAM reads ``read_region(coord, patch_level, (patch_size,)*2)``);
TRIDENT's ``patch_size_level0`` and the physical resolutions are recorded beside them. Tiles that
pathgen resampled to a target mpp between levels are reproduced by resizing the CLAM read to
``target_patch_size``.
"""

from __future__ import annotations

from pathlib import Path

import h5py

from tiling.store import TileStore, open_tile_folder


def clam_attrs(store: TileStore) -> dict:
    """The coords attrs CLAM and TRIDENT expect, derived from the store's own attrs."""
    tiling, slide = store.attrs["tiling"], store.attrs["slide"]
    level = int(tiling["read_level"])
    downsample = float(slide["level_downsamples"][level])
    return {
        "patch_level": level,
        "patch_size": int(round(tiling["tile_size_level0"] / downsample)),
        "patch_size_level0": int(round(tiling["tile_size_level0"])),
        "target_patch_size": int(tiling["tile_size_px"]),
        "overlap": int(tiling["overlap_px"]),
        "downsample": [downsample, downsample],
        "level_dim": [int(slide["level0_width"] / downsample), int(slide["level0_height"] / downsample)],
        "level0_mpp": float(slide["level0_mpp"]),
        "target_mpp": float(tiling["target_mpp"]),
        "name": store.slide_id,
    }


def export_store_h5(store: TileStore, out_path: Path) -> Path:
    """Write one slide's coordinates as a CLAM/TRIDENT-style h5 file."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".h5.tmp")
    with h5py.File(tmp, "w") as handle:
        coords = handle.create_dataset("coords", data=store.coords)
        coords.attrs.update(clam_attrs(store))
    tmp.replace(out_path)
    return out_path


def export_folder_h5(tile_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Export every complete store of a `pathgen tile` output folder; returns the files written."""
    folder = open_tile_folder(tile_dir)
    return [export_store_h5(store, Path(out_dir) / f"{store.slide_id}.h5") for store in folder.stores]
