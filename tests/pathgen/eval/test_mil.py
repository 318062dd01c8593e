"""MIL training on bags of synthetic features: planted signal, chance, caps, early stopping, seeds.

Planted bags: every instance ~ N(0, I_32); a positive bag also holds 5–12 "tumor" instances
shifted by 4 along one direction, among 40–100 instances. With seed 0 every model ranks the 64
test bags with AUROC > 0.9 (measured: mean-pool 0.94, ABMIL 1.00, TransMIL 1.00, CLAM-SB 1.00),
and ABMIL's and CLAM's attention in positive test bags is on average > 5× higher on a tumor
instance than on a negative one (measured ratios ≈ 25 and ≈ 26). Random labels: the 600 test
bags are independent of training, so test AUROC is a draw from its null law (sd ≈ 0.024);
the tolerance 0.1 is 4 sd. Every run uses one CPU thread: these tiny steps run ~10× faster so.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pathgen.eval import mil
from pathgen.eval.metrics import auroc
from pathgen.eval.mil import (
    MILConfig,
    fit_mil,
    fold_splits,
    predict_bags,
    run_mil,
    subsample_indices,
    train_mil,
)
from pathgen.threads import torch_threads

DIM = 32
FAST = {"batch_size": 8, "max_epochs": 25, "patience": 8, "cpu_threads": 1}
CONFIGS = {
    "mean_pool": MILConfig("mean_pool", lr=3e-2, **FAST),
    "abmil": MILConfig("abmil", **FAST),  # eva's sizes
    "transmil": MILConfig("transmil", hidden_dim=32, n_heads=2, dropout=0.0, **FAST),
    "clam_sb": MILConfig("clam_sb", hidden_dim=64, attention_dim=32, **FAST),
}


def planted_bags(
    n_bags: int, seed: int, positives: tuple[int, int] = (5, 13), sizes: tuple[int, int] = (40, 101), shift: float = 4.0
) -> dict:
    """Bags of N(0, I) instances; positive bags get a few instances shifted along axis 0 (the "tumor")."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n_bags) % 2).astype(np.int64)
    bags, tumor = [], []
    for label in labels:
        n = int(rng.integers(*sizes))
        bag, is_tumor = rng.normal(size=(n, DIM)).astype(np.float32), np.zeros(n, dtype=bool)
        if label:
            is_tumor[rng.choice(n, size=int(rng.integers(*positives)), replace=False)] = True
            bag[is_tumor, 0] += shift
        bags.append(bag)
        tumor.append(is_tumor)
    return {"bags": bags, "labels": labels, "tumor": tumor}


@pytest.fixture(scope="module")
def planted() -> dict:
    return {"train": planted_bags(64, 1), "val": planted_bags(32, 2), "test": planted_bags(64, 3)}


def splits(data: dict) -> tuple:
    """(train_bags, train_y, val_bags, val_y, test_bags, test_y) in train_mil's argument order."""
    return tuple(x for split in ("train", "val", "test") for x in pair(data[split]))


def pair(split: dict) -> tuple[list[np.ndarray], np.ndarray]:
    return split["bags"], split["labels"]


@pytest.fixture(scope="module")
def fitted(planted) -> dict:
    """Each model trained once on the planted bags (seed 0), with its test probabilities and attention."""
    out = {}
    with torch_threads(1):
        for name, cfg in CONFIGS.items():
            model, selector = fit_mil(pair(planted["train"]), pair(planted["val"]), 2, cfg)
            out[name] = (model, selector, *predict_bags(model, planted["test"]["bags"]))
    return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_model_finds_the_planted_instances(fitted, planted, name) -> None:
    _, selector, probabilities, _ = fitted[name]
    assert auroc(planted["test"]["labels"], probabilities) > 0.9
    assert selector.best_score >= 0.8  # validation balanced accuracy of the kept weights


