"""`pathgen synth-dataset` outputs read back by their readers: counts, shapes, classes, splits, signal."""

from __future__ import annotations

import argparse
import csv
import pickle

import h5py
import numpy as np
import openslide
import pytest
from skimage.color import rgb2hed

from pathgen.commands import synth_dataset
from pathgen.eval import synth_datasets as sd
from pathgen.eval.datasets import read_dataset
from pathgen.eval.datasets.camelyon16 import EVA_VAL_SLIDES
from tiling.annotations import read_asap_polygons


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    """Writes each synthetic dataset once, on first use, with small counts."""
    root, written = tmp_path_factory.mktemp("synth"), {}
    options = {
        "pcam": {"n_train": 64, "n_val": 16, "n_test": 16},
        "crc": {"n_train": 4, "n_test": 3},
        "mhist": {"n_train": 12, "n_test": 6},
        "bach": {"n_per_class": 4},
        "camelyon16": {"n_train": 4, "n_test": 2, "size": (2048, 1536)},
    }

    def get(name: str):
        if name not in written:
            written[name] = sd.SYNTHETIC_DATASETS[name](root / name, seed=1, **options[name])
        return written[name]

    return get


def test_pcam_round_trip(synth_root) -> None:
    root = synth_root("pcam")
    with h5py.File(root / "camelyonpatch_level_2_split_valid_y.h5") as f:
        assert f["y"].shape == (16, 1, 1, 1) and f["y"].dtype == np.uint8
    pcam = read_dataset("pcam", root)
    assert pcam.class_names == ("no_tumor", "tumor") and pcam.mpp == pytest.approx(0.972)
    assert {name: len(split) for name, split in pcam.splits.items()} == {"train": 64, "val": 16, "test": 16}
    train = pcam.split("train")
    assert train.class_counts() == {"no_tumor": 32, "tumor": 32}
    image, label = train[5]
    assert image.shape == (96, 96, 3) and image.dtype == np.uint8 and label in (0, 1)
    batch = train.images([7, 2, 7, 40])
    np.testing.assert_array_equal(batch[0], train.image(7))
    np.testing.assert_array_equal(batch[3], train.image(40))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(train)).image(2), batch[1])  # worker copy reopens


def _hematoxylin(images: np.ndarray) -> np.ndarray:
    return np.array([rgb2hed(image)[..., 0].mean() for image in images])


def _coarse_share(images: np.ndarray) -> np.ndarray:
    """Share of each patch's standardised optical-density power at periods above 12 px (12 µm) to that
    below: high where nuclei are big and grouped, low on an even carpet of small ones; stain-free."""
    od = -np.log((images.astype(np.float32) + 1) / 256).sum(-1)
    od = (od - od.mean((1, 2), keepdims=True)) / od.std((1, 2), keepdims=True)
    power = np.abs(np.fft.rfft2(od)) ** 2
    radius = np.hypot(np.fft.fftfreq(images.shape[1])[:, None], np.fft.rfftfreq(images.shape[2])[None, :])
    return power[:, (radius > 0) & (radius < 0.08)].sum(1) / power[:, radius >= 0.08].sum(1)


def _threshold_accuracy(train_values, train_y, test_values, test_y) -> float:
    """Accuracy on test of the midpoint between the class medians on train, either way round."""
    threshold = (np.median(train_values[train_y == 1]) + np.median(train_values[train_y == 0])) / 2
    above = (test_values > threshold) == test_y
    return float(max(above.mean(), 1 - above.mean()))


def test_pcam_labels_lie_in_structure_not_in_hematoxylin(synth_root) -> None:
    """Tumor patches hold big nuclei in nests, normal ones an even carpet of small lymphocytes of about
    the same colour: one threshold on a stain-free structure statistic, fitted on train, separates the
    test split from other slides and sites well; one on the mean hematoxylin does not."""
    pcam = read_dataset("pcam", synth_root("pcam"))
    train, test = pcam.split("train"), pcam.split("test")
    x_train, x_test = train.images(range(len(train))), test.images(range(len(test)))
    structure = _threshold_accuracy(_coarse_share(x_train), train.labels, _coarse_share(x_test), test.labels)
    colour = _threshold_accuracy(_hematoxylin(x_train), train.labels, _hematoxylin(x_test), test.labels)
    assert structure >= 0.8
    assert colour <= 0.7


