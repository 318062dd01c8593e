"""The result every probe returns, and the input checks every probe runs first.

Probes take features already in memory — (N, D) float arrays for train / val / test and (N,)
integer labels in [0, C) with every class present in train — so the checks live in one place
and their errors say which split is wrong and what to do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Split = tuple[np.ndarray, np.ndarray]  # (features (N, D), labels (N,))


@dataclass
class ProbeResult:
    """What one probe run produced.

    Attributes:
        name: Probe name ("linear", "logistic", "knn", "few_shot_k8", …).
        metrics: {split: {metric: value}} for "val" and "test" (see `metrics.METRICS`).
        ci: {split: {metric: (low, high)}}; empty from a probe, filled by `probes.add_bootstrap_ci`.
        selected: Hyperparameters chosen on validation (step, C, …) or fixed (k).
        test_scores: (N_test, C) class probabilities / vote shares of the selected model.
        extra: Anything else worth keeping (validation history, convergence notes).
    """

    name: str
    metrics: dict[str, dict[str, float]]
    ci: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    selected: dict[str, Any] = field(default_factory=dict)
    test_scores: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy without the (large) score array."""
        out = dataclasses.asdict(self)
        out.pop("test_scores")
        return out


def check_split(features: np.ndarray, labels: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one split and return (float32 (N, D) features, int64 (N,) labels)."""
    features = np.asarray(features)
    labels = np.asarray(labels)
    if features.ndim != 2 or labels.ndim != 1 or len(features) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"{split}: need features (N, D) and labels (N,) with N ≥ 1, got {features.shape} and {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{split}: labels must be integers 0..C-1, got dtype {labels.dtype}; map class names first")
    if not np.isfinite(features).all():
        raise ValueError(f"{split}: features contain NaN or inf (a broken extraction?)")
    return features.astype(np.float32, copy=False), labels.astype(np.int64, copy=False)


def count_classes(train_y: np.ndarray, *other_y: np.ndarray) -> int:
    """C such that labels are 0..C-1; every class must occur in train, no split may exceed it."""
    n_classes = int(train_y.max()) + 1
    missing = sorted(set(range(n_classes)) - set(np.unique(train_y).tolist()))
    if train_y.min() < 0 or missing or n_classes < 2:
        raise ValueError(f"train labels must cover 0..C-1 with C ≥ 2; missing classes {missing}, min {train_y.min()}")
    for labels in other_y:
        if labels.min() < 0 or labels.max() >= n_classes:
            raise ValueError(f"val/test labels outside 0..{n_classes - 1} seen in train: {np.unique(labels)}")
    return n_classes


def check_splits(train: Split, val: Split, test: Split) -> tuple[Split, Split, Split, int]:
    """`check_split` on train, val and test, then `count_classes`; returns the three and C."""
    checked = [check_split(x, y, name) for (x, y), name in zip((train, val, test), ("train", "val", "test"))]
    dims = {x.shape[1] for x, _ in checked}
    if len(dims) > 1:
        raise ValueError(f"train/val/test features differ in width {sorted(dims)}: were they made by one encoder?")
    n_classes = count_classes(checked[0][1], checked[1][1], checked[2][1])
    return checked[0], checked[1], checked[2], n_classes
