"""Paired comparison of encoders: DeLong against a direct pairwise computation, paired bootstrap behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from pathgen.eval.compare import bootstrap_p_value, compare_results, delong_test, midranks, paired_bootstrap


def _delong_by_pairs(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """DeLong (1988) written out from its definition: ψ kernel over every positive × negative pair."""
    components = []
    for score in (a, b):
        pos, neg = score[y == 1], score[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        components.append((psi.mean(), psi.mean(axis=1), psi.mean(axis=0)))
    (auc_a, v10_a, v01_a), (auc_b, v10_b, v01_b) = components
    m, n = len(v10_a), len(v01_a)
    var = (np.var(v10_a, ddof=1) + np.var(v10_b, ddof=1) - 2 * np.cov(v10_a, v10_b)[0, 1]) / m
    var += (np.var(v01_a, ddof=1) + np.var(v01_b, ddof=1) - 2 * np.cov(v01_a, v01_b)[0, 1]) / n
    z = (auc_b - auc_a) / np.sqrt(var)
    return auc_b - auc_a, float(2 * norm.sf(abs(z)))


def _two_scores(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.int64)
    latent = y + rng.normal(size=n)
    a = np.round(latent + 1.5 * rng.normal(size=n), 1)  # rounded: ties inside and across classes
    b = np.round(latent + 0.3 * rng.normal(size=n), 1)
    return y, a, b


def test_midranks_average_tied_ranks() -> None:
    np.testing.assert_allclose(midranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])), [4.0, 1.0, 4.0, 2.0, 4.0])


def test_delong_matches_the_pairwise_definition_and_sklearn() -> None:
    y, a, b = _two_scores()
    result = delong_test(y, a, b)
    delta, p = _delong_by_pairs(y, a, b)
    assert result["auroc_a"] == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert result["auroc_b"] == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert result["delta"] == pytest.approx(delta, abs=1e-12) and result["p"] == pytest.approx(p, rel=1e-9)
    assert result["delta"] > 0 and result["p"] < 0.01 and result["low"] > 0  # b is the better score


def test_delong_of_a_score_with_itself_is_no_difference() -> None:
    y, a, _ = _two_scores()
    result = delong_test(y, a, a)
    assert result["delta"] == 0 and result["p"] == 1.0


def test_bootstrap_p_value_is_two_sided_and_never_zero() -> None:
    assert bootstrap_p_value(np.full(99, 0.1)) == pytest.approx(2 / 100)
    assert bootstrap_p_value(np.concatenate([np.full(50, -1.0), np.full(50, 1.0)])) == 1.0


def _runs(y: np.ndarray, signal: float, seeds: range, spread: float) -> list[np.ndarray]:
    """Per-seed (N, 2) scores: a shared latent per sample plus a seed-dependent shift in quality."""
    out, shared = [], np.random.default_rng(0).normal(size=len(y))  # one per-sample difficulty for every run
    for s in seeds:
        rng = np.random.default_rng(100 + s)
        quality = signal + spread * rng.normal()
        p = 1 / (1 + np.exp(-(quality * (2 * y - 1) + shared + 0.3 * rng.normal(size=len(y)))))
        out.append(np.stack([1 - p, p], axis=1))
    return out


def test_paired_bootstrap_finds_a_real_difference_and_not_a_null_one() -> None:
    y = np.arange(400) % 2
    better, worse = _runs(y, 2.0, range(3), 0.05), _runs(y, 0.5, range(3, 6), 0.05)
    shown = paired_bootstrap(y, worse, better, n_boot=200)["auroc"]
    assert shown["delta"] > 0 and shown["low"] > 0 and shown["p"] < 0.02
    same = paired_bootstrap(y, better, better, n_boot=200)
    assert same["auroc"]["delta"] == 0 and same["auroc"]["low"] <= 0 <= same["auroc"]["high"]


def test_paired_bootstrap_interval_holds_the_seed_spread() -> None:
    """Seeds that disagree widen Δ's interval: the test set alone would call a difference."""
    y = np.arange(400) % 2
    steady_a, steady_b = _runs(y, 1.0, range(5), 0.0), _runs(y, 1.2, range(5, 10), 0.0)
    noisy_b = _runs(y, 1.2, range(5, 10), 0.8)
    steady = paired_bootstrap(y, steady_a, steady_b, n_boot=200)["balanced_accuracy"]
    noisy = paired_bootstrap(y, steady_a, noisy_b, n_boot=200)["balanced_accuracy"]
    assert noisy["high"] - noisy["low"] > 1.5 * (steady["high"] - steady["low"])


def test_compare_results_rows_and_refuses_different_test_samples() -> None:
    y = np.arange(200) % 2
    make = lambda enc, runs: {
        "encoder": enc,
        "task": "t",
        "probe": "linear",
        "ci_method": "two-level",  # noqa: E731
        "test_scores": np.stack(runs),
        "test_labels": y,
    }
    results = [make("base", _runs(y, 0.5, range(2), 0.05)), make("new", _runs(y, 2.0, range(2, 4), 0.05))]
    rows = compare_results(results, "base", n_boot=100)
    assert [r["metric"] for r in rows] == ["balanced_accuracy", "auroc", "binary_f1", "macro_f1"]
    auroc = rows[1]
    assert auroc["encoder"] == "new" and auroc["baseline"] == "base" and auroc["runs"] == [2, 2]
    assert auroc["delta"] > 0 and auroc["delong"]["delta"] > 0 and rows[0]["delong"] is None
    results[1]["test_labels"] = y[::-1].copy()
    with pytest.raises(ValueError, match="different test samples"):
        compare_results(results, "base", n_boot=10)
