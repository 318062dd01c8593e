"""Export tile coordinates to the CLAM / TRIDENT h5 layout, so existing tools can reuse a tiling.

Each slide gets ``<out>/<slide_id>.h5`` with a ``coords`` dataset (int64, (N, 2), level-0 x, y of
each tile's top-left corner). Its attrs serve both readers (README "export-coords" lists them all):

* TRIDENT (``read_coords`` → ``create_patcher(patch_size, src_mag=level0_magnification,
  dst_mag=target_magnification)``): ``patch_size`` is the tile side in target-magnification
  pixels and the two magnifications are written as 10 / mpp (the 0.25 µm/px ≈ 40× convention),
  so their ratio is exactly level-0 px per target px; ``level0_width`` / ``level0_height``.
* CLAM (``read_region(coord, patch_level, (patch_size,) * 2)``): ``patch_level`` is the level
  pathgen read; when that level's resolution is the target's (the usual case: 0.5 µm/px from a
  0.25 µm/px scan's level 1), ``patch_size`` is also the side in that level's pixels. Otherwise
  the side in level pixels is ``patch_size_level`` and CLAM's read must be resized to
  ``patch_size`` (its ``target_patch_size``).
* ``level_dim`` is the read level's real (width, height), ``downsample`` its downsample.
"""

from __future__ import annotations

from pathlib import Path

import h5py

from tiling.store import TileStore, open_tile_folder

MAGNIFICATION_UM = 10.0  # magnification × µm/px: 40× ≈ 0.25 µm/px, 20× ≈ 0.5 µm/px (TRIDENT's, CLAM's convention)


def clam_attrs(store: TileStore) -> dict:
    """The coords attrs CLAM and TRIDENT read, derived from the store's own attrs."""
    tiling, slide = store.attrs["tiling"], store.attrs["slide"]
    level = int(tiling["read_level"])
    downsample = float(slide["level_downsamples"][level])
    level_w, level_h = _level_dimensions(slide, level)
    return {
        "patch_level": level,
        "patch_size": int(tiling["tile_size_px"]),
        "patch_size_level": int(round(tiling["tile_size_level0"] * level_w / slide["level0_width"])),
        "patch_size_level0": int(round(tiling["tile_size_level0"])),
        "target_patch_size": int(tiling["tile_size_px"]),
        "level0_magnification": MAGNIFICATION_UM / float(slide["level0_mpp"]),
        "target_magnification": MAGNIFICATION_UM / float(tiling["target_mpp"]),
        "level0_width": int(slide["level0_width"]),
        "level0_height": int(slide["level0_height"]),
        "overlap": int(tiling["overlap_px"]),
        "downsample": [downsample, downsample],
        "level_dim": [level_w, level_h],
        "level0_mpp": float(slide["level0_mpp"]),
        "target_mpp": float(tiling["target_mpp"]),
        "mpp_source": str(slide.get("mpp_source", "")),
        "name": store.slide_id,
    }


def _level_dimensions(slide: dict, level: int) -> tuple[int, int]:
    """The level's real size; stores written before it was recorded get level 0 / downsample."""
    if "level_dimensions" in slide:
        width, height = slide["level_dimensions"][level]
        return int(width), int(height)
    downsample = float(slide["level_downsamples"][level])
    return int(round(slide["level0_width"] / downsample)), int(round(slide["level0_height"] / downsample))


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
