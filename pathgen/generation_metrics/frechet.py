"""Fréchet distance between two feature sets (FID when the features are Inception pool3 features).

The Fréchet (2-Wasserstein) distance between Gaussians N(μ1, Σ1) and N(μ2, Σ2) fitted to the two sets
(Heusel et al., NeurIPS 2017, "GANs trained by a two time-scale update rule..."):

    d² = ||μ1 − μ2||² + tr(Σ1) + tr(Σ2) − 2 tr((Σ1 Σ2)^½)

The trace of the matrix square root is computed in the **eigen-based symmetric form**: with
A = Σ1^½ (from `eigh`, negative round-off eigenvalues clipped to 0), Σ1 Σ2 = A⁻¹ (A Σ2 A) A is similar
to the symmetric PSD matrix A Σ2 A, so tr((Σ1 Σ2)^½) = Σ_i √λ_i(A Σ2 A). Unlike `scipy.linalg.sqrtm` of
the non-symmetric product (pytorch-fid's route, which needs an eps·I offset when the product is
singular and returns spurious imaginary parts), this is real, needs no offset and stays finite for
rank-deficient covariances (fewer samples than feature dimensions). From raw features with fewer
samples than dimensions, `frechet_distance_features` computes the same trace exactly in sample space
(the nuclear norm of the centred cross-Gram matrix), which is cheaper and avoids the √ of round-off
eigenvalues. Everything is in float64.
"""

from __future__ import annotations

import numpy as np


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of an (N, D) feature set, in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need an (N, D) feature array with N >= 2, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (eigenvalues below 0 are round-off: clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((Σ1 Σ2)^½) for PSD Σ1, Σ2, as Σ √λ(Σ1^½ Σ2 Σ1^½) (the symmetric form; see the module doc)."""
    root1 = _psd_sqrt(np.asarray(sigma1, dtype=np.float64))
    middle = root1 @ np.asarray(sigma2, dtype=np.float64) @ root1
    values = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(values, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance d² between N(μ1, Σ1) and N(μ2, Σ2) (the squared form, as FID reports it)."""
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"mismatched statistics: means {mu1.shape} / {mu2.shape}, covariances {sigma1.shape} / {sigma2.shape}"
        )
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return float(max(value, 0.0))  # tiny negatives are round-off of identical sets


def _centred(features: np.ndarray) -> np.ndarray:
    """(X − mean) / √(N − 1): then Σ = Yᵀ Y is the unbiased covariance."""
    return (features - features.mean(axis=0)) / np.sqrt(len(features) - 1)


def frechet_distance_features(features1: np.ndarray, features2: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two (N, D) feature sets.

    When a set has fewer samples than dimensions (N < D, e.g. 2048-d Inception features of a small
    bank) the same value is computed in sample space: with Σ = Yᵀ Y, the nonzero eigenvalues of Σ1 Σ2
    are the squared singular values of Y1 Y2ᵀ (N1 × N2), so tr((Σ1 Σ2)^½) = ||Y1 Y2ᵀ||_* (nuclear norm)
    and tr(Σ) = ||Y||_F² — exact, and an SVD of an N1 × N2 matrix instead of D × D eigendecompositions.
    """
    x, y = np.asarray(features1, dtype=np.float64), np.asarray(features2, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sets differ in dimension: {np.shape(features1)} vs {np.shape(features2)}")
    if min(len(x), len(y)) >= x.shape[1]:
        return frechet_distance(*feature_stats(x), *feature_stats(y))
    if min(len(x), len(y)) < 2:
        raise ValueError(f"need at least 2 samples per set, got {len(x)} and {len(y)}")
    y1, y2 = _centred(x), _centred(y)
    diff = x.mean(axis=0) - y.mean(axis=0)
    cross = np.linalg.svd(y1 @ y2.T, compute_uv=False).sum()
    value = diff @ diff + (y1**2).sum() + (y2**2).sum() - 2.0 * cross
    return float(max(value, 0.0))


def bootstrap_frechet(
    features1: np.ndarray, features2: np.ndarray, n_bootstrap: int = 50, level: float = 0.95, seed: int = 0
) -> dict:
    """Bootstrap spread of the Fréchet distance (both sets resampled with replacement): its standard
    deviation and percentile interval, {"std", "interval": [low, high], "level", "n_bootstrap"}.

    Why: two generators (or two checkpoints) differ only if their FDs differ by more than this spread.
    Caveat: resampling with replacement duplicates samples, which shrinks the effective sample and
    inflates FD (its small-sample bias), so at small N the interval can sit above the point estimate;
    read it as the spread, not as a bracket of the estimate.
    """
    if n_bootstrap < 2:
        raise ValueError(f"n_bootstrap must be >= 2, got {n_bootstrap}")
    x, y = np.asarray(features1, dtype=np.float64), np.asarray(features2, dtype=np.float64)
    rng = np.random.default_rng(seed)
    values = [
        frechet_distance_features(x[rng.integers(0, len(x), len(x))], y[rng.integers(0, len(y), len(y))])
        for _ in range(n_bootstrap)
    ]
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return {
        "std": float(np.std(values, ddof=1)),
        "interval": [float(low), float(high)],
        "level": level,
        "n_bootstrap": n_bootstrap,
    }
