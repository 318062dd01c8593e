"""Conditioning fidelity and source retrieval against their references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathgen.diffusion.conditioning import slerp
from pathgen.generation_metrics.fidelity import (
    conditioning_fidelity,
    random_pair_cosine,
    row_cosine,
    source_retrieval,
    unit_centre,
)


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


def test_source_retrieval_finds_own_source_despite_a_shared_direction_and_is_at_chance_when_shuffled():
    """Every embedding shares a large common direction (raw cosines ~0.99, as with a small SSL encoder);
    views = own source + small noise are retrieved, views of shuffled sources are not."""
    rng = np.random.default_rng(0)
    common = 20 * rng.normal(size=16)
    sources = common + rng.normal(size=(50, 16))
    views = sources[:, None, :] + 0.1 * rng.normal(size=(50, 3, 16))
    centre = unit_centre(sources)
    assert source_retrieval(views, sources[:, None, :], centre) == {"retrieval_top1": 1.0, "retrieval_chance": 0.02}
    shuffled = views[rng.permutation(50)]
    assert source_retrieval(shuffled, sources[:, None, :], centre)["retrieval_top1"] < 0.15


def _shared_direction_sources(n: int = 40, seed: int = 0) -> np.ndarray:
    """Raw embeddings of norm ~8 that share one large direction (a small SSL encoder's)."""
    rng = np.random.default_rng(seed)
    return 8 * rng.normal(size=16) + rng.normal(size=(n, 16))


def test_exact_copies_retrieve_at_one_in_views_and_interpolation_mode():
    """The identity test: a bank whose views are exactly what they were conditioned on. In views mode
    the view is the source; in interpolation mode the view's embedding is SLERP(e1, e2, α) itself
    (unit norm, while the real embeddings the centre comes from have norm ~8) or, at α = 1, a copy
    of the raw primary embedding."""
    sources = _shared_direction_sources()
    secondary = np.roll(sources, 3, axis=0)
    copies = np.repeat(sources[:, None, :], 3, axis=1)
    assert conditioning_fidelity(copies, sources, sources)["retrieval_top1"] == 1.0
    alpha = np.random.default_rng(1).uniform(0.2, 0.8, size=(40, 3)).astype(np.float32)
    targets = (
        slerp(
            torch.from_numpy(np.repeat(sources, 3, 0)).float(),
            torch.from_numpy(np.repeat(secondary, 3, 0)).float(),
            torch.from_numpy(alpha.reshape(-1)),
        )
        .numpy()
        .reshape(40, 3, 16)
    )
    assert np.allclose(np.linalg.norm(targets, axis=-1), 1.0)
    assert conditioning_fidelity(targets.copy(), targets, sources)["retrieval_top1"] == 1.0
    at_one = slerp(torch.from_numpy(sources).float(), torch.from_numpy(secondary).float(), 1.0).numpy()
    assert conditioning_fidelity(copies, np.repeat(at_one[:, None], 3, 1), sources)["retrieval_top1"] == 1.0


def test_the_old_raw_mean_centring_failed_the_identity_test():
    """Why the unit sphere: centring unit-norm SLERP targets with the raw embeddings' mean (norm ~8)
    sends every target to nearly the same point, so even exact copies are not retrieved."""
    sources = _shared_direction_sources()
    targets = sources / np.linalg.norm(sources, axis=1, keepdims=True)
    raw_mean = sources.mean(axis=0)
    views = targets - raw_mean  # what the old code compared: raw-mean-centred unit targets
    aligned = (views / np.linalg.norm(views, axis=1, keepdims=True)) @ (
        views / np.linalg.norm(views, axis=1, keepdims=True)
    ).T
    assert aligned.min() > 0.99  # all targets point the same way: retrieval is decided by round-off
    assert source_retrieval(targets[:, None], targets[:, None], unit_centre(sources))["retrieval_top1"] == 1.0
