"""Fréchet distance: closed forms, symmetry, monotonicity, rank-deficient covariances, bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from pathgen.generation_metrics.frechet import (
    bootstrap_frechet,
    feature_stats,
    frechet_distance,
    frechet_distance_features,
    trace_sqrt_product,
)


def _reference_fd(mu1, s1, mu2, s2) -> float:
    """pytorch-fid's formula with scipy.linalg.sqrtm of the (non-symmetric) product: an independent reference."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_same_set_is_zero():
    x = np.random.default_rng(0).normal(size=(500, 16))
    assert frechet_distance_features(x, x) == pytest.approx(0.0, abs=1e-8)


def test_diagonal_gaussians_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    var1, var2 = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
    expected = ((mu1 - mu2) ** 2).sum() + (var1 + var2 - 2 * np.sqrt(var1 * var2)).sum()
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-10)


def test_full_covariances_match_scipy_sqrtm():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(10, 10)), rng.normal(size=(10, 10))
    s1, s2 = a @ a.T + 0.1 * np.eye(10), b @ b.T + 0.1 * np.eye(10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_reference_fd(mu1, s1, mu2, s2), rel=1e-8)
    assert trace_sqrt_product(s1, s2) == pytest.approx(trace_sqrt_product(s2, s1), rel=1e-10)


def test_symmetric_and_grows_with_mean_shift():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(300, 12)), rng.normal(size=(300, 12)) * 1.5
    assert frechet_distance_features(x, y) == pytest.approx(frechet_distance_features(y, x), rel=1e-10)
    values = [frechet_distance_features(x, x + shift) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values) and values[0] < 1e-8
    assert values[-1] == pytest.approx(12 * 4.0, rel=1e-8)  # a pure shift: ||Δμ||² exactly


def test_rank_deficient_covariances_stay_finite():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(10, 64)), rng.normal(size=(12, 64)) + 0.3
    value = frechet_distance_features(x, y)
    assert np.isfinite(value) and value > 0
    # the sample-space (N < D) route equals the covariance route (whose √ of round-off eigenvalues costs ~1e-8)
    assert value == pytest.approx(frechet_distance(*feature_stats(x), *feature_stats(y)), rel=1e-6)
    assert frechet_distance(*feature_stats(x), *feature_stats(y)) == pytest.approx(
        _reference_fd(*feature_stats(x), *feature_stats(y)), rel=1e-4
    )
    assert frechet_distance_features(x, x) == pytest.approx(0.0, abs=1e-8)


def test_feature_stats_and_errors():
    x = np.random.default_rng(5).normal(size=(50, 3))
    mu, sigma = feature_stats(x)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False))
    with pytest.raises(ValueError, match="N >= 2"):
        feature_stats(x[:1])
    with pytest.raises(ValueError, match="dimension"):
        frechet_distance_features(x, x[:, :2])


def test_bootstrap_spread_shrinks_with_more_samples():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(200, 4)), rng.normal(size=(200, 4)) + 1.0
    result = bootstrap_frechet(x, y, n_bootstrap=50, seed=0)
    low, high = result["interval"]
    assert low < frechet_distance_features(x, y) < high and result["std"] > 0
    assert bootstrap_frechet(x, y, n_bootstrap=50, seed=0) == result
    big = bootstrap_frechet(
        np.tile(x, (8, 1)) + rng.normal(size=(1600, 4)) * 1e-3,
        np.tile(y, (8, 1)) + rng.normal(size=(1600, 4)) * 1e-3,
        n_bootstrap=50,
    )
    assert big["std"] < result["std"]
    with pytest.raises(ValueError, match="n_bootstrap"):
        bootstrap_frechet(x, y, n_bootstrap=1)
