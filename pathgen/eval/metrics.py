"""Classification metrics, stratified bootstrap confidence intervals and mean ± sd over runs.

The metric set is eva's (kaiko-ai/eva ``BinaryClassificationMetrics`` /
``MulticlassClassificationMetrics``; balanced accuracy is its leaderboard metric), computed with
scikit-learn. F1 comes under two names because eva's means two things: for a binary task eva
reports torchmetrics ``BinaryF1Score``, the F1 of the positive class (`binary_f1`); for C > 2
``MulticlassF1Score`` with average="macro", the unweighted mean of per-class F1 (`macro_f1`).
Both are computed for binary tasks; `binary_f1` is NaN (not defined) for C > 2. Every metric takes ``scores``:
class probabilities of shape (N, C), or for a binary
task also the positive-class score of shape (N,). Predictions are the arg-max class (for two
classes: positive when p > 0.5; an exact tie goes to class 0).

Torch-free, so reports and the CLI can import it cheaply.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def _as_probabilities(scores: np.ndarray) -> np.ndarray:
    """(N,) positive-class scores → (N, 2); (N, C) passes through; anything else is an error."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        return np.stack([1.0 - scores, scores], axis=1)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (N,) or (N, C), got shape {scores.shape}")
    return scores


def predictions(scores: np.ndarray) -> np.ndarray:
    """Arg-max class of each row of `scores` ((N, C), or (N,) positive-class scores)."""
    return _as_probabilities(scores).argmax(axis=1)


def _as_pred(y_score_or_pred: np.ndarray) -> np.ndarray:
    """Accept either hard predictions (N,) of ints or scores; return hard predictions."""
    values = np.asarray(y_score_or_pred)
    if values.ndim == 1 and np.issubdtype(values.dtype, np.integer):
        return values
    return predictions(values)


def accuracy(y_true: np.ndarray, y_score_or_pred: np.ndarray) -> float:
    """Share of correct predictions."""
    return float(accuracy_score(y_true, _as_pred(y_score_or_pred)))


def balanced_accuracy(y_true: np.ndarray, y_score_or_pred: np.ndarray) -> float:
    """Mean per-class recall (eva's leaderboard metric); 1/C at chance whatever the class balance."""
    return float(balanced_accuracy_score(y_true, _as_pred(y_score_or_pred)))


def macro_f1(y_true: np.ndarray, y_score_or_pred: np.ndarray) -> float:
    """Unweighted mean of per-class F1 (a class never predicted scores 0, not an error)."""
    return float(f1_score(y_true, _as_pred(y_score_or_pred), average="macro", zero_division=0))


def binary_f1(y_true: np.ndarray, y_score_or_pred: np.ndarray) -> float:
    """F1 of the positive class (label 1), eva's ``BinaryF1Score``; NaN for a task with C > 2 classes.

    Which F1 a binary table shows matters: on a 90/10 task a model that predicts "negative" for
    everything has macro-F1 0.47 but binary F1 0.0.
    """
    values = np.asarray(y_score_or_pred)
    if values.ndim == 2 and values.shape[1] > 2 or max(int(np.max(y_true)), int(np.max(_as_pred(values)))) > 1:
        return float("nan")
    return float(f1_score(y_true, _as_pred(values), pos_label=1, average="binary", zero_division=0))


def per_class_recall(y_true: np.ndarray, y_score_or_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(C,) recall of each class (NaN for a class absent from `y_true`); their mean is balanced accuracy."""
    y_true, pred = np.asarray(y_true), _as_pred(y_score_or_pred)
    support = np.bincount(y_true, minlength=n_classes).astype(np.float64)
    hits = np.bincount(y_true[pred == y_true], minlength=n_classes).astype(np.float64)
    return np.divide(hits, support, out=np.full(n_classes, np.nan), where=support > 0)


def auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: binary on the positive-class score; macro one-vs-rest for C > 2.

    Args:
        y_true: (N,) integer labels in [0, C).
        scores: (N,) positive-class scores or (N, C) class probabilities (rows need not sum to 1
            for the binary case; for C > 2 they are renormalised, as scikit-learn requires).
    """
    probs = _as_probabilities(scores)
    if probs.shape[1] == 2:
        return float(roc_auc_score(y_true, probs[:, 1]))
    probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    return float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=np.arange(probs.shape[1])))


METRICS: dict[str, MetricFn] = {
    "balanced_accuracy": balanced_accuracy,
    "auroc": auroc,
    "macro_f1": macro_f1,
    "binary_f1": binary_f1,
    "accuracy": accuracy,
}


