"""Multi-positive NT-Xent against explicit loops and a hand-worked 2-image case."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pathgen.ssl.losses.simclr import nt_xent_loss


def naive_nt_xent(views: np.ndarray, temperature: float) -> float:
    """Loop form of Chen et al. Eq. 1 with every other view of the same image as a positive."""
    n_views, batch, _ = views.shape
    rows = [(v, i) for v in range(n_views) for i in range(batch)]
    unit = {row: views[row] / np.linalg.norm(views[row]) for row in rows}
    losses = []
    for anchor in rows:
        positive = negative = 0.0
        for other in rows:
            if other == anchor:
                continue
            similarity = math.exp(float(unit[anchor] @ unit[other]) / temperature)
            if other[1] == anchor[1]:
                positive += similarity
            else:
                negative += similarity
        losses.append(-math.log(positive / (positive + negative)))
    return float(np.mean(losses))


def test_matches_loop_formula_with_three_views():
    rng = np.random.default_rng(0)
    views = rng.normal(size=(3, 4, 5))
    loss = nt_xent_loss([torch.tensor(v, dtype=torch.float32) for v in views], temperature=0.2)
    assert loss.item() == pytest.approx(naive_nt_xent(views, 0.2), rel=1e-5)


def test_hand_worked_orthogonal_images():
    # two images with orthogonal embeddings, both views identical: for every anchor
    # pos = e^{1/τ}, neg = 2·e^0, so L = log(1 + 2·e^{-1/τ})
    view = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = nt_xent_loss([view, view.clone()], temperature=0.5)
    assert loss.item() == pytest.approx(math.log(1 + 2 * math.exp(-2.0)), rel=1e-6)


def test_aligned_positives_give_lower_loss():
    torch.manual_seed(0)
    view = torch.randn(8, 16)
    aligned = nt_xent_loss([view, view + 0.01 * torch.randn(8, 16)])
    unrelated = nt_xent_loss([view, torch.randn(8, 16)])
    assert aligned < unrelated


def test_small_temperature_does_not_overflow_and_autocast_is_fp32():
    torch.manual_seed(0)
    views = [torch.randn(4, 8, requires_grad=True) for _ in range(2)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nt_xent_loss(views, temperature=0.005)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(torch.isfinite(v.grad).all() for v in views)


def test_needs_two_views():
    with pytest.raises(ValueError, match="at least 2 views"):
        nt_xent_loss([torch.randn(4, 8)])
