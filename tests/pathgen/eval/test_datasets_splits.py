"""Split rules: seeded stratified holdouts, eva's fixed BACH and Camelyon16 splits, ImageFolder layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathgen.eval.datasets import DATASETS, read_dataset
from pathgen.eval.datasets.camelyon16 import EVA_VAL_SLIDES
from pathgen.eval.datasets.stratify import stratified_holdout, three_way_split
from pathgen.eval.synth_datasets import SYNTHETIC_DATASETS, _training_ids


def test_stratified_holdout_is_seeded_and_stratified() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 1])
    kept, held = stratified_holdout(labels, 0.2, seed=3)
    assert np.bincount(labels[held], minlength=3).tolist() == [10, 6, 0]  # a singleton class stays in train
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(81))
    assert np.all(np.diff(held) > 0)
    again = stratified_holdout(labels, 0.2, seed=3)[1]
    assert np.array_equal(held, again) and not np.array_equal(held, stratified_holdout(labels, 0.2, seed=4)[1])
    assert np.bincount(labels[stratified_holdout(labels[:52], 0.01, 0)[1]]).tolist() == [1, 1]  # at least one
    with pytest.raises(ValueError, match="fraction must be in"):
        stratified_holdout(labels, 1.0, 0)


def test_three_way_split_shares() -> None:
    labels = np.repeat([0, 1], 100)
    parts = three_way_split(labels, 0.1, 0.2, seed=0)
    assert {name: len(idx) for name, idx in parts.items()} == {"train": 140, "val": 20, "test": 40}
    assert len(np.unique(np.concatenate(list(parts.values())))) == 200


def _touch_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / name)


def test_bach_eva_index_ranges(tmp_path) -> None:
    photos = tmp_path / "ICIAR2018_BACH_Challenge" / "Photos"
    for prefix, name in (("b", "Benign"), ("is", "InSitu"), ("iv", "Invasive"), ("n", "Normal")):
        (photos / name).mkdir(parents=True)
        for i in range(1, 101):
            (photos / name / f"{prefix}{i:03d}.tif").write_bytes(b"")  # listed, never opened here
    eva = read_dataset("bach", tmp_path, protocol="eva")
    assert {n: len(s) for n, s in eva.splits.items()} == {"train": 268, "val": 132}
    assert eva.split("val").class_counts() == {"Benign": 48, "InSitu": 30, "Invasive": 31, "Normal": 23}
    assert eva.split("val").paths[0].name == "b042.tif"  # range (41, 59) starts at the 42nd Benign image
    holdout = read_dataset("bach", photos)
    assert {n: len(s) for n, s in holdout.splits.items()} == {"train": 241, "val": 27, "test": 132}


def test_camelyon16_eva_validation_list_and_synthetic_names() -> None:
    assert len(EVA_VAL_SLIDES) == 54
    assert sum(s.startswith("normal_") for s in EVA_VAL_SLIDES) == 32
    names = _training_ids("tumor", 7)
    assert names[:3] == ["tumor_002", "tumor_001", "tumor_003"]
    assert [n in EVA_VAL_SLIDES for n in names] == [False, True, False, False, False, False, True]


def test_image_folder_layouts(tmp_path) -> None:
    for split, n in (("train", 6), ("test", 2)):
        for label in ("2", "10"):
            _touch_images(tmp_path / "given" / split / label, [f"{i}.png" for i in range(n)])
    given = read_dataset("image_folder", tmp_path / "given")
    assert given.class_names == ("2", "10")  # integer class names sort as numbers
    assert {n: len(s) for n, s in given.splits.items()} == {"train": 10, "val": 2, "test": 4}
    assert "val = stratified 10% of train" in given.protocol
    for label in ("a", "b"):
        _touch_images(tmp_path / "flat" / label, [f"{i}.jpg" for i in range(10)])
    flat = read_dataset("image_folder", tmp_path / "flat")
    assert {n: len(s) for n, s in flat.splits.items()} == {"train": 14, "val": 2, "test": 4}
    assert flat.split("val").image(0).shape == (4, 4, 3)
    _touch_images(tmp_path / "given" / "extra" / "a", ["0.png"])
    with pytest.raises(ValueError, match=r"mixes split folders \(test, train\) with other folders \('extra'\)"):
        read_dataset("image_folder", tmp_path / "given")


def test_slide_csv_splits(tmp_path) -> None:
    (tmp_path / "wsi").mkdir()
    lines = ["slide,label"]
    for i in range(20):
        (tmp_path / "wsi" / f"s{i:02d}.svs").write_bytes(b"")
        lines.append(f"wsi/s{i:02d}.svs,{i % 4}")
    (tmp_path / "cohort.csv").write_text("\n".join(lines) + "\n")
    cohort = read_dataset("slide_csv", tmp_path / "cohort.csv")
    assert cohort.class_names == ("0", "1", "2", "3")
    assert [len(cohort.split(n)) for n in ("train", "val", "test")] == [12, 4, 4]
    assert cohort.records[0].slide_id == "s00" and cohort.records[0].path == (tmp_path / "wsi" / "s00.svs").resolve()


def test_every_synthetic_dataset_has_a_reader() -> None:
    assert set(SYNTHETIC_DATASETS) <= set(DATASETS)


def test_synthetic_crc_classes_are_the_readers() -> None:
    from pathgen.eval.datasets.crc import CLASS_NAMES
    from pathgen.eval.synth_datasets import _CRC_CLASSES

    assert tuple(_CRC_CLASSES) == CLASS_NAMES
    assert len(_training_ids("normal", 400)) == len(set(_training_ids("normal", 400))) == 400  # list runs out
