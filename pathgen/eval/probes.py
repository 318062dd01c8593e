"""Patch-level probes on frozen features and the runner that repeats and summarises them.

Probes: eva's linear head (`linear_probe`, from `pathgen.eval.linear_probe`), scikit-learn
logistic regression (`logistic_probe`, here), DINO's weighted kNN (`knn_probe`, from
`pathgen.eval.knn_probe`) and SimpleShot few-shot episodes (`few_shot`, from
`pathgen.eval.few_shot`); all are importable from this module. Each takes (N, D) features and
(N,) labels in [0, C) already in memory and returns a `ProbeResult` (few-shot: summaries).

`run_probe` runs one probe over several seeds (eva reports 5 runs for patch tasks) and
summarises them as a plain, JSON-ready dict that `pathgen.eval.report` turns into tables and
plots.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_curve
from sklearn.preprocessing import StandardScaler

from pathgen.eval.few_shot import FewShotConfig, few_shot
from pathgen.eval.knn_probe import KnnProbeConfig, knn_probe
from pathgen.eval.linear_probe import LinearProbeConfig, linear_probe
from pathgen.eval.metrics import (
    METRICS,
    balanced_accuracy,
    bootstrap_metrics,
    classification_metrics,
    mean_sd,
    per_class_recall,
    two_level_bootstrap,
)
from pathgen.eval.probe_result import ProbeResult, check_splits

__all__ = [
    "FewShotConfig",
    "KnnProbeConfig",
    "LinearProbeConfig",
    "LogisticProbeConfig",
    "ProbeResult",
    "add_bootstrap_ci",
    "few_shot",
    "knn_probe",
    "linear_probe",
    "logistic_probe",
    "run_probe",
    "summarise_runs",
]


@dataclass
class LogisticProbeConfig:
    """scikit-learn L2 logistic regression, C picked on validation balanced accuracy.

    Attributes:
        c_grid: Inverse regularisation strengths tried, 1e-4..1e2 in half-decades.
        max_iter: lbfgs iteration cap (runs that hit it are listed in `extra`).
        standardize: Z-score features with train statistics before fitting.
    """

    c_grid: tuple[float, ...] = tuple(float(10.0**e) for e in np.arange(-4.0, 2.01, 0.5))
    max_iter: int = 1000
    standardize: bool = True


def fit_logistic(train: tuple[np.ndarray, np.ndarray], c: float, max_iter: int) -> tuple[LogisticRegression, bool]:
    """L2 logistic regression at one C from a cold start (coefficients 0); (model, converged).

    A cold start makes the fitted model a function of (train, C, max_iter) alone. A warm start
    from the previous C of a grid does not: where lbfgs stops at `max_iter` before the optimum
    (large C, raw features), the answer depends on the path that reached it (measured for
    pathgen: test balanced accuracy 0.844 alone vs 0.858 inside the 7-value grid at C = 1000).
    """
    with warnings.catch_warnings(record=True) as caught:  # note non-convergence instead of printing it
        warnings.simplefilter("always")
        model = LogisticRegression(C=c, max_iter=max_iter).fit(*train)
    for other in (w for w in caught if not issubclass(w.category, ConvergenceWarning)):
        warnings.warn(other.message, other.category, stacklevel=2)
    return model, not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def sweep_c(
    train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], cfg: LogisticProbeConfig
) -> tuple[LogisticRegression, list[dict[str, float]], list[float]]:
    """Fit each C from a cold start (`fit_logistic`); return the best-on-val model, the history, unconverged Cs.

    Every C is fitted independently, so the kept model is exactly the one a single-C run at the
    selected C gives, whatever else the grid holds.
    """
    best_score, best_model, history, not_converged = -np.inf, None, [], []
    for c in sorted(cfg.c_grid):
        model, converged = fit_logistic(train, c, cfg.max_iter)
        if not converged:
            not_converged.append(c)
        score = balanced_accuracy(val[1], model.predict_proba(val[0]))
        history.append({"C": c, "val_balanced_accuracy": score})
        if score > best_score:
            best_score, best_model = score, model
    return best_model, history, not_converged


def logistic_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    cfg: LogisticProbeConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> ProbeResult:
    """Logistic-regression probe: the stable alternative to the linear head on small sets.

    Multinomial L2 logistic regression (lbfgs) on train-standardised features, one cold-start fit
    per C (`sweep_c`); the C with the best validation balanced accuracy is kept (ties go to the
    smaller C, i.e. stronger regularisation). The result depends only on the selected C: the grid
    and a one-value grid at that C give the same model. Deterministic: `seed` and `device` are
    accepted for a uniform signature only.
    """
    cfg = cfg or LogisticProbeConfig()
    (tx, ty), (vx, vy), (sx, sy), _ = check_splits((train_x, train_y), (val_x, val_y), (test_x, test_y))
    tx, vx, sx = (a.astype(np.float64) for a in (tx, vx, sx))  # probabilities in float64, like the other probes
    if cfg.standardize:
        scaler = StandardScaler().fit(tx)
        tx, vx, sx = scaler.transform(tx), scaler.transform(vx), scaler.transform(sx)
    best_model, history, not_converged = sweep_c((tx, ty), (vx, vy), cfg)
    test_scores = best_model.predict_proba(sx)
    return ProbeResult(
        name="logistic",
        metrics={
            "val": classification_metrics(vy, best_model.predict_proba(vx)),
            "test": classification_metrics(sy, test_scores),
        },
        selected={"C": float(best_model.C)},
        test_scores=test_scores,
        extra={"val_history": history, "not_converged_C": not_converged},
    )


ProbeFn = Callable[..., ProbeResult]
PROBES: dict[str, tuple[ProbeFn, type, bool]] = {  # name → (probe, config class, seed changes the result)
    "linear": (linear_probe, LinearProbeConfig, True),
    "logistic": (logistic_probe, LogisticProbeConfig, False),
    "knn": (knn_probe, KnnProbeConfig, False),
}
CI_METHOD_SEEDS = (
    "two-level percentile bootstrap: each resample draws the seeds (runs) with replacement, then the test samples "
    "stratified by class, and averages the drawn runs; the interval holds seed and test-set variation "
    "(ci_samples_only: the test samples resampled, every seed kept)"
)
CI_METHOD_ONE_RUN = "stratified percentile bootstrap of the test samples (one deterministic run)"
ROC_GRID = np.linspace(0.0, 1.0, 501)


def roc_points(y_true: np.ndarray, scores_per_run: Sequence[np.ndarray]) -> dict[str, Any] | None:
    """Mean binary ROC curve over runs on a common FPR grid, with its sd band; None if C > 2.

    Vertical averaging (Fawcett, "An introduction to ROC analysis", Pattern Recognition Letters
    2006, §8): each run's TPR is read at the grid's FPRs and averaged. "auroc_of_curve" is the
    trapezoidal area of the mean curve, the number the plot's legend shows, so legend and curve
    agree; it differs from the mean of the runs' AUROCs by the grid's interpolation only.
    """
    if scores_per_run[0].shape[1] != 2:
        return None
    curves = []
    for scores in scores_per_run:
        fpr, tpr, _ = roc_curve(y_true, scores[:, 1])
        curve = np.interp(ROC_GRID, fpr, tpr)
        curve[0] = 0.0
        curves.append(curve)
    curves = np.stack(curves)
    mean = curves.mean(axis=0)
    sd = curves.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros_like(mean)
    return {
        "fpr": np.round(ROC_GRID, 5).tolist(),
        "tpr": np.round(mean, 5).tolist(),
        "tpr_sd": np.round(sd, 5).tolist(),
        "runs": len(curves),
        "auroc_of_curve": float(np.trapezoid(np.round(mean, 5), np.round(ROC_GRID, 5))),
    }


def add_bootstrap_ci(
    result: ProbeResult, test_y: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> ProbeResult:
    """Fill `result.ci["test"]` with percentile bootstrap intervals of every metric (in place)."""
    intervals = bootstrap_metrics(test_y, [result.test_scores], n_boot, alpha, seed)
    result.ci["test"] = {name: (low, high) for name, (_, low, high) in intervals.items()}
    return result


def _spread(values: list[float]) -> dict[str, Any]:
    mean, sd = mean_sd(values)
    return {"mean": mean, "sd": sd, "values": values}


def _recall_spread(test_y: np.ndarray, runs: Sequence[ProbeResult], n_classes: int) -> dict[str, Any]:
    """Per-class recall on test: mean and sd over runs (sd None for one run), one entry per class."""
    per_run = np.stack([per_class_recall(test_y, r.test_scores, n_classes) for r in runs])
    sd = per_run.std(axis=0, ddof=1).tolist() if len(runs) > 1 else None
    return {"mean": per_run.mean(axis=0).tolist(), "sd": sd}


def summarise_runs(
    name: str, runs: Sequence[ProbeResult], test_y: np.ndarray, n_boot: int = 1000, alpha: float = 0.05
) -> dict[str, Any]:
    """Mean ± sd over runs per split and metric, two-level bootstrap intervals on test, mean ROC curve.

    Intervals come from `metrics.two_level_bootstrap` (resampling seed 0): "ci" resamples the runs
    and then the test samples, so it holds the seed spread shown beside it; "ci_samples_only"
    keeps every run. A single run has sd None and "ci_method" says it is one run.

    Returns a JSON-ready dict: {"probe", "runs", "metrics": {split: {metric: {"mean", "sd",
    "values"}}}, "ci": {"test": {metric: [low, high]}}, "ci_samples_only", "alpha", "ci_method",
    "per_class_recall": {"test": {"mean", "sd"}}, "selected" (per run), "roc" (binary: the mean
    curve, see `roc_points`; else None), "n_test", "n_classes", "report_split" ("test"; the bench
    sets "val" where the protocol reports its selection split), and two arrays that
    `report.write_json` stores in scores.npz instead of the JSON: "test_scores" (runs, N, C) and
    "test_labels" (N,), for paired comparisons.
    """
    test_y = np.asarray(test_y)
    n_classes = int(runs[0].test_scores.shape[1])
    metrics = {split: {m: _spread([r.metrics[split][m] for r in runs]) for m in METRICS} for split in runs[0].metrics}
    intervals = two_level_bootstrap(test_y, [r.test_scores for r in runs], n_boot, alpha)
    return {
        "probe": name,
        "runs": len(runs),
        "metrics": metrics,
        "ci": {"test": {m: [low, high] for m, (_, low, high) in intervals["runs_and_samples"].items()}},
        "ci_samples_only": {"test": {m: [low, high] for m, (_, low, high) in intervals["samples"].items()}},
        "alpha": alpha,
        "ci_method": CI_METHOD_SEEDS if len(runs) > 1 else CI_METHOD_ONE_RUN,
        "per_class_recall": {"test": _recall_spread(test_y, runs, n_classes)},
        "selected": [r.selected for r in runs],
        "roc": roc_points(test_y, [r.test_scores for r in runs]),
        "n_test": int(len(test_y)),
        "n_classes": n_classes,
        "report_split": "test",
        "test_scores": np.stack([r.test_scores for r in runs]).astype(np.float32),
        "test_labels": test_y.astype(np.int64),
    }


def run_probe(
    name: str,
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    cfg: Any = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    device: str = "cpu",
    n_boot: int = 1000,
    alpha: float = 0.05,
) -> list[dict[str, Any]]:
    """Run probe `name` ("linear", "logistic", "knn" or "few_shot") and summarise it.

    The linear probe runs once per seed (eva: 5 runs); logistic and kNN are deterministic and run
    once (seeds[0]; reported as one run, sd None). "few_shot" runs its episodes from seeds[0] and gives one summary per
    shot count. Always returns a list of summaries (see `summarise_runs`), each with the config.
    """
    if name not in PROBES and name != "few_shot":
        raise ValueError(f"unknown probe {name!r}; choose from {sorted([*PROBES, 'few_shot'])}")
    probe, config_class, seeded = PROBES[name] if name in PROBES else (few_shot, FewShotConfig, True)
    cfg = cfg or config_class()
    if not isinstance(cfg, config_class):
        raise TypeError(f"probe {name!r} takes a {config_class.__name__}, got {type(cfg).__name__}")
    if name == "few_shot":
        return few_shot(train_x, train_y, test_x, test_y, cfg, seed=seeds[0], device=device)
    run_seeds = list(seeds) if seeded else list(seeds)[:1]
    runs = [probe(train_x, train_y, val_x, val_y, test_x, test_y, cfg, seed=s, device=device) for s in run_seeds]
    summary = summarise_runs(name, runs, test_y, n_boot, alpha)
    summary.update(seeds=run_seeds, config=dataclasses.asdict(cfg))
    return [summary]
