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

import copy
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
from pathgen.eval.metrics import METRICS, balanced_accuracy, bootstrap_metrics, classification_metrics, mean_sd
from pathgen.eval.probe_result import ProbeResult, check_splits

__all__ = [
    "FewShotConfig", "KnnProbeConfig", "LinearProbeConfig", "LogisticProbeConfig", "ProbeResult", "add_bootstrap_ci",
    "few_shot", "knn_probe", "linear_probe", "logistic_probe", "run_probe", "summarise_runs",
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


def sweep_c(
    train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray], cfg: LogisticProbeConfig
) -> tuple[LogisticRegression, list[dict[str, float]], list[float]]:
    """Fit for each C (increasing, warm-started); return the best-on-val model, the history, unconverged Cs."""
    model = LogisticRegression(max_iter=cfg.max_iter, warm_start=True)
    best_score, best_model, history, not_converged = -np.inf, None, [], []
    for c in sorted(cfg.c_grid):
        with warnings.catch_warnings(record=True) as caught:  # note non-convergence per C instead of printing it
            warnings.simplefilter("always")
            model.set_params(C=c).fit(*train)
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            not_converged.append(c)
        for other in (w for w in caught if not issubclass(w.category, ConvergenceWarning)):
            warnings.warn(other.message, other.category, stacklevel=2)
        score = balanced_accuracy(val[1], model.predict_proba(val[0]))
        history.append({"C": c, "val_balanced_accuracy": score})
        if score > best_score:
            best_score, best_model = score, copy.deepcopy(model)
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

    Multinomial L2 logistic regression (lbfgs) on train-standardised features, one fit per C in
    increasing order (warm-started: the objective is strictly convex, so the optimum does not
    depend on the start); the C with the best validation balanced accuracy is kept (ties go to
    the smaller C, i.e. stronger regularisation). The kept model is the one fitted on train at
    that C, which is what a refit on train would give. Deterministic: `seed` and `device` are
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
    "stratified percentile bootstrap of the test set; each resample scores every seed's model and averages, "
    "so the interval surrounds the seed mean and reflects test-set sampling (sd reflects seed variation)"
)


def roc_points(y_true: np.ndarray, scores: np.ndarray, max_points: int = 400) -> dict[str, list[float]] | None:
    """Binary ROC curve of (N, 2) scores as {"fpr", "tpr"} lists (thinned to ≤ max_points); None if C > 2."""
    if scores.shape[1] != 2:
        return None
    fpr, tpr, _ = roc_curve(y_true, scores[:, 1])
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": np.round(fpr, 5).tolist(), "tpr": np.round(tpr, 5).tolist()}


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


def summarise_runs(
    name: str, runs: Sequence[ProbeResult], test_y: np.ndarray, n_boot: int = 1000, alpha: float = 0.05
) -> dict[str, Any]:
    """Mean ± sd over runs per split and metric, a pooled bootstrap CI on test, and the ROC of run 0.

    The interval comes from `metrics.bootstrap_metrics` (resampling seed 0): every resample of
    the test set scores every run and averages, so it brackets the run mean shown beside it.

    Returns a JSON-ready dict: {"probe", "runs", "metrics": {split: {metric: {"mean", "sd",
    "values"}}}, "ci": {"test": {metric: [low, high]}}, "alpha", "ci_method", "selected" (per run),
    "roc" (binary: {"fpr", "tpr"} of the first run; else None), "n_test", "n_classes"}.
    """
    test_y = np.asarray(test_y)
    metrics = {split: {m: _spread([r.metrics[split][m] for r in runs]) for m in METRICS} for split in runs[0].metrics}
    intervals = bootstrap_metrics(test_y, [r.test_scores for r in runs], n_boot, alpha)
    ci = {m: [low, high] for m, (_, low, high) in intervals.items()}
    return {
        "probe": name,
        "runs": len(runs),
        "metrics": metrics,
        "ci": {"test": ci},
        "alpha": alpha,
        "ci_method": CI_METHOD_SEEDS,
        "selected": [r.selected for r in runs],
        "roc": roc_points(test_y, runs[0].test_scores),
        "n_test": int(len(test_y)),
        "n_classes": int(runs[0].test_scores.shape[1]),
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
    once (seeds[0]; sd 0). "few_shot" runs its episodes from seeds[0] and gives one summary per
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