def test_crc_round_trip_and_protocols(synth_root) -> None:
    root = synth_root("crc")
    for folder, per_class in (("NCT-CRC-HE-100K", 4), ("CRC-VAL-HE-7K", 3)):
        assert sorted(p.name for p in (root / folder).iterdir()) == sorted(sd.crc.CLASS_NAMES)
        assert all(len(list((root / folder / c).glob(f"{c}-*.tif"))) == per_class for c in sd.crc.CLASS_NAMES)
    holdout = read_dataset("crc", root)
    sizes = {name: len(split) for name, split in holdout.splits.items()}
    assert sizes == {"train": 27, "val": 9, "test": 27} and holdout.report_split == "test"
    assert set(holdout.split("val").class_counts().values()) == {1}
    assert holdout.split("train").image(0).shape == (224, 224, 3)
    eva = read_dataset("crc", root, protocol="eva")
    assert {n: len(s) for n, s in eva.splits.items()} == {"train": 36, "val": 27} and eva.report_split == "val"


def _colour_features(split) -> np.ndarray:
    images = split.images(range(len(split))).astype(np.float32)
    return np.concatenate([images.mean((1, 2)), images.std((1, 2))], axis=1)


def test_crc_classes_look_different(synth_root) -> None:
    """Nearest class centroid on colour mean/std, fitted on the train folder, names the class of
    tiles from the other slides."""
    crc = read_dataset("crc", synth_root("crc"), protocol="eva")
    train, test = crc.split("train"), crc.split("val")
    features, labels = _colour_features(train), train.labels
    centroids = np.stack([features[labels == c].mean(0) for c in range(9)])
    guess = np.argmin(((_colour_features(test)[:, None] - centroids) ** 2).sum(-1), axis=1)
    assert np.mean(guess == test.labels) >= 0.8


def test_mhist_round_trip(synth_root) -> None:
    root = synth_root("mhist")
    with open(root / "annotations.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "Image Name",
        "Majority Vote Label",
        "Number of Annotators who Selected SSA (Out of 7)",
        "Partition",
    ]
    assert len(rows) == 18 and all((root / "images" / r["Image Name"]).is_file() for r in rows)
    assert rows[0]["Image Name"] == "MHIST_aaa.png"
    mhist = read_dataset("mhist", root)
    assert mhist.class_names == ("HP", "SSA")
    assert {n: len(s) for n, s in mhist.splits.items()} == {"train": 10, "val": 2, "test": 6}
    assert mhist.split("train").class_counts() == {"HP": 7, "SSA": 3}
    test = mhist.split("test")
    assert np.all((test.meta["ssa_votes"] >= 4) == (test.labels == 1))
    assert test.image(0).shape == (224, 224, 3)


def test_bach_round_trip(synth_root) -> None:
    root = synth_root("bach")
    photos = root / "ICIAR2018_BACH_Challenge" / "Photos"
    assert sorted(p.name for p in (photos / "InSitu").iterdir()) == [f"is00{i}.tif" for i in range(1, 5)]
    with pytest.raises(ValueError, match="400 official images.*split_rule='stratified'"):
        read_dataset("bach", root)
    bach = read_dataset("bach", root, split_rule="stratified")
    assert bach.class_names == ("Benign", "InSitu", "Invasive", "Normal")
    assert {n: len(s) for n, s in bach.splits.items()} == {"train": 8, "val": 4, "test": 4}
    assert bach.split("test").image(0).shape == (384, 512, 3)
    assert read_dataset("bach", photos, split_rule="stratified", protocol="eva").report_split == "val"


