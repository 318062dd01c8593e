"""Frozen features are cached per (encoder, dataset, split) and reused without running the model."""

from __future__ import annotations

import os

import numpy as np
import pytest

from pathgen.eval.datasets import read_dataset
from pathgen.eval.features import FrozenEncoder, dataset_key, patch_features
from pathgen.eval.synth_datasets import write_synthetic_pcam


@pytest.fixture(scope="module")
def pcam(tmp_path_factory):
    root = write_synthetic_pcam(tmp_path_factory.mktemp("pcam") / "pcam", 16, 8, 8)
    return root, read_dataset("pcam", root)


def test_features_are_cached_and_reused(pcam, tmp_path, monkeypatch):
    root, dataset = pcam
    calls = []
    forward = FrozenEncoder.__call__
    monkeypatch.setattr(FrozenEncoder, "__call__", lambda self, x: calls.append(len(x)) or forward(self, x))
    key = dataset_key("pcam", root)
    first = patch_features(FrozenEncoder("random:test_vit", tmp_path), dataset.splits["train"], key, batch_size=6)
    assert first.shape == (16, 64) and first.dtype == np.float32 and sum(calls) == 16
    encoder = FrozenEncoder("random:test_vit", tmp_path)
    again = patch_features(encoder, dataset.splits["train"], key, batch_size=6)
    assert sum(calls) == 16 and encoder._model is None  # read from disk: the model was never loaded
    np.testing.assert_array_equal(first, again)
    folder = tmp_path / encoder.encoder_id / key
    assert sorted(p.name for p in folder.iterdir()) == ["train.meta.json", "train.npy"]


def test_encoder_id_changes_with_weights(tmp_path):
    encoder = FrozenEncoder("random:test_vit", tmp_path)
    assert encoder.encoder_id.startswith("random-test_vit-")
    assert FrozenEncoder("random:test_vit", tmp_path).encoder_id == encoder.encoder_id
    weights = encoder.model_dir / "model.safetensors"
    os.utime(weights, ns=(1, 1))
    assert FrozenEncoder("random:test_vit", tmp_path).encoder_id != encoder.encoder_id


def test_not_an_encoder_folder_says_so(tmp_path):
    with pytest.raises(ValueError, match="not a model folder"):
        FrozenEncoder(tmp_path, tmp_path)


def test_named_encoders_get_their_own_rows(tmp_path):
    from pathgen.eval.features import FrozenEncoder, split_label

    assert split_label("baseline=runs/a/model") == ("baseline", "runs/a/model")
    assert split_label("runs/a=b/model") == (None, "runs/a=b/model")
    assert split_label("random:test_vit") == (None, "random:test_vit")
    named = FrozenEncoder("init=random:test_vit", tmp_path)
    assert named.name == "init" and named.spec == "random:test_vit"
    assert named.encoder_id == FrozenEncoder("random:test_vit", tmp_path).encoder_id  # one feature cache