@pytest.mark.parametrize("name", ["abmil", "clam_sb"])
def test_attention_is_higher_on_planted_instances(fitted, planted, name) -> None:
    attention = fitted[name][3]
    test = planted["test"]
    ratios = [a[t].mean() / a[~t].mean() for a, t, y in zip(attention, test["tumor"], test["labels"]) if y == 1]
    assert np.mean(ratios) > 5.0
    assert np.mean([a[t].max() > a[~t].max() for a, t, y in zip(attention, test["tumor"], test["labels"]) if y]) > 0.9


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_bag_labels_stay_at_chance(name) -> None:
    data = {
        split: planted_bags(n, seed, sizes=(20, 41))
        for split, n, seed in [("train", 48, 4), ("val", 24, 5), ("test", 600, 6)]
    }
    for data_split in data.values():  # labels unrelated to the (planted) bags
        data_split["labels"] = np.random.default_rng(7).permutation(data_split["labels"])
    cfg = dataclasses.replace(CONFIGS[name], max_epochs=8, patience=None)
    result = train_mil(*splits(data), cfg)
    assert abs(result.metrics["test"]["auroc"] - 0.5) < 0.1


def test_subsampling_keeps_at_most_max_patches() -> None:
    rng = np.random.default_rng(0)
    for n, cap in [(500, 100), (100, 100), (30, 100), (7, None)]:
        idx = subsample_indices(n, cap, rng)
        assert len(idx) == min(n, cap or n) and len(np.unique(idx)) == len(idx)
        assert (np.diff(idx) > 0).all() and idx.min() >= 0 and idx.max() < n
    assert not np.array_equal(subsample_indices(500, 100, rng), subsample_indices(500, 100, rng))


def test_training_and_evaluation_see_at_most_max_patches(planted, monkeypatch) -> None:
    seen = []
    real_pad = mil.pad_bags

    def recording_pad(bags, device):
        seen.append([len(b) for b in bags])
        return real_pad(bags, device)

    monkeypatch.setattr(mil, "pad_bags", recording_pad)
    cfg = MILConfig("mean_pool", batch_size=64, max_epochs=2, max_patches=20, cpu_threads=1)
    result = train_mil(*splits(planted), cfg)
    assert max(max(lengths) for lengths in seen) == 20  # every bag has ≥ 40 instances
    assert len(result.extra["val_history"]) == 2 and len(seen) == 2 + 2 + 2  # 2 steps, 2 checks, final val + test


def test_evaluation_subsets_are_fixed_and_attention_maps_back(planted) -> None:
    cfg = MILConfig("abmil", batch_size=16, max_epochs=1, cpu_threads=1)
    with torch_threads(1):
        model, _ = fit_mil(pair(planted["train"]), pair(planted["val"]), 2, cfg)
    bags = planted["test"]["bags"][:5]
    p1, a1 = predict_bags(model, bags, max_patches=25)
    p2, _ = predict_bags(model, bags, batch_size=1, max_patches=25)
    np.testing.assert_allclose(p1, p2, atol=1e-6)  # same subsets; padding in a batch changes nothing
    for bag, attention in zip(bags, a1):
        assert attention.shape == (len(bag),) and np.isfinite(attention).sum() == 25
        assert np.nansum(attention) == pytest.approx(1.0, abs=1e-5)
    _, full = predict_bags(model, bags)
    assert all(np.isfinite(a).all() for a in full)


def test_early_stopping_counts_validation_checks(planted) -> None:
    cfg = MILConfig("mean_pool", lr=3e-2, batch_size=8, max_epochs=50, val_every_steps=2, patience=3, cpu_threads=1)
    result = train_mil(*splits(planted), cfg)
    history = [h["val_balanced_accuracy"] for h in result.extra["val_history"]]
    steps = [h["step"] for h in result.extra["val_history"]]
    assert steps == list(range(2, 2 * len(steps) + 1, 2))  # a check every 2 steps
    best = int(np.argmax(history))  # first maximum: a tie is no improvement
    assert len(history) - 1 - best == 3 and result.extra["stopped_step"] < 50 * 8
    assert result.selected["step"] == steps[best]
    assert result.metrics["val"]["balanced_accuracy"] == pytest.approx(history[best])
    never = train_mil(*splits(planted), dataclasses.replace(cfg, max_epochs=3, patience=None))
    assert [h["step"] for h in never.extra["val_history"]] == list(range(2, 25, 2))
    by_loss = train_mil(*splits(planted), dataclasses.replace(cfg, max_epochs=3, patience=None, monitor="loss"))
    losses = [h["val_loss"] for h in by_loss.extra["val_history"]]
    assert by_loss.selected["step"] == 2 * (int(np.argmin(losses)) + 1) and min(losses) > 0