def classification_metrics(y_true: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """All of `METRICS` for one set of scores, as {name: value}."""
    return {name: fn(y_true, scores) for name, fn in METRICS.items()}


def class_indices(y_true: np.ndarray) -> list[np.ndarray]:
    """Row indices of each class present in `y_true`, in class order."""
    return [np.flatnonzero(y_true == c) for c in np.unique(y_true)]


def stratified_resample(groups: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Indices drawn with replacement within each class group, keeping every class's count.

    Keeping the class counts fixed means every resample contains every class, so AUROC and
    balanced accuracy are always defined and the interval reflects sampling within classes.
    """
    return np.concatenate([rng.choice(group, size=len(group)) for group in groups])


def _check_bootstrap_args(
    caller: str, y_true: np.ndarray, arrays: Sequence[np.ndarray], n_boot: int, alpha: float
) -> None:
    for values in arrays:
        if len(y_true) != len(values):
            raise ValueError(f"{caller}: {len(y_true)} labels but {len(values)} scores/predictions")
    if not 0.0 < alpha < 1.0 or n_boot < 1:
        raise ValueError(f"{caller}: need 0 < alpha < 1 and n_boot ≥ 1, got alpha={alpha}, n_boot={n_boot}")


def bootstrap_ci(
    metric_fn: MetricFn,
    y_true: np.ndarray,
    y_score_or_pred: np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13).

    Resamples the evaluation set `n_boot` times (stratified by class, see `stratified_resample`)
    and returns the (alpha/2, 1 − alpha/2) percentiles of the metric. `y_score_or_pred` is
    indexed along its first axis only, so it may carry extra axes (e.g. (N, runs, C)) for a
    `metric_fn` that averages over runs.

    Returns:
        (point, low, high), point being `metric_fn` on the full set.
    """
    y_true, values = np.asarray(y_true), np.asarray(y_score_or_pred)
    _check_bootstrap_args("bootstrap_ci", y_true, [values], n_boot, alpha)
    rng = np.random.default_rng(seed)
    point = float(metric_fn(y_true, values))
    groups = class_indices(y_true)
    boots = np.empty(n_boot)
    for b in range(n_boot):
        idx = stratified_resample(groups, rng)
        boots[b] = metric_fn(y_true[idx], values[idx])
    low, high = np.quantile(boots, [alpha / 2.0, 1.0 - alpha / 2.0])
    return point, float(low), float(high)


class WeightedMetrics:
    """All of `METRICS` for one (labels, scores) pair under row weights, without re-sorting.

    A bootstrap resample is the full set with integer weights (how often each row was drawn),
    so the predictions and the score order can be computed once: the confusion matrix is a
    weighted bincount, and AUROC is the weighted Mann–Whitney statistic (ties count ½) over
    score groups sorted once — the area scikit-learn's trapezoidal ROC gives. Equality with
    scikit-learn on the resampled rows is a test; it makes 1,000 resamples of 32k rows take
    seconds instead of minutes.
    """

    def __init__(self, y_true: np.ndarray, scores: np.ndarray) -> None:
        probs = _as_probabilities(scores)
        self.y, self.n_classes = np.asarray(y_true), probs.shape[1]
        self.pair = self.y * self.n_classes + probs.argmax(axis=1)
        if self.n_classes > 2:
            probs = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)  # as `auroc` does
        columns = [1] if self.n_classes == 2 else range(self.n_classes)
        self.ranked = [np.unique(probs[:, c], return_inverse=True)[1] for c in columns]
        self.positive = [(self.y == c).astype(np.float64) for c in columns]

    def __call__(self, weights: np.ndarray) -> dict[str, float]:
        c = self.n_classes
        confusion = np.bincount(self.pair, weights=weights, minlength=c * c).reshape(c, c)
        hits, support, predicted = np.diag(confusion), confusion.sum(axis=1), confusion.sum(axis=0)
        seen = (support > 0) | (predicted > 0)  # scikit-learn scores the labels present in y or pred
        f1 = np.divide(2 * hits, support + predicted, out=np.zeros(c), where=support + predicted > 0)
        aucs = [self._auroc(ranks, pos, weights) for ranks, pos in zip(self.ranked, self.positive)]
        return {
            "balanced_accuracy": float((hits[support > 0] / support[support > 0]).mean()),
            "auroc": float(np.mean(aucs)),
            "macro_f1": float(f1[seen].mean()),
            "binary_f1": float(f1[1]) if c == 2 else float("nan"),
            "accuracy": float(hits.sum() / confusion.sum()),
        }

    @staticmethod
    def _auroc(ranks: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> float:
        pos = np.bincount(ranks, weights=weights * positive)
        neg = np.bincount(ranks, weights=weights * (1.0 - positive))
        below = np.cumsum(neg) - neg
        return float((pos * (below + 0.5 * neg)).sum() / (pos.sum() * neg.sum()))


def bootstrap_metrics(
    y_true: np.ndarray, scores_per_run: Sequence[np.ndarray], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """(point, low, high) of the mean over runs of every metric in `METRICS`, on shared resamples.

    The same stratified resamples, in the same order, as `bootstrap_ci` with the same seed (so
    the two agree to rounding; a test holds them to it), but all metrics and all runs are scored
    on each resample with `WeightedMetrics`. Each resample scores every run and averages, so the
    interval surrounds the run mean reported beside it. Points use the scikit-learn metrics.
    """
    y_true = np.asarray(y_true)
    _check_bootstrap_args("bootstrap_metrics", y_true, scores_per_run, n_boot, alpha)
    evaluators = [WeightedMetrics(y_true, scores) for scores in scores_per_run]
    points = {m: float(np.mean([fn(y_true, s) for s in scores_per_run])) for m, fn in METRICS.items()}
    rng, groups = np.random.default_rng(seed), class_indices(y_true)
    boots = {m: np.empty(n_boot) for m in METRICS}
    for b in range(n_boot):
        weights = np.bincount(stratified_resample(groups, rng), minlength=len(y_true)).astype(np.float64)
        per_run = [evaluate(weights) for evaluate in evaluators]
        for m in METRICS:
            boots[m][b] = np.mean([values[m] for values in per_run])
    quantiles = {m: np.quantile(boots[m], [alpha / 2.0, 1.0 - alpha / 2.0]) for m in METRICS}
    return {m: (points[m], float(quantiles[m][0]), float(quantiles[m][1])) for m in METRICS}


def two_level_bootstrap(
    y_true: np.ndarray, scores_per_run: Sequence[np.ndarray], n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Intervals of the run mean of every metric: two-level (runs, then samples) and samples only.

    Two-level (hierarchical) percentile bootstrap (Davison & Hinkley 1997, §3.8): each resample
    first draws R runs with replacement from the R runs (seeds), then the test samples
    (stratified, `stratified_resample`), and averages the drawn runs' metrics on those samples.
    Its interval therefore holds both sources of spread — the head's seed and the test set — and
    a seed mean beside per-seed values that disagree gets an interval as wide as they are. The
    samples-only interval (every run on each resample, the run draw skipped) is returned too,
    from the same resamples; with one run the two are identical.

    Returns:
        {"runs_and_samples": {metric: (point, low, high)}, "samples": {...}}; point = run mean.
    """
    y_true = np.asarray(y_true)
    _check_bootstrap_args("two_level_bootstrap", y_true, scores_per_run, n_boot, alpha)
    evaluators = [WeightedMetrics(y_true, scores) for scores in scores_per_run]
    points = {m: float(np.mean([fn(y_true, s) for s in scores_per_run])) for m, fn in METRICS.items()}
    rng, groups, n_runs = np.random.default_rng(seed), class_indices(y_true), len(scores_per_run)
    boots = {kind: {m: np.empty(n_boot) for m in METRICS} for kind in ("runs_and_samples", "samples")}
    for b in range(n_boot):
        run_counts = np.bincount(rng.integers(n_runs, size=n_runs), minlength=n_runs) / n_runs
        weights = np.bincount(stratified_resample(groups, rng), minlength=len(y_true)).astype(np.float64)
        per_run = [evaluate(weights) for evaluate in evaluators]
        for m in METRICS:
            values = np.array([v[m] for v in per_run])
            boots["samples"][m][b] = values.mean()
            boots["runs_and_samples"][m][b] = run_counts @ values
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    for kind, per_metric in boots.items():
        out[kind] = {}
        for m, values in per_metric.items():
            low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
            out[kind][m] = (points[m], float(low), float(high))
    return out


def mean_sd(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof = 1, as eva's ``statistics.stdev``) over runs.

    A single run has no spread: its sd is None (not 0.0), so a table shows "1 run", never "± 0.000".
    """
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("mean_sd: no values")
    sd = float(array.std(ddof=1)) if array.size > 1 else None
    return float(array.mean()), sd
