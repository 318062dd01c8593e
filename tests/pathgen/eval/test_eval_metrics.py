"""Metrics against hand-worked values; bootstrap intervals; mean ± sd."""

from __future__ import annotations

import numpy as np
import pytest

from pathgen.eval.metrics import (
    METRICS,
    accuracy,
    auroc,
    balanced_accuracy,
    binary_f1,
    bootstrap_ci,
    bootstrap_metrics,
    classification_metrics,
    macro_f1,
    mean_sd,
    per_class_recall,
    two_level_bootstrap,
)

# 5 rows: class 0 recall 2/3, class 1 recall 1/2; precision 2/3 and 1/2.
Y5 = np.array([0, 0, 0, 1, 1])
PRED5 = np.array([0, 0, 1, 1, 0])


def test_hard_prediction_metrics_by_hand() -> None:
    assert accuracy(Y5, PRED5) == pytest.approx(3 / 5)
    assert balanced_accuracy(Y5, PRED5) == pytest.approx((2 / 3 + 1 / 2) / 2)  # 7/12
    assert macro_f1(Y5, PRED5) == pytest.approx((2 / 3 + 1 / 2) / 2)  # F1 = P = R per class here


def test_scores_are_turned_into_argmax_predictions() -> None:
    positive = np.array([0.2, 0.1, 0.7, 0.9, 0.4])  # > 0.5 → class 1: same as PRED5
    assert balanced_accuracy(Y5, positive) == pytest.approx(7 / 12)
    two_columns = np.stack([1 - positive, positive], axis=1)
    assert classification_metrics(Y5, two_columns)["accuracy"] == pytest.approx(3 / 5)


def test_binary_auroc_counts_correctly_ordered_pairs() -> None:
    y = np.array([0, 0, 1, 1])
    # positives 0.35, 0.8 against negatives 0.1, 0.4: 3 of 4 pairs ordered correctly
    assert auroc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    # a tie between a positive and a negative counts one half
    assert auroc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)


def test_multiclass_auroc_is_macro_one_vs_rest() -> None:
    y = np.array([0, 1, 2, 0])
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.3, 0.6], [0.3, 0.6, 0.1]])
    # class 0: positives 0.6, 0.3 vs 0.2, 0.1 → 1; class 1: 0.5 vs 0.3, 0.3, 0.6 → 2/3; class 2: 0.6 vs rest → 1
    assert auroc(y, probs) == pytest.approx((1 + 2 / 3 + 1) / 3)


def test_bad_score_shape_is_an_error() -> None:
    with pytest.raises(ValueError, match="scores must be"):
        auroc(np.array([0, 1]), np.zeros((2, 2, 2)))


def noisy_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary labels and positive-class scores with AUROC about 0.8."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    return y, 1 / (1 + np.exp(-(1.2 * (2 * y - 1) + rng.normal(size=n))))


def test_bootstrap_interval_contains_point_and_narrows_with_more_samples() -> None:
    widths = {}
    for n in (200, 5000):
        y, scores = noisy_scores(n, seed=n)
        point, low, high = bootstrap_ci(auroc, y, scores, n_boot=200, seed=0)
        assert point == pytest.approx(auroc(y, scores))
        assert low <= point <= high
        widths[n] = high - low
    # the width scales like 1/√n: 25× the samples → about 5× narrower; ask for at least 3×
    assert widths[5000] < widths[200] / 3


def test_bootstrap_is_stratified_and_seeded() -> None:
    y = np.zeros(200, dtype=int)
    y[[60, 150]] = 1  # two positives: an unstratified resample would lack them ~13 % of the time
    scores = np.linspace(0, 1, 200)

    def needs_both_classes(y_true: np.ndarray, s: np.ndarray) -> float:
        assert (y_true == 1).sum() == 2 and (y_true == 0).sum() == 198
        return auroc(y_true, s)

    first = bootstrap_ci(needs_both_classes, y, scores, n_boot=100, seed=3)
    assert first == bootstrap_ci(needs_both_classes, y, scores, n_boot=100, seed=3)
    assert first != bootstrap_ci(needs_both_classes, y, scores, n_boot=100, seed=4)