def test_a_seed_fixes_the_run_and_leaves_global_rngs_alone(planted) -> None:
    cfg = MILConfig("abmil", dropout=0.1, max_patches=30, batch_size=16, max_epochs=3, cpu_threads=1)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    first, second = train_mil(*splits(planted), cfg, seed=3), train_mil(*splits(planted), cfg, seed=3)
    np.testing.assert_array_equal(first.test_scores, second.test_scores)
    assert first.extra["val_history"] == second.extra["val_history"]
    other = train_mil(*splits(planted), cfg, seed=4)
    assert not np.array_equal(first.test_scores, other.test_scores)
    assert torch.equal(torch.get_rng_state(), torch_state)
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)


def test_run_mil_summarises_seeds_and_folds(planted) -> None:
    cfg = MILConfig("mean_pool", lr=3e-2, batch_size=16, max_epochs=5, cpu_threads=1)
    summary = run_mil(*splits(planted), cfg, seeds=(0, 1), n_boot=200)
    assert (summary["probe"], summary["runs"], summary["seeds"], summary["folds"]) == ("mean_pool", 2, [0, 1], 1)
    auc = summary["metrics"]["test"]["auroc"]
    assert len(auc["values"]) == 2 and auc["sd"] > 0
    low, high = summary["ci"]["test"]["auroc"]
    assert low <= auc["mean"] <= high and summary["config"]["model"] == "mean_pool"
    folded = run_mil(*splits(planted), dataclasses.replace(cfg, folds=3), seeds=(5,), n_boot=50)
    assert (folded["runs"], folded["seeds"], folded["folds"]) == (3, [5, 6, 7], 3)


def test_folds_partition_the_pooled_bags_with_both_classes_everywhere() -> None:
    labels = np.array([0] * 20 + [1] * 10)
    folds = fold_splits(labels, 3, seed=0)
    held_out = np.sort(np.concatenate([hold for _, hold in folds]))
    np.testing.assert_array_equal(held_out, np.arange(30))
    for fit, hold in folds:
        assert not set(fit) & set(hold)
        counts = np.bincount(labels[hold], minlength=2)
        assert 6 <= counts[0] <= 7 and 3 <= counts[1] <= 4  # stratified: 20/3 and 10/3 per fold


def test_bad_inputs_are_named(planted) -> None:
    train_bags, train_y, val_bags, val_y, test_bags, test_y = splits(planted)
    quick = MILConfig("mean_pool", max_epochs=1)
    with pytest.raises(ValueError, match="bag 2 has shape"):
        train_mil([*train_bags[:2], np.zeros((0, DIM)), *train_bags[3:]], train_y, val_bags, val_y, test_bags, test_y)
    with pytest.raises(ValueError, match="NaN"):
        train_mil(train_bags, train_y, [np.full((3, DIM), np.nan), *val_bags[1:]], val_y, test_bags, test_y)
    with pytest.raises(ValueError, match="differ in width"):
        train_mil(train_bags, train_y, val_bags, val_y, [b[:, :8] for b in test_bags], test_y, quick)
    with pytest.raises(ValueError, match="integers"):
        train_mil(train_bags, train_y.astype(float), val_bags, val_y, test_bags, test_y, quick)
    with pytest.raises(ValueError, match="monitor"):
        train_mil(*splits(planted), MILConfig("mean_pool", monitor="recall"))


def test_eva_camelyon16_small_recipe() -> None:
    cfg = MILConfig.eva_camelyon16_small()
    assert (cfg.model, cfg.max_patches, cfg.lr, cfg.weight_decay, cfg.batch_size) == ("abmil", 1000, 1e-3, 0.01, 32)
    assert (cfg.max_epochs, cfg.patience, cfg.monitor, cfg.val_every_steps) == (100, 20, "balanced_accuracy", None)
    assert MILConfig().max_patches is None  # the full-bag recipe
