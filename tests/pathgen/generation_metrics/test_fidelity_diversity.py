"""Conditioning fidelity against its references, and within-source diversity."""

from __future__ import annotations

import numpy as np
import pytest

from pathgen.generation_metrics.diversity import mean_pairwise_distance, pairwise_distances, random_groups, view_diversity
from pathgen.generation_metrics.fidelity import conditioning_fidelity, random_pair_cosine, row_cosine, source_retrieval


def _embeddings(n: int = 200, d: int = 32, seed: int = 0) -> np.ndarray:
    """Real-like embeddings: a shared mean direction plus per-tile variation (cosines well above 0)."""
    rng = np.random.default_rng(seed)
    return 2.0 + rng.normal(size=(n, d))


def test_copies_of_the_source_are_perfectly_faithful():
    real = _embeddings()
    views = np.repeat(real[:, None], 4, axis=1)
    result = conditioning_fidelity(views, real, real, augmented=(real, real + 0.3))
    assert result["fidelity"] == pytest.approx(1.0, abs=1e-9)
    assert result["fidelity"] > result["random_pairs"] + 0.1
    assert result["difference"] == pytest.approx(1.0 - result["random_pairs"])
    assert result["ratio"] > 1.0
    assert result["fidelity"] > result["augmented_self"] and result["normalised"] > 1.0


def test_shuffled_views_fall_to_the_random_pair_baseline():
    real = _embeddings(400)
    perm = np.random.default_rng(1).permutation(len(real))
    views = np.repeat(real[perm][:, None], 2, axis=1)
    result = conditioning_fidelity(views, real, real)
    assert result["fidelity"] == pytest.approx(result["random_pairs"], abs=0.02)
    assert abs(result["difference"]) < 0.02 and "augmented_self" not in result


def test_per_view_conditions_and_shape_errors():
    real = _embeddings(10)
    views = np.repeat(real[:, None], 3, axis=1)
    assert conditioning_fidelity(views, views, real)["fidelity"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="conditions"):
        conditioning_fidelity(views, real[:5], real)


def test_random_pair_cosine_exact_and_sampled_agree():
    real = _embeddings(300)
    unit = real / np.linalg.norm(real, axis=1, keepdims=True)
    exact = (unit @ unit.T)[np.triu_indices(300, 1)].mean()
    assert random_pair_cosine(real, n_pairs=10**6) == pytest.approx(exact)
    assert random_pair_cosine(real, n_pairs=20_000) == pytest.approx(exact, abs=0.01)
    np.testing.assert_allclose(row_cosine(real, 3 * real), 1.0)


def test_identical_views_have_zero_diversity():
    views = np.repeat(_embeddings(20)[:, None], 5, axis=1)
    result = view_diversity(views, _embeddings(50, seed=1))
    assert result["cosine"]["views"] == pytest.approx(0.0, abs=1e-9)
    assert result["l2"]["views"] == pytest.approx(0.0, abs=1e-6)
    assert result["cosine"]["random_real"] > 0 and result["cosine"]["ratio"] == pytest.approx(0.0, abs=1e-6)


def test_more_noise_is_more_diverse():
    rng = np.random.default_rng(2)
    base = np.repeat(_embeddings(30)[:, None], 4, axis=1)
    noise = rng.normal(size=base.shape)
    for metric in ("cosine", "l2"):
        values = [mean_pairwise_distance(base + scale * noise, metric) for scale in (0.0, 0.1, 0.5, 2.0)]
        assert values == sorted(values) and values[0] < 1e-6


def test_pairwise_distances_values_and_errors():
    group = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    np.testing.assert_allclose(pairwise_distances(group, "cosine"), [1.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(pairwise_distances(group, "l2"), [np.sqrt(2), 1.0, np.sqrt(5)])
    with pytest.raises(ValueError, match="unknown distance"):
        pairwise_distances(group, "manhattan")
    with pytest.raises(ValueError, match="K >= 2"):
        mean_pairwise_distance(group[:, None])
    assert random_groups(group, 2, 4).shape == (4, 2, 2)
    with pytest.raises(ValueError, match="at least k=4"):
        random_groups(group, 4, 1)


def test_source_retrieval_finds_own_source_despite_a_shared_direction_and_is_at_chance_when_shuffled():
    """Every embedding shares a large common direction (raw cosines ~0.99, as with a small SSL encoder);
    views = own source + small noise are retrieved, views of shuffled sources are not."""
    rng = np.random.default_rng(0)
    common = 20 * rng.normal(size=16)
    sources = common + rng.normal(size=(50, 16))
    views = sources[:, None, :] + 0.1 * rng.normal(size=(50, 3, 16))
    real_mean = sources.mean(axis=0)
    assert source_retrieval(views, sources[:, None, :], real_mean) == {"retrieval_top1": 1.0, "retrieval_chance": 0.02}
    shuffled = views[rng.permutation(50)]
    assert source_retrieval(shuffled, sources[:, None, :], real_mean)["retrieval_top1"] < 0.15
