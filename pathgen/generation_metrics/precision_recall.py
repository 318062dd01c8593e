"""Improved precision and recall of generated samples (Kynkäänniemi et al., NeurIPS 2019).

Each set's manifold is the union of balls around its samples, every ball's radius the distance to
that sample's k-th nearest neighbour in the same set (k = 3 in the paper). **Precision** is the
share of generated samples inside the real manifold (are the views realistic?); **recall** the
share of real samples inside the generated manifold (do the views cover the real variety?). Unlike
a mean pairwise distance among views, neither can be raised by views that leave the real data: a
generator that makes off-distribution noise has low precision however "diverse" it is, and one
that copies a few tiles has low recall.

Here the features are the conditioning encoder's embeddings on the unit sphere (what the LDM is
conditioned on). Both sets should have the same size: the ball radii grow as a set shrinks.
`real_vs_real` gives the values two disjoint real samples of the same size reach (the ceiling a
faithful generator can reach at that sample size).
"""

from __future__ import annotations

import numpy as np

from pathgen.generation_metrics.fidelity import l2_normalise

DEFAULT_K = 3


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared Euclidean distances, float64, round-off negatives clipped to 0."""
    gram = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.clip(gram, 0.0, None)


def knn_radii(features: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """Distance of every row of an (N, D) set to its k-th nearest other row (N > k needed)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) <= k:
        raise ValueError(f"k-NN radii need an (N, D) set with N > k = {k}, got shape {features.shape}")
    squared = _squared_distances(features, features)
    np.fill_diagonal(squared, np.inf)  # a sample is not its own neighbour
    return np.sqrt(np.partition(squared, k - 1, axis=1)[:, k - 1])


def manifold_share(queries: np.ndarray, support: np.ndarray, k: int = DEFAULT_K) -> float:
    """Share of `queries` rows inside at least one k-NN ball of `support` (the paper's f(φ, Φ) averaged)."""
    support = np.asarray(support, dtype=np.float64)
    radii = knn_radii(support, k)
    squared = _squared_distances(np.asarray(queries, dtype=np.float64), support)
    return float(np.mean((squared <= radii[None, :] ** 2).any(axis=1)))


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = DEFAULT_K, unit_sphere: bool = True) -> dict:
    """{"precision", "recall", "k", "n_real", "n_generated"} of (N, D) generated against (M, D) real features."""
    real, generated = np.asarray(real, dtype=np.float64), np.asarray(generated, dtype=np.float64)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"real and generated features must be (N, D) of one D, got {real.shape} and {generated.shape}")
    if unit_sphere:
        real, generated = l2_normalise(real), l2_normalise(generated)
    return {
        "precision": manifold_share(generated, real, k),
        "recall": manifold_share(real, generated, k),
        "k": k,
        "n_real": len(real),
        "n_generated": len(generated),
    }


def real_vs_real(real: np.ndarray, n: int, k: int = DEFAULT_K, seed: int = 0) -> dict | None:
    """Precision / recall of one random half-sample of `real` against another, each of up to n rows
    (disjoint); None when there are too few rows for two sets of more than k."""
    real = np.asarray(real)
    size = min(n, len(real) // 2)
    if size <= k:
        return None
    order = np.random.default_rng(seed).permutation(len(real))
    return precision_recall(real[order[:size]], real[order[size : 2 * size]], k)
