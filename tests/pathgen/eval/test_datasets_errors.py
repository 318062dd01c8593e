"""Readers refuse broken datasets with one line that names the file and what is wrong."""

from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pathgen.eval.datasets import read_dataset
from pathgen.eval.datasets.crc import CLASS_NAMES as CRC_CLASSES


def _fails(pattern: str, name: str, root: Path, **options) -> str:
    with pytest.raises(ValueError) as info:
        read_dataset(name, root, **options)
    message = str(info.value)
    assert "\n" not in message
    assert re.search(pattern, message), message
    return message


# ------------------------------------------------------------------------------------- PCam


def _write_pcam(root: Path, n: int = 4, x_shape=(96, 96, 3), y_values=None, n_labels=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for part in ("train", "valid", "test"):
        with h5py.File(root / f"camelyonpatch_level_2_split_{part}_x.h5", "w") as f:
            f.create_dataset("x", data=np.zeros((n,) + x_shape, np.uint8))
        labels = np.arange(n_labels or n) % 2 if y_values is None else np.asarray(y_values)
        with h5py.File(root / f"camelyonpatch_level_2_split_{part}_y.h5", "w") as f:
            f.create_dataset("y", data=labels.astype(np.uint8).reshape(-1, 1, 1, 1))
    return root


def test_pcam_reads_a_valid_copy(tmp_path) -> None:
    assert read_dataset("pcam", _write_pcam(tmp_path / "p")).summary().startswith("pcam: 2 classes; train 4 of 262,144")


def test_pcam_missing_file(tmp_path) -> None:
    root = _write_pcam(tmp_path / "p")
    (root / "camelyonpatch_level_2_split_valid_y.h5").unlink()
    _fails(r"camelyonpatch_level_2_split_valid_y\.h5: PCam file does not exist", "pcam", root)


def test_pcam_wrong_x_shape(tmp_path) -> None:
    root = _write_pcam(tmp_path / "p", x_shape=(64, 64, 3))
    _fails(r"split_train_x\.h5: dataset 'x' is uint8 \(4, 64, 64, 3\), expected uint8 \(N, 96, 96, 3\)", "pcam", root)


def test_pcam_label_count_mismatch(tmp_path) -> None:
    root = _write_pcam(tmp_path / "p", n_labels=3)
    _fails(r"split_train_y\.h5: 3 labels but camelyonpatch_level_2_split_train_x\.h5 has 4 images", "pcam", root)


def test_pcam_bad_labels_and_bad_files(tmp_path) -> None:
    root = _write_pcam(tmp_path / "a", y_values=[0, 1, 2, 1])
    _fails(r"split_train_y\.h5: labels must be 0 or 1, found \[2\]", "pcam", root)
    root = _write_pcam(tmp_path / "b")
    (root / "camelyonpatch_level_2_split_test_x.h5").write_bytes(b"not hdf5")
    _fails(r"split_test_x\.h5: not a readable HDF5 file", "pcam", root)
    _fails(r"pcam_missing: PCam folder does not exist", "pcam", tmp_path / "pcam_missing")


# -------------------------------------------------------------------------------------- CRC


def _tiny_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(path)


def _write_crc(root: Path) -> Path:
    for folder in ("NCT-CRC-HE-100K", "CRC-VAL-HE-7K"):
        for name in CRC_CLASSES:
            for i in range(2):
                _tiny_image(root / folder / name / f"{name}-{i}.tif")
    return root


def test_crc_unknown_class_folder(tmp_path) -> None:
    root = _write_crc(tmp_path / "crc")
    assert len(read_dataset("crc", root).split("test")) == 18
    _tiny_image(root / "CRC-VAL-HE-7K" / "TUMOR" / "x.tif")
    _fails(r"CRC-VAL-HE-7K: unknown class folder 'TUMOR'; expected only ADI, BACK, .*TUM", "crc", root)


def test_crc_missing_empty_and_stray(tmp_path) -> None:
    root = _write_crc(tmp_path / "crc")
    for path in (root / "NCT-CRC-HE-100K" / "MUC").iterdir():
        path.unlink()
    _fails(r"NCT-CRC-HE-100K/MUC: class folder has no images", "crc", root)
    (root / "NCT-CRC-HE-100K" / "MUC").rmdir()
    _fails(r"NCT-CRC-HE-100K: missing class folder\(s\) MUC", "crc", root)
    root = _write_crc(tmp_path / "crc2")
    n_train = len(read_dataset("crc", root).split("train"))
    for junk in ("Thumbs.db", ".DS_Store", "notes.txt"):
        (root / "NCT-CRC-HE-100K" / "ADI" / junk).write_text("x")
    with pytest.warns(UserWarning) as caught:
        dataset = read_dataset("crc", root)
    named = sorted(
        str(w.message).split(":")[0].rsplit("/", 1)[1] for w in caught if "not an image file" in str(w.message)
    )
    assert named == [".DS_Store", "Thumbs.db", "notes.txt"]  # each stray file skipped and named
    assert len(dataset.split("train")) == n_train
    _fails(r"protocol must be 'holdout' or 'eva', got 'best'", "crc", _write_crc(tmp_path / "crc3"), protocol="best")


# --------------------------------------------------------------------------------- CSV paths


def _write_csv(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def image_csv_dir(tmp_path) -> Path:
    for i in range(6):
        _tiny_image(tmp_path / "data" / "img" / f"{i}.png")
    _tiny_image(tmp_path / "outside.png")
    return tmp_path / "data"


def test_image_csv_reads_relative_paths(image_csv_dir) -> None:
    rows = ["path,label,split"] + [f"img/{i}.png,{'ab'[i % 2]},{'train' if i < 4 else 'test'}" for i in range(6)]
    dataset = read_dataset("image_csv", _write_csv(image_csv_dir / "labels.csv", rows))
    assert dataset.class_names == ("a", "b") and {n: len(s) for n, s in dataset.splits.items()} == {
        "train": 2,
        "val": 2,
        "test": 2,
    }


@pytest.mark.parametrize(
    "bad, pattern",
    [
        ("../outside.png", r"labels\.csv, row 3: path '\.\./outside\.png' leaves .*data \('\.\.' is not allowed\)"),
        ("img/../../outside.png", r"row 3: path 'img/\.\./\.\./outside\.png' leaves"),
        ("/etc/passwd", r"row 3: absolute path '/etc/passwd' is not allowed"),
        ("C:\\data\\x.png", r"row 3: absolute path 'C:\\\\data\\\\x\.png' is not allowed"),
        ("img/missing.png", r"img/missing\.png: file listed in .*labels\.csv, row 3 does not exist"),
    ],
)
def test_image_csv_refuses_untrusted_paths(image_csv_dir, bad: str, pattern: str) -> None:
    csv_path = _write_csv(image_csv_dir / "labels.csv", ["path,label", "img/0.png,a", f"{bad},b"])
    _fails(pattern, "image_csv", csv_path)


def test_image_csv_refuses_symlink_escape_and_bad_rows(image_csv_dir) -> None:
    os.symlink(image_csv_dir.parent / "outside.png", image_csv_dir / "link.png")
    _fails(
        r"row 2: path 'link\.png' resolves outside",
        "image_csv",
        _write_csv(image_csv_dir / "a.csv", ["path,label", "link.png,a"]),
    )
    _fails(
        r"b\.csv: missing column\(s\) 'label'",
        "image_csv",
        _write_csv(image_csv_dir / "b.csv", ["path,class", "img/0.png,a"]),
    )
    _fails(
        r"c\.csv, row 3: split 'dev' is not one of train, val, test",
        "image_csv",
        _write_csv(image_csv_dir / "c.csv", ["path,label,split", "img/0.png,a,train", "img/1.png,b,dev"]),
    )
    _fails(
        r"d\.csv, row 3: 'img/0\.png' is already listed in row 2",
        "image_csv",
        _write_csv(image_csv_dir / "d.csv", ["path,label", "img/0.png,a", "img/0.png,b"]),
    )


def test_slide_csv_refuses_escapes(image_csv_dir) -> None:
    _fails(
        r"slides\.csv, row 2: path '\.\./outside\.png' leaves",
        "slide_csv",
        _write_csv(image_csv_dir / "slides.csv", ["slide,label", "../outside.png,a"]),
    )
    _fails(
        r"row 2: absolute path",
        "slide_csv",
        _write_csv(image_csv_dir / "s2.csv", ["slide,label,annotation", "img/0.png,a,/tmp/x.xml"]),
    )


# ------------------------------------------------------------------------------- Camelyon16


def _write_camelyon16(root: Path) -> Path:
    layout = (
        ("training/normal", ["normal_001", "normal_010"]),
        ("training/tumor", ["tumor_001", "tumor_002"]),
        ("testing/images", ["test_001", "test_002"]),
    )
    for folder, names in layout:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / folder / f"{name}.tif").write_bytes(b"")  # readers list slides, they do not open them
    rows = ["test_001,Tumor,Macro,Field", "test_002,Normal,,", "test_003,Normal,,"]  # test_003: no slide
    _write_csv(root / "testing" / "reference.csv", rows)
    return root


def test_camelyon16_missing_reference(tmp_path) -> None:
    root = _write_camelyon16(tmp_path / "c16")
    assert len(read_dataset("camelyon16", root).split("test")) == 2  # a row without a slide is allowed
    (root / "testing" / "reference.csv").unlink()
    _fails(r"testing/reference\.csv: Camelyon16 test labels \(reference\.csv\) does not exist", "camelyon16", root)


def test_camelyon16_leaves_out_the_duplicate_test_slide_as_eva(tmp_path) -> None:
    root = _write_camelyon16(tmp_path / "c16")
    (root / "testing" / "images" / "test_049.tif").write_bytes(b"")
    with open(root / "testing" / "reference.csv", "a") as f:
        f.write("test_049,Tumor,Macro,Field\n")
    with pytest.warns(UserWarning, match=r"test_049\.tif: left out of the Camelyon16 test set, a duplicate slide"):
        dataset = read_dataset("camelyon16", root)
    assert [r.slide_id for r in dataset.split("test")] == ["test_001", "test_002"]
    assert "test_049" in dataset.protocol


def test_camelyon16_reads_the_aws_layout(tmp_path) -> None:
    root = tmp_path / "aws"
    (root / "images").mkdir(parents=True)
    for name in ("normal_001", "normal_010", "tumor_001", "tumor_002", "test_001", "test_002"):
        (root / "images" / f"{name}.tif").write_bytes(b"")
    _write_csv(root / "evaluation" / "reference.csv", ["test_001,Tumor,Macro,Field", "test_002,Normal,,"])
    (root / "annotations").mkdir()
    (root / "annotations" / "tumor_001.xml").write_text("<ASAP_Annotations/>")
    aws = read_dataset("camelyon16", root)
    challenge = read_dataset("camelyon16", _write_camelyon16(tmp_path / "challenge"))
    assert [(r.slide_id, r.label, r.split) for r in aws.records] == [
        (r.slide_id, r.label, r.split) for r in challenge.records
    ]
    assert (
        next(r for r in aws.records if r.slide_id == "tumor_001").annotation_path
        == root / "annotations" / "tumor_001.xml"
    )
    (root / "evaluation" / "reference.csv").unlink()
    _fails(r"evaluation/reference\.csv: Camelyon16 test labels", "camelyon16", root)


def test_camelyon16_bad_layouts(tmp_path) -> None:
    root = _write_camelyon16(tmp_path / "a")
    (root / "testing" / "images" / "test_004.tif").write_bytes(b"")
    _fails(r"reference\.csv: no label row for test slide test_004", "camelyon16", root)
    root = _write_camelyon16(tmp_path / "b")
    (root / "training" / "normal" / "tumor_003.tif").write_bytes(b"")
    _fails(r"normal/tumor_003\.tif: expected only normal_NNN\.tif slides", "camelyon16", root)
    root = _write_camelyon16(tmp_path / "c")
    _write_csv(root / "testing" / "reference.csv", ["test_001,Tumor", "test_002,Unknown"])
    _fails(r"reference\.csv, row 2: label 'Unknown' is not Tumor or Normal", "camelyon16", root)
    root = _write_camelyon16(tmp_path / "d")
    (root / "training" / "normal" / "normal_010.tif").rename(root / "training" / "normal" / "normal_002.tif")
    _fails(r"val split has no slides of class\(es\) normal .*pass val='stratified'", "camelyon16", root)


# ------------------------------------------------------------------------------ MHIST, BACH


def _write_mhist(root: Path, rows: list[str]) -> Path:
    for i in range(4):
        _tiny_image(root / "images" / f"MHIST_{i}.png")
    header = "Image Name,Majority Vote Label,Number of Annotators who Selected SSA (Out of 7),Partition"
    return _write_csv(root / "annotations.csv", [header] + rows).parent


def test_mhist_bad_rows(tmp_path) -> None:
    good = ["MHIST_0.png,HP,1,train", "MHIST_1.png,SSA,6,train", "MHIST_2.png,HP,0,test"]
    _fails(
        r"annotations\.csv, row 5: label 'TA' is not HP or SSA",
        "mhist",
        _write_mhist(tmp_path / "a", good + ["MHIST_3.png,TA,0,test"]),
    )
    _fails(
        r"row 5: 2 of 7 votes for SSA contradict the majority label SSA",
        "mhist",
        _write_mhist(tmp_path / "b", good + ["MHIST_3.png,SSA,2,test"]),
    )
    _fails(
        r"images/MHIST_9\.png: image listed in .*row 5 does not exist",
        "mhist",
        _write_mhist(tmp_path / "c", good + ["MHIST_9.png,HP,0,test"]),
    )
    _fails(
        r"row 5: image name '\.\./MHIST_3\.png' must be a plain file name",
        "mhist",
        _write_mhist(tmp_path / "d", good + ["../MHIST_3.png,HP,0,test"]),
    )


def test_bach_needs_class_folders(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    _fails(r"empty: no BACH class folders \(Benign, InSitu, Invasive, Normal\)", "bach", tmp_path / "empty")


def test_unknown_dataset_name(tmp_path) -> None:
    _fails(r"unknown dataset 'imagenet'; known: pcam, crc", "imagenet", tmp_path)
