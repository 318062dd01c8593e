"""Diversity: how different the K views generated from one source are from each other.

A generator that copies its conditioning (mode collapse onto the source) makes views that are all
alike; view-based SSL needs variety (GenView, GenerativeSSL). The statistic is the mean pairwise
distance among the K views of each source, averaged over sources, in an encoder's feature space —
as cosine distance (1 − cos, scale-free) and as L2. Its reference is the same statistic for groups
of K *random real tiles* (how different unrelated tiles are): a ratio near 1 means views are as
varied as random tiles (conditioning lost), near 0 means copies.
"""

from __future__ import annotations

import numpy as np

from pathgen.generation_metrics.fidelity import l2_normalise

METRICS = ("cosine", "l2")


def pairwise_distances(group: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Distances of every pair i < j of the rows of a (K, D) array: cosine distance or L2."""
    if metric not in METRICS:
        raise ValueError(f"unknown distance {metric!r}; choose one of {METRICS}")
    group = np.asarray(group, dtype=np.float64)
    upper = np.triu_indices(len(group), k=1)
    if metric == "cosine":
        unit = l2_normalise(group)
        return 1.0 - (unit @ unit.T)[upper]
    squared = (group ** 2).sum(axis=1)
    gram = squared[:, None] + squared[None, :] - 2.0 * group @ group.T
    return np.sqrt(np.clip(gram[upper], 0.0, None))


def mean_pairwise_distance(groups: np.ndarray, metric: str = "cosine") -> float:
    """Mean over groups of the mean pairwise distance within each group; groups is (N, K, D), K >= 2."""
    groups = np.asarray(groups)
    if groups.ndim != 3 or groups.shape[1] < 2:
        raise ValueError(f"need (N, K, D) features with K >= 2 views per source, got shape {groups.shape}")
    return float(np.mean([pairwise_distances(group, metric).mean() for group in groups]))


def random_groups(features: np.ndarray, k: int, n_groups: int, seed: int = 0) -> np.ndarray:
    """(n_groups, k, D) groups of k distinct random rows of an (M, D) real feature set."""
    features = np.asarray(features)
    if len(features) < k:
        raise ValueError(f"need at least k={k} real embeddings for the diversity reference, got {len(features)}")
    rng = np.random.default_rng(seed)
    return np.stack([features[rng.choice(len(features), k, replace=False)] for _ in range(n_groups)])


def view_diversity(view_features: np.ndarray, real_features: np.ndarray | None = None, n_groups: int | None = None,
                   seed: int = 0) -> dict:
    """Diversity of the views (N, K, D) in both distances, with the random-real-tile reference when
    `real_features` (M, D) are given (n_groups random groups of K, default N)."""
    view_features = np.asarray(view_features)
    result: dict = {"n_sources": int(view_features.shape[0]), "k": int(view_features.shape[1])}
    reference = None
    if real_features is not None:
        reference = random_groups(real_features, view_features.shape[1], n_groups or len(view_features), seed)
    for metric in METRICS:
        value = mean_pairwise_distance(view_features, metric)
        entry = {"views": value}
        if reference is not None:
            real = mean_pairwise_distance(reference, metric)
            entry.update({"random_real": real, "ratio": value / real if real > 1e-12 else float("nan")})
        result[metric] = entry
    return result
