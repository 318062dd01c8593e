"""The logistic probe's answer depends only on the selected C, not on the rest of the grid."""

from __future__ import annotations

import warnings

import numpy as np
from eval_features import linear_signal, splits
from sklearn.linear_model import LogisticRegression

from pathgen.eval.metrics import balanced_accuracy
from pathgen.eval.probes import LogisticProbeConfig, logistic_probe

GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)


def _badly_scaled() -> tuple[np.ndarray, ...]:
    """Raw (unstandardised) features with scales 0.1…30: lbfgs stops at max_iter before the optimum."""
    tx, ty, vx, vy, sx, sy = splits(linear_signal(n_classes=3, dim=64, noise=0.8, seed=1))
    scale = np.linspace(0.1, 30, 64).astype(np.float32)
    return tx * scale, ty, vx * scale, vy, sx * scale, sy


def test_warm_start_would_change_the_answer_here() -> None:
    """The regime the test below needs: a warm-started path gives another model than a cold start."""
    tx, ty, _, _, sx, sy = _badly_scaled()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm = LogisticRegression(max_iter=20, warm_start=True)
        for c in GRID:
            warm.set_params(C=c).fit(tx, ty)
        cold = LogisticRegression(max_iter=20, C=GRID[-1]).fit(tx, ty)
    assert abs(balanced_accuracy(sy, warm.predict_proba(sx)) - balanced_accuracy(sy, cold.predict_proba(sx))) > 0.01


def test_grid_and_single_c_give_the_same_result() -> None:
    data = _badly_scaled()
    grid = logistic_probe(*data, cfg=LogisticProbeConfig(c_grid=GRID, max_iter=20, standardize=False))
    chosen = grid.selected["C"]
    alone = logistic_probe(*data, cfg=LogisticProbeConfig(c_grid=(chosen,), max_iter=20, standardize=False))
    assert chosen > min(GRID) and chosen in grid.extra["not_converged_C"]  # a C a warm start would reach by a path
    for metric, value in grid.metrics["test"].items():
        assert abs(value - alone.metrics["test"][metric]) < 1e-3 or (
            np.isnan(value) and np.isnan(alone.metrics["test"][metric])
        )
    np.testing.assert_allclose(grid.test_scores, alone.test_scores, atol=1e-9)
