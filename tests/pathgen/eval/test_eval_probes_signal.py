"""Planted signal is recovered by every probe; random labels keep every probe at chance.

Thresholds: on linearly planted data the linear and logistic probes must come within 0.03 of the
Bayes-optimal balanced accuracy (the oracle that knows W; 0.933 binary, 0.798 four-class), since
3,000 training rows for a 32-d linear model leave little estimation error. kNN and SimpleShot
are tested on clustered data, their natural setting: kNN ≥ 0.95 on an XOR-like layout that
linear probes cannot separate (they stay ≤ 0.65), few-shot ≥ 0.95 at k ≥ 8 and better at k = 8
than at k = 1. Under random labels, balanced accuracy must lie within 0.04 of 1/C and AUROC
within 0.04 of 0.5: on 4,000 test rows their null sd is ≈ 0.008 and 0.009, so 0.04 is ~5 sd.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_features import clustered, linear_signal, random_labels, splits

from pathgen.eval.few_shot import FewShotConfig, few_shot
from pathgen.eval.metrics import balanced_accuracy
from pathgen.eval.probes import (
    KnnProbeConfig,
    LinearProbeConfig,
    LogisticProbeConfig,
    knn_probe,
    linear_probe,
    logistic_probe,
)

# 1,500 steps at lr 1e-2 reach what eva's 12,500 at 3e-4 reach (see the slow test in
# test_eval_linear_probe.py), in about a second.
FAST_LINEAR = LinearProbeConfig(lr=1e-2, max_steps=1500, val_every_steps=100, patience=5)
FEW_SHOT = FewShotConfig(shots=(1, 8, 16), episodes=25)


@pytest.fixture(scope="module", params=[2, 4], ids=["binary", "4-class"])
def planted(request) -> dict:
    return linear_signal(n_classes=request.param)


@pytest.mark.parametrize("probe,cfg", [(linear_probe, FAST_LINEAR), (logistic_probe, None)], ids=["linear", "logistic"])
def test_linear_probes_recover_a_planted_linear_signal(planted, probe, cfg) -> None:
    oracle = balanced_accuracy(planted["test"][1], planted["oracle"])
    result = probe(*splits(planted), cfg)
    assert result.metrics["test"]["balanced_accuracy"] >= oracle - 0.03
    assert result.metrics["test"]["auroc"] > 0.95
    assert result.test_scores.shape == (len(planted["test"][1]), planted["test"][1].max() + 1)
    np.testing.assert_allclose(result.test_scores.sum(axis=1), 1.0, atol=1e-9)


def test_knn_separates_clusters_that_linear_probes_cannot() -> None:
    data = clustered(n_classes=2, clusters_per_class=2, spread=1.5)  # XOR-like: ±u vs ±v
    for weighting in ("dino", "majority"):
        result = knn_probe(*splits(data), KnnProbeConfig(weighting=weighting))
        assert result.metrics["test"]["balanced_accuracy"] >= 0.95, weighting
    assert logistic_probe(*splits(data)).metrics["test"]["balanced_accuracy"] <= 0.65
    assert linear_probe(*splits(data), FAST_LINEAR).metrics["test"]["balanced_accuracy"] <= 0.65


def test_knn_scores_are_vote_shares() -> None:
    data = clustered(n_classes=3, clusters_per_class=2, spread=1.5)
    result = knn_probe(*splits(data))
    assert result.metrics["test"]["balanced_accuracy"] >= 0.95
    assert result.test_scores.shape == (len(data["test"][1]), 3)
    np.testing.assert_allclose(result.test_scores.sum(axis=1), 1.0, atol=1e-6)


def test_few_shot_recovers_clustered_classes_with_enough_shots() -> None:
    data = clustered(n_classes=4, clusters_per_class=1, spread=1.5)
    by_k = {s["selected"][0]["shots"]: s for s in few_shot(*data["train"], *data["test"], FEW_SHOT)}
    bacc = {k: s["metrics"]["test"]["balanced_accuracy"]["mean"] for k, s in by_k.items()}
    assert bacc[8] >= 0.95 and bacc[16] >= 0.95
    assert bacc[1] < bacc[8]
    assert by_k[8]["runs"] == 25 and len(by_k[8]["metrics"]["test"]["auroc"]["values"]) == 25
    low, high = by_k[8]["ci"]["test"]["balanced_accuracy"]
    assert low <= bacc[8] <= high


def test_few_shot_episodes_are_seeded_per_k() -> None:
    data = clustered(n_classes=4, clusters_per_class=1, spread=2.0)
    first = few_shot(*data["train"], *data["test"], FewShotConfig(shots=(2, 4), episodes=5), seed=1)
    only_4 = few_shot(*data["train"], *data["test"], FewShotConfig(shots=(4,), episodes=5), seed=1)
    assert json.dumps(first[1]["metrics"]) == json.dumps(only_4[0]["metrics"])  # NaN-safe (binary F1 of 4 classes)
    with pytest.raises(ValueError, match="fewer than 5000 shots"):
        few_shot(*data["train"], *data["test"], FewShotConfig(shots=(5000,), episodes=1))


@pytest.fixture(scope="module", params=[2, 3], ids=["binary", "3-class"])
def unrelated(request) -> dict:
    return random_labels(n_classes=request.param)


@pytest.mark.parametrize(
    "probe,cfg",
    [(linear_probe, FAST_LINEAR), (logistic_probe, None), (knn_probe, None)],
    ids=["linear", "logistic", "knn"],
)
def test_probes_stay_at_chance_on_random_labels(unrelated, probe, cfg) -> None:
    n_classes = unrelated["test"][1].max() + 1
    result = probe(*splits(unrelated), cfg)
    assert abs(result.metrics["test"]["balanced_accuracy"] - 1 / n_classes) < 0.04
    assert abs(result.metrics["test"]["auroc"] - 0.5) < 0.04


def test_few_shot_stays_at_chance_on_random_labels(unrelated) -> None:
    n_classes = unrelated["test"][1].max() + 1
    for summary in few_shot(*unrelated["train"], *unrelated["test"], FewShotConfig(shots=(1, 16), episodes=20)):
        assert abs(summary["metrics"]["test"]["balanced_accuracy"]["mean"] - 1 / n_classes) < 0.04
        assert abs(summary["metrics"]["test"]["auroc"]["mean"] - 0.5) < 0.04


def test_probes_reject_inputs_they_cannot_use() -> None:
    data = linear_signal()
    (tx, ty), (vx, vy), (sx, sy) = data["train"], data["val"], data["test"]
    with pytest.raises(ValueError, match="missing classes"):
        logistic_probe(tx, np.where(ty == 1, 2, ty), vx, vy, sx, sy)
    with pytest.raises(ValueError, match="differ in width"):
        knn_probe(tx, ty, vx[:, :10], vy, sx, sy)
    with pytest.raises(ValueError, match="integers"):
        knn_probe(tx, ty.astype(float), vx, vy, sx, sy)
    with pytest.raises(ValueError, match="NaN"):
        knn_probe(np.full_like(tx, np.nan), ty, vx, vy, sx, sy)


def test_logistic_probe_records_its_c_sweep() -> None:
    data = linear_signal()
    result = logistic_probe(*splits(data), LogisticProbeConfig(max_iter=2))  # too few iterations to converge
    history = result.extra["val_history"]
    assert [h["C"] for h in history] == sorted(LogisticProbeConfig().c_grid)
    best = max(history, key=lambda h: h["val_balanced_accuracy"])  # first maximum, as the probe does
    assert result.selected["C"] == best["C"]
    assert result.metrics["val"]["balanced_accuracy"] == pytest.approx(best["val_balanced_accuracy"])
    assert result.extra["not_converged_C"]  # listed, not printed 13 times
