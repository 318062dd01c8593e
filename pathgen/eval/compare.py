"""Paired comparison of two encoders on the same test samples: Δ with its 95 % interval and a p-value.

Two encoders benchmarked on one test set are not independent samples: each test sample is
scored by both, so the question "is B better than A?" is about the per-sample pairing, and two
overlapping marginal intervals say little. Two tests, both on the stored per-run test scores:

- `paired_bootstrap`: every resample draws each encoder's runs (seeds) with replacement, then
  one set of test samples (stratified by class) shared by both encoders, and records
  Δ = mean over B's drawn runs − mean over A's drawn runs of the metric. The percentile interval
  of Δ and the two-sided bootstrap p-value (twice the smaller share of resamples on either side
  of 0, with the +1 correction of Davison & Hinkley 1997, eq. 4.11) hold seed and test-set
  variation. Works for every metric in `metrics.METRICS`.
- `delong_test`: DeLong, DeLong & Clarke-Pearson, "Comparing the areas under two or more
  correlated receiver operating characteristic curves" (Biometrics 1988), computed with the
  midrank algorithm of Sun & Xu, "Fast implementation of DeLong's algorithm" (IEEE Signal
  Processing Letters 2014). For binary tasks; each encoder's score is its run-mean positive-class
  probability, so the test compares the AUROCs of the seed-averaged scores.

Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import norm

from pathgen.eval.metrics import METRICS, WeightedMetrics, class_indices, stratified_resample

COMPARED_METRICS = ("balanced_accuracy", "auroc", "binary_f1", "macro_f1")
PAIRED_METHOD = (
    "paired percentile bootstrap of Δ = B − A: each resample draws each encoder's seeds with "
    "replacement and one stratified resample of the shared test samples; p two-sided"
)


def bootstrap_p_value(deltas: np.ndarray) -> float:
    """Two-sided p of H0: Δ = 0 from bootstrap draws of Δ: 2 · (min(#≤0, #≥0) + 1) / (n + 1), at most 1."""
    deltas = np.asarray(deltas)
    deltas = deltas[np.isfinite(deltas)]
    if deltas.size == 0:
        return float("nan")
    tail = min(int((deltas <= 0).sum()), int((deltas >= 0).sum()))
    return float(min(1.0, 2.0 * (tail + 1) / (deltas.size + 1)))


def paired_bootstrap(
    y_true: np.ndarray,
    runs_a: Sequence[np.ndarray],
    runs_b: Sequence[np.ndarray],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Δ (B − A) of the run means of every metric, its percentile interval and bootstrap p (see module).

    Args:
        y_true: (N,) labels of the shared test samples.
        runs_a, runs_b: Per-run (N, C) scores of encoder A and B on those samples, same order.

    Returns:
        {metric: {"delta", "low", "high", "p"}}; Δ is computed on the full test set.
    """
    y_true = np.asarray(y_true)
    for runs in (runs_a, runs_b):
        if not runs or any(len(s) != len(y_true) for s in runs):
            raise ValueError(f"paired_bootstrap: every run needs {len(y_true)} scores, one per shared test sample")
    evaluators = [[WeightedMetrics(y_true, s) for s in runs] for runs in (runs_a, runs_b)]
    ones = np.ones(len(y_true))
    full = [[e(ones) for e in side] for side in evaluators]
    rng, groups = np.random.default_rng(seed), class_indices(y_true)
    draws = {m: np.empty(n_boot) for m in METRICS}
    for b in range(n_boot):
        picks = [rng.integers(len(side), size=len(side)) for side in evaluators]
        weights = np.bincount(stratified_resample(groups, rng), minlength=len(y_true)).astype(np.float64)
        means = []
        for side, pick in zip(evaluators, picks):
            scored = {i: side[i](weights) for i in set(pick.tolist())}
            means.append({m: np.mean([scored[i][m] for i in pick]) for m in METRICS})
        for m in METRICS:
            draws[m][b] = means[1][m] - means[0][m]
    out = {}
    for m in METRICS:
        delta = float(np.mean([v[m] for v in full[1]]) - np.mean([v[m] for v in full[0]]))
        finite = draws[m][np.isfinite(draws[m])]
        low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2]) if finite.size else (np.nan, np.nan)
        out[m] = {"delta": delta, "low": float(low), "high": float(high), "p": bootstrap_p_value(draws[m])}
    return out


def midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values` with ties given the mean of the ranks they span (Sun & Xu 2014, alg. 1)."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    _, start, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks[order] = np.repeat(start + (counts + 1) / 2.0, counts)
    return ranks


def delong_components(scores: np.ndarray, positive: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUROC and DeLong's structural components V10 (per positive) and V01 (per negative) of one score.

    V10_i is the share of negatives a positive outranks (ties ½), V01_j the share of positives that
    outrank negative j; both average to the AUROC.
    """
    pos, neg = scores[positive], scores[~positive]
    m, n = len(pos), len(neg)
    all_ranks, pos_ranks, neg_ranks = midranks(np.concatenate([pos, neg])), midranks(pos), midranks(neg)
    v10 = (all_ranks[:m] - pos_ranks) / n
    v01 = 1.0 - (all_ranks[m:] - neg_ranks) / m
    return float(v10.mean()), v10, v01


def delong_test(y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> dict[str, float]:
    """DeLong's test of AUROC(B) = AUROC(A) for two positive-class scores of the same samples.

    Returns:
        {"auroc_a", "auroc_b", "delta" (B − A), "se", "low", "high" (95 % normal interval), "z", "p"}.
    """
    y_true = np.asarray(y_true)
    if set(np.unique(y_true).tolist()) != {0, 1}:
        raise ValueError("delong_test: labels must be binary 0/1 with both classes present")
    positive = y_true == 1
    (auc_a, v10_a, v01_a), (auc_b, v10_b, v01_b) = (
        delong_components(np.asarray(s, np.float64), positive) for s in (score_a, score_b)
    )
    s10, s01 = np.cov(np.stack([v10_a, v10_b])), np.cov(np.stack([v01_a, v01_b]))
    cov = s10 / positive.sum() + s01 / (~positive).sum()
    variance = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    delta = auc_b - auc_a
    se = float(np.sqrt(max(variance, 0.0)))
    z = delta / se if se > 0 else (0.0 if delta == 0 else float(np.sign(delta) * np.inf))
    return {
        "auroc_a": auc_a,
        "auroc_b": auc_b,
        "delta": float(delta),
        "se": se,
        "low": float(delta - 1.96 * se),
        "high": float(delta + 1.96 * se),
        "z": float(z),
        "p": float(2 * norm.sf(abs(z))),
    }


def _comparable(result: dict[str, Any]) -> bool:
    return result.get("test_scores") is not None and not str(result.get("ci_method", "")).startswith("normal")


def compare_results(
    results: Sequence[dict[str, Any]], baseline: str, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> list[dict[str, Any]]:
    """Every other encoder against `baseline` on each task / probe both were run on (paired tests).

    Results need "test_scores" ((runs, N, C)) and "test_labels"; few-shot summaries (episode
    intervals) are skipped. One row per (task, probe, encoder, metric) with the paired-bootstrap
    Δ, interval and p, and for binary AUROC also DeLong's test on the seed-mean scores.
    """
    by_key = {(r["encoder"], r["task"], r["probe"]): r for r in results if _comparable(r)}
    rows = []
    for (encoder, task, probe), other in by_key.items():
        base = by_key.get((baseline, task, probe))
        if encoder == baseline or base is None:
            continue
        labels = np.asarray(base["test_labels"])
        if not np.array_equal(labels, np.asarray(other["test_labels"])):
            raise ValueError(f"{task} / {probe}: {encoder} and {baseline} were scored on different test samples")
        paired = paired_bootstrap(labels, list(base["test_scores"]), list(other["test_scores"]), n_boot, alpha, seed)
        delong = None
        if np.asarray(base["test_scores"]).shape[-1] == 2:
            delong = delong_test(
                labels, np.mean(base["test_scores"], axis=0)[:, 1], np.mean(other["test_scores"], axis=0)[:, 1]
            )
        for metric in COMPARED_METRICS:
            if not np.isfinite(paired[metric]["delta"]):
                continue
            rows.append(
                {
                    "task": task,
                    "probe": probe,
                    "encoder": encoder,
                    "baseline": baseline,
                    "metric": metric,
                    "report_split": base.get("report_split", "test"),
                    "n_test": int(len(labels)),
                    "runs": [len(base["test_scores"]), len(other["test_scores"])],
                    **paired[metric],
                    "method": PAIRED_METHOD,
                    "delong": delong if metric == "auroc" else None,
                }
            )
    return rows
