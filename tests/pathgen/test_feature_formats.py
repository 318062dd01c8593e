"""Features out and in: `pathgen export-features` writes CLAM, TRIDENT and eva layouts, each read back here the way
that tool's own dataset code reads it (re-implemented, not imported), and slide-level bench reads CLAM / TRIDENT
folders back as bags."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
import torch

from pathgen.cli import main
from pathgen.eval.datasets.feature_folder import read_feature_bags
from pathgen.eval.features import FrozenEncoder, slide_features
from pathgen.models.embeddings import read_embeddings
from tiling.store import TileStore, list_store_paths

NAME = "enc"


@pytest.fixture(scope="module")
def embedded(tiny_tiles, tiny_encoder, tmp_path_factory) -> Path:
    """A private copy of the tiny tile folder, embedded with the tiny encoder under NAME."""
    tiles = tmp_path_factory.mktemp("export_features") / "tiles"
    shutil.copytree(tiny_tiles, tiles)
    assert main(["embed", str(tiny_encoder), str(tiles), "--name", NAME, "--workers", "0", "--no-progress"]) == 0
    return tiles


def _truth(tiles: Path) -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    stores = [TileStore(p) for p in list_store_paths(tiles)]
    return {s.slide_id: (read_embeddings(s.path, NAME), np.asarray(s.coords), dict(s.attrs)) for s in stores}


@pytest.fixture(scope="module")
def labels_csv(embedded, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("labels") / "labels.csv"
    slides = sorted(_truth(embedded))
    rows = ["slide_id,label,split"] + [f"{s},{i % 2},{'train' if i == 0 else 'test'}" for i, s in enumerate(slides)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_clam_layout_reads_as_clams_mil_dataset_reads_it(embedded, labels_csv, tmp_path):
    out = tmp_path / "clam"
    assert (
        main(
            [
                "export-features",
                str(embedded),
                "--embeddings",
                NAME,
                "--format",
                "clam",
                "--out",
                str(out),
                "--labels",
                str(labels_csv),
            ]
        )
        == 0
    )
    for slide, (features, coords, attrs) in _truth(embedded).items():
        with h5py.File(out / "h5_files" / f"{slide}.h5", "r") as f:  # Generic_MIL_Dataset with use_h5
            h5_features, h5_coords = f["features"][:], f["coords"][:]
            assert f["coords"].attrs["patch_level"] == 0
            assert f["coords"].attrs["patch_size"] == round(attrs["tiling"]["tile_size_level0"])
        assert h5_features.dtype == np.float32 and h5_coords.dtype == np.int32
        np.testing.assert_array_equal(h5_features, features)
        np.testing.assert_array_equal(h5_coords, coords)
        pt = torch.load(out / "pt_files" / f"{slide}.pt")  # Generic_MIL_Dataset without h5
        np.testing.assert_array_equal(pt.numpy(), features)
    with open(out / "slide_labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["slide_id"] for r in rows] == sorted(_truth(embedded)) and {"case_id", "label"} <= set(rows[0])


def test_trident_layout_has_its_datasets_and_attrs(embedded, tmp_path):
    out = tmp_path / "trident"
    assert (
        main(
            [
                "export-features",
                str(embedded),
                "--embeddings",
                NAME,
                "--format",
                "trident",
                "--out",
                str(out),
                "--encoder-name",
                "tiny",
            ]
        )
        == 0
    )
    for slide, (features, coords, attrs) in _truth(embedded).items():
        with h5py.File(out / "features_tiny" / f"{slide}.h5", "r") as f:
            coords_attrs = dict(f["coords"].attrs)  # TRIDENT's read_coords
            np.testing.assert_array_equal(f["features"][:], features)
            np.testing.assert_array_equal(f["coords"][:], coords)
            assert f["features"].attrs["encoder"] == "tiny" and f["features"].attrs["name"] == slide
        assert coords_attrs["patch_size"] == attrs["tiling"]["tile_size_px"]
        assert coords_attrs["patch_size_level0"] == round(attrs["tiling"]["tile_size_level0"])
        assert coords_attrs["target_magnification"] == pytest.approx(10.0 / attrs["tiling"]["target_mpp"])
        assert coords_attrs["level0_width"] == attrs["slide"]["level0_width"]
        assert {"level0_magnification", "overlap", "savetodir"} <= set(coords_attrs)


def test_eva_manifest_and_pt_files_read_as_evas_mil_dataset_reads_them(embedded, labels_csv, tmp_path):
    out = tmp_path / "eva"
    assert (
        main(
            [
                "export-features",
                str(embedded),
                "--embeddings",
                NAME,
                "--format",
                "eva",
                "--out",
                str(out),
                "--labels",
                str(labels_csv),
            ]
        )
        == 0
    )
    with open(out / "manifest.csv", newline="") as f:
        manifest = list(csv.DictReader(f))
    assert list(manifest[0])[:4] == ["origin", "embeddings", "target", "split"]
    truth = _truth(embedded)
    train = [row for row in manifest if row["split"] == "train"]  # eva filters the split column
    assert len(train) == 1
    for row in manifest:  # MultiEmbeddingsClassificationDataset: group by wsi_id, load and concatenate
        paths = [r["embeddings"] for r in manifest if r["wsi_id"] == row["wsi_id"]]
        bag = torch.cat([torch.load(out / p, map_location="cpu") for p in paths])
        np.testing.assert_array_equal(bag.numpy(), truth[row["wsi_id"]][0])
        assert int(row["target"]) in (0, 1)


@pytest.mark.parametrize("fmt", ["clam", "trident"])
def test_slide_bench_reads_clam_and_trident_folders_as_bags(embedded, tmp_path, fmt):
    out = tmp_path / fmt
    assert main(["export-features", str(embedded), "--embeddings", NAME, "--format", fmt, "--out", str(out)]) == 0
    truth = _truth(embedded)
    encoder = FrozenEncoder(f"theirs=features:{out}", tmp_path / "cache")
    assert encoder.name == "theirs"
    dataset = SimpleNamespace(records=[SimpleNamespace(slide_id=s) for s in truth])
    bags, coords = slide_features(encoder, dataset, "key", tiling=None)
    for slide, (features, tile_coords, _) in truth.items():
        np.testing.assert_array_equal(bags[slide], features)
        np.testing.assert_array_equal(coords[slide], tile_coords)
    with pytest.raises(ValueError, match="no feature file for slide"):
        read_feature_bags(out, ["not_a_slide"])
    with pytest.raises(ValueError, match="slide-level tasks only"):
        encoder(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))


def test_export_of_missing_embeddings_is_one_line_exit_2(embedded, tmp_path, capsys):
    assert (
        main(["export-features", str(embedded), "--embeddings", "nope", "--format", "clam", "--out", str(tmp_path)])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no complete embeddings 'nope'" in err
