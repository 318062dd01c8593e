"""GenView's adaptive noise level: monotone in the foreground ratio, GenView's exact bin edges."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathgen.genaug.adaptive_noise import (
    DEFAULT_STRENGTHS,
    GENVIEW_BIN_EDGES,
    AdaptiveNoise,
    noise_level_index,
)


def test_level_and_strength_are_monotone_over_a_dense_grid():
    ratios = torch.linspace(0.0, 1.0, 100_001)
    noise = AdaptiveNoise()
    levels, strengths = noise.level(ratios), noise.strength(ratios)
    assert (levels.diff() >= 0).all() and (strengths.diff() >= 0).all()
    assert levels.unique().tolist() == [0, 1, 2, 3, 4]
    assert sorted(set(strengths.tolist())) == pytest.approx(list(DEFAULT_STRENGTHS))


def test_matches_numpy_digitize_right_minus_one_clamped():
    ratios = np.concatenate([np.linspace(0.0, 1.0, 5001), np.array(GENVIEW_BIN_EDGES)])
    expected = np.clip(np.digitize(ratios, GENVIEW_BIN_EDGES, right=True) - 1, 0, 4)
    assert noise_level_index(torch.tensor(ratios)).tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("ratio", "level"),
    [
        (0.0, 0),
        (0.2, 0),
        (0.2001, 1),
        (0.4, 1),
        (0.4001, 2),
        (0.6, 2),
        (0.8, 3),
        (0.8001, 4),
        (1.0, 4),
    ],
)
def test_genview_bin_edges(ratio, level):
    assert int(noise_level_index(ratio)) == level
    assert int(noise_level_index(torch.tensor(ratio, dtype=torch.float64))) == level
    assert int(AdaptiveNoise().genview_noise_level(ratio)) == 100 * level
    assert float(AdaptiveNoise().strength(ratio)) == pytest.approx(DEFAULT_STRENGTHS[level])


def test_vectorised_over_any_batch_shape():
    ratios = torch.tensor([[0.1, 0.3, 0.5], [0.7, 0.9, 1.0]])
    strengths = AdaptiveNoise(strengths=(0.1, 0.2, 0.3, 0.4, 0.5)).strength(ratios)
    assert strengths.shape == (2, 3)
    assert torch.allclose(strengths, torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.5]]))


def test_bad_ratios_and_tables_are_refused():
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            noise_level_index(bad)
    with pytest.raises(ValueError, match="non-decreasing"):
        AdaptiveNoise(strengths=(0.5, 0.4, 0.5, 0.6, 0.7))
    with pytest.raises(ValueError, match="one more entry"):
        AdaptiveNoise(strengths=(0.3, 0.5))
    with pytest.raises(ValueError, match="increase"):
        AdaptiveNoise(strengths=(0.3, 0.5, 0.6), bin_edges=(0.0, 0.5, 0.5, 1.0))