def test_camelyon16_round_trip(synth_root) -> None:
    root = synth_root("camelyon16")
    c16 = read_dataset("camelyon16", root)
    by_id = {r.slide_id: r for r in c16.records}
    assert sorted(by_id) == ["normal_001", "normal_010", "test_001", "test_002", "tumor_001", "tumor_002"]
    assert {r.slide_id for r in c16.split("val")} == {"normal_010", "tumor_001"} <= EVA_VAL_SLIDES
    assert [r.label_name for r in c16.split("test")] == ["tumor", "normal"]
    for record in c16.records:
        assert (record.annotation_path is not None) == (record.label == 1)
        slide = openslide.OpenSlide(record.path)
        assert slide.dimensions == (2048, 1536) and float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25)
        if record.annotation_path:
            assert record.annotation_path.parent.name == "lesion_annotations"
            polygons = read_asap_polygons(record.annotation_path)
            assert polygons and all(0 <= p[:, 0].min() and p[:, 0].max() <= 2048 for p in polygons)
    stratified = read_dataset("camelyon16", root, val="stratified", val_fraction=0.5)
    assert len(stratified.split("val")) == 2 and stratified.report_split == "test"


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    synth_dataset.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["synth-dataset", *argv])
    return args.run(args)


def test_synth_dataset_command(tmp_path, capsys) -> None:
    assert _cli("bach", str(tmp_path / "bach"), "--n", "3", "--seed", "2") == 0
    assert "bach: 4 classes; train 4, val 4, test 4" in capsys.readouterr().out
    assert _cli("bach", str(tmp_path / "bach"), "--n", "3") == 2
    assert "is not an empty folder" in capsys.readouterr().err
    assert _cli("pcam", str(tmp_path / "pcam"), "--n", "8,4") == 2
    assert "pcam takes --n n_train,n_val,n_test" in capsys.readouterr().err
    assert _cli("camelyon16", str(tmp_path / "c16"), "--slide-size", "big") == 2
    assert "--slide-size 'big' is not WIDTHxHEIGHT" in capsys.readouterr().err


def test_stain_shifted_pcam_is_a_multi_site_cohort_in_every_split(tmp_path):
    from pathgen.eval.datasets.pcam import pcam_file
    from pathgen.eval.synth_datasets import SITE_PATCHES, write_synthetic_pcam

    plain = write_synthetic_pcam(tmp_path / "plain", 16, 16, 16, seed=3, stain_shift=0.0)
    shifted = write_synthetic_pcam(tmp_path / "shifted", 16, 16, 16, seed=3, stain_shift=0.3)
    read = {
        name: {split: h5py.File(pcam_file(root, split, "x"))["x"][:] for split in ("train", "val", "test")}
        for name, root in (("plain", plain), ("shifted", shifted))
    }
    for split in ("train", "val", "test"):
        a, b = read["plain"][split].astype(float), read["shifted"][split].astype(float)
        assert np.abs(a - b).mean() > 3  # the sites' stain and brightness moved the pixels
        site_means = [(b - a)[i : i + SITE_PATCHES].mean((0, 1, 2)) for i in range(0, len(a), SITE_PATCHES)]
        assert np.abs(site_means[0] - site_means[1]).max() > 1  # each site has its own change


def test_synth_dataset_stain_shift_option(tmp_path, capsys) -> None:
    import h5py

    assert _cli("pcam", str(tmp_path / "plain"), "--n", "4,8,8", "--stain-shift", "0") == 0
    assert _cli("pcam", str(tmp_path / "default"), "--n", "4,8,8") == 0
    with (
        h5py.File(next((tmp_path / "plain").glob("*test_x.h5")), "r") as a,
        h5py.File(next((tmp_path / "default").glob("*test_x.h5")), "r") as b,
    ):
        assert np.abs(a["x"][:].astype(float) - b["x"][:].astype(float)).mean() > 3  # default: shifted sites
    assert _cli("bach", str(tmp_path / "bach"), "--stain-shift", "0.3") == 2
    assert "--stain-shift applies to pcam only" in capsys.readouterr().err
