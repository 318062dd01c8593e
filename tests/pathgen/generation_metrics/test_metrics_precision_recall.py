"""Improved precision / recall (Kynkäänniemi et al. 2019) on hand-built clouds with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pathgen.generation_metrics.precision_recall import knn_radii, manifold_share, precision_recall, real_vs_real


def test_knn_radii_on_a_line():
    points = np.array([[0.0], [1.0], [3.0], [7.0]])
    np.testing.assert_allclose(knn_radii(points, k=1), [1.0, 1.0, 2.0, 4.0])
    np.testing.assert_allclose(knn_radii(points, k=2), [3.0, 2.0, 3.0, 6.0])
    with pytest.raises(ValueError, match="N > k = 3"):
        knn_radii(points[:3], k=3)


def test_copies_have_full_precision_and_recall():
    real = np.random.default_rng(0).normal(size=(60, 8))
    assert precision_recall(real, real.copy()) == {
        "precision": 1.0,
        "recall": 1.0,
        "k": 3,
        "n_real": 60,
        "n_generated": 60,
    }


def test_disjoint_clouds_score_zero():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(50, 4)) * 0.1
    far = rng.normal(size=(50, 4)) * 0.1 + 10.0
    result = precision_recall(real, far, unit_sphere=False)
    assert result["precision"] == 0.0 and result["recall"] == 0.0


def test_off_manifold_half_halves_precision_and_keeps_recall():
    """Generated = a copy of every real point plus as many points far off the real cloud:
    precision 1/2 (half the samples are unrealistic), recall 1 (every real point is covered)."""
    rng = np.random.default_rng(1)
    real = rng.normal(size=(40, 3))
    off = rng.normal(size=(40, 3)) * 0.05 + 50.0
    generated = np.concatenate([real, off])
    result = precision_recall(real, generated, unit_sphere=False)
    assert result["precision"] == 0.5 and result["recall"] == 1.0


def test_mode_collapse_keeps_precision_and_loses_recall():
    """Two separated real clusters; a generator that makes only the first one: precision 1, recall 1/2."""
    rng = np.random.default_rng(2)
    cluster_a, cluster_b = rng.normal(size=(30, 3)), rng.normal(size=(30, 3)) + 20.0
    real = np.concatenate([cluster_a, cluster_b])
    collapsed = cluster_a + 0.01 * rng.normal(size=cluster_a.shape)
    result = precision_recall(real, np.concatenate([collapsed, collapsed + 0.01]), unit_sphere=False)
    assert result["precision"] == 1.0 and result["recall"] == 0.5


def test_manifold_share_counts_points_inside_any_ball():
    support = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]])
    queries = np.array([[0.5], [5.0], [10.5], [30.0]])
    assert manifold_share(queries, support, k=1) == 0.5


def test_real_vs_real_uses_disjoint_halves_and_refuses_tiny_sets():
    real = np.random.default_rng(3).normal(size=(200, 6))
    result = real_vs_real(real, 100)
    assert result["n_real"] == result["n_generated"] == 100 and 0.5 < result["precision"] <= 1.0
    assert real_vs_real(real[:7], 100) is None
    with pytest.raises(ValueError, match="one D"):
        precision_recall(real, real[:, :3])