def test_bootstrap_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="3 labels but 2"):
        bootstrap_ci(accuracy, np.array([0, 1, 1]), np.array([0, 1]))


def tied_runs(n_classes: int, n_runs: int = 3, n: int = 600) -> tuple[np.ndarray, list[np.ndarray]]:
    """Labels and per-run probabilities rounded to one decimal (many ties); class 2 is never predicted."""
    rng = np.random.default_rng(n_classes)
    y = rng.integers(0, n_classes, size=n)
    runs = []
    for _ in range(n_runs):
        logits = np.round(rng.normal(size=(n, n_classes)) + 1.2 * np.eye(n_classes)[y], 1)
        if n_classes > 2:
            logits[:, 2] -= 10.0
        probs = np.exp(logits)
        runs.append(probs / probs.sum(axis=1, keepdims=True))
    return y, runs


@pytest.mark.parametrize("n_classes", [2, 3])
def test_fast_bootstrap_equals_scikit_learn_on_the_same_resamples(n_classes: int) -> None:
    y, runs = tied_runs(n_classes)
    fast = bootstrap_metrics(y, runs, n_boot=30, seed=11)
    stacked = np.stack(runs, axis=1)
    for name, fn in METRICS.items():

        def run_mean(y_true: np.ndarray, s: np.ndarray, fn=fn) -> float:
            return float(np.mean([fn(y_true, s[:, r]) for r in range(s.shape[1])]))

        np.testing.assert_allclose(fast[name], bootstrap_ci(run_mean, y, stacked, n_boot=30, seed=11), atol=1e-12)


def test_mean_sd_uses_the_sample_standard_deviation() -> None:
    mean, sd = mean_sd([1.0, 2.0, 3.0, 4.0])
    assert mean == pytest.approx(2.5)
    assert sd == pytest.approx(np.sqrt(5 / 3))  # Σ(x − 2.5)² = 5, over n − 1 = 3
    assert mean_sd([0.7]) == (0.7, None)  # one run has no spread: never "± 0.000"
    with pytest.raises(ValueError):
        mean_sd([])


def test_binary_f1_is_the_positive_class_f1_and_undefined_for_more_classes() -> None:
    # class 1: precision 1/2, recall 1/2 → F1 1/2; macro also averages class 0's F1 2/3
    assert binary_f1(Y5, PRED5) == pytest.approx(1 / 2)
    all_negative = np.zeros(10, dtype=np.int64)
    imbalanced = np.array([0] * 9 + [1])
    assert binary_f1(imbalanced, all_negative) == 0.0 and macro_f1(imbalanced, all_negative) == pytest.approx(9 / 19)
    assert np.isnan(binary_f1(np.array([0, 1, 2]), np.eye(3)))


def test_per_class_recall_by_hand() -> None:
    np.testing.assert_allclose(per_class_recall(Y5, PRED5, 3), [2 / 3, 1 / 2, np.nan])


def _runs_with_seed_spread(spread: float, n: int = 300, n_runs: int = 5) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(3)
    y = np.arange(n) % 2
    runs = []
    for _ in range(n_runs):
        quality = 1.0 + spread * rng.normal()
        p = 1 / (1 + np.exp(-(quality * (2 * y - 1) + rng.normal(size=n))))
        runs.append(np.stack([1 - p, p], axis=1))
    return y, runs


def test_two_level_interval_holds_the_seed_spread() -> None:
    y, runs = _runs_with_seed_spread(spread=1.0)
    per_seed = [balanced_accuracy(y, s) for s in runs]
    out = two_level_bootstrap(y, runs, n_boot=300)
    point, low, high = out["runs_and_samples"]["balanced_accuracy"]
    _, s_low, s_high = out["samples"]["balanced_accuracy"]
    assert point == pytest.approx(np.mean(per_seed))
    assert high - low > 1.5 * (s_high - s_low)  # the samples-only interval misses the seed spread
    assert low < np.mean(per_seed) < high


def test_two_level_equals_samples_only_for_one_run() -> None:
    y, runs = _runs_with_seed_spread(spread=0.0, n_runs=1)
    out = two_level_bootstrap(y, runs, n_boot=50)
    assert out["runs_and_samples"] == out["samples"]
