"""export-coords: the h5 reads as TRIDENT's and CLAM's own readers read it (the reading re-implemented here).

TRIDENT (mahmoodlab/TRIDENT, trident/IO.py `read_coords` + WSI `_get_patcher`): the attrs of
`coords` must hold patch_size, level0_magnification and target_magnification, else it falls back
to its CLAM reader; its patcher reads round(patch_size · level0_mag / target_mag) level-0 px per
patch and resizes them to patch_size. CLAM (mahmoodlab/CLAM, datasets/dataset_h5.py
`Whole_Slide_Bag_FP`): read_region(coord, patch_level, (patch_size, patch_size)).
"""

from __future__ import annotations

import h5py
import numpy as np
from PIL import Image

from pathgen.cli import main
from tiling.reader import open_slide
from tiling.store import open_store

TRIDENT_REQUIRED = ("patch_size", "level0_magnification", "target_magnification")


def _export(synthetic_dir, tmp_path, mpp: float):
    out = tmp_path / "out"
    assert main(["tile", str(synthetic_dir), "--out", str(out), "--mpp", str(mpp), "--no-progress"]) in (0, 1)
    assert main(["export-coords", str(out), "--out", str(tmp_path / "h5")]) == 0
    h5_path = tmp_path / "h5" / "normal_b.h5"
    return h5_path, open_store(out / "tiles.zarr" / "normal_b")


def trident_read(h5_path):
    """TRIDENT's reading: attrs dict + coords; KeyError where it would take its legacy fallback."""
    with h5py.File(h5_path, "r") as handle:
        attrs, coords = dict(handle["coords"].attrs), handle["coords"][:]
    if any(attrs.get(key) is None for key in TRIDENT_REQUIRED):
        raise KeyError("missing attributes: TRIDENT would fall back to its legacy reader")
    return attrs, coords


def test_trident_reads_the_export_without_its_legacy_fallback(synthetic_dir, tmp_path):
    h5_path, store = _export(synthetic_dir, tmp_path, 0.6)
    attrs, coords = trident_read(h5_path)
    np.testing.assert_array_equal(coords, store.coords)
    slide = open_slide(store.attrs["slide"]["path"])
    assert attrs["patch_size"] == 224  # target-magnification pixels
    assert (attrs["level0_width"], attrs["level0_height"]) == slide.dimensions
    src_px = round(attrs["patch_size"] * attrs["level0_magnification"] / attrs["target_magnification"])
    assert src_px == round(224 * 0.6 / 0.25)  # level-0 px per patch, as TRIDENT's patcher computes it
    for index in (0, len(store) // 2):
        x, y = (int(v) for v in coords[index])
        patch = Image.fromarray(slide.read_rgb((x, y), 0, (src_px, src_px))).resize(
            (224, 224), Image.Resampling.LANCZOS
        )
        assert np.abs(np.asarray(patch).astype(int) - store[index]).mean() < 3  # same field of view


def test_clam_reads_the_export_as_pathgen_read_it(synthetic_dir, tmp_path):
    h5_path, store = _export(synthetic_dir, tmp_path, 0.5)
    with h5py.File(h5_path, "r") as handle:
        dset = handle["coords"]
        patch_level, patch_size = int(dset.attrs["patch_level"]), int(dset.attrs["patch_size"])
        coords, attrs = dset[:], dict(dset.attrs)
    slide = open_slide(store.attrs["slide"]["path"])
    assert patch_level == 1 and patch_size == 224 == attrs["patch_size_level"]
    assert list(attrs["level_dim"]) == list(slide.level_dimensions[1])  # the level's real size
    assert attrs["mpp_source"] == "openslide.mpp"
    for index in (0, len(store) - 1):
        x, y = (int(v) for v in coords[index])
        np.testing.assert_array_equal(slide.read_rgb((x, y), patch_level, (patch_size, patch_size)), store[index])
