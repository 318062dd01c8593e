"""BYOL and SimSiam losses: hand-worked values, invariants and stop-gradient."""

from __future__ import annotations

import math

import pytest
import torch

from pathgen.ssl.losses.byol import byol_loss
from pathgen.ssl.losses.simsiam import negative_cosine, simsiam_loss


def test_byol_zero_for_identical_four_for_opposite_two_for_orthogonal():
    vectors = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    assert byol_loss(vectors, 5 * vectors).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(vectors, -vectors).item() == pytest.approx(4.0, abs=1e-6)
    assert byol_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 3.0]])).item() == pytest.approx(2.0, abs=1e-6)


def test_byol_stops_gradient_at_target():
    prediction = torch.randn(4, 8, requires_grad=True)
    target = torch.randn(4, 8, requires_grad=True)
    byol_loss(prediction, target).backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
    assert target.grad is None


def test_simsiam_hand_worked_value():
    # cos((1,0),(1,1)) = 1/sqrt2 and cos((0,1),(0,2)) = 1: L = ½(−1/sqrt2) + ½(−1)
    p1, z2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])
    p2, z1 = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 2.0]])
    expected = 0.5 * (-1 / math.sqrt(2)) + 0.5 * (-1.0)
    assert simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(expected, rel=1e-6)
    assert negative_cosine(p1, p1).item() == pytest.approx(-1.0)


def test_simsiam_stops_gradient_at_projections():
    p1, p2 = (torch.randn(4, 8, requires_grad=True) for _ in range(2))
    z1, z2 = (torch.randn(4, 8, requires_grad=True) for _ in range(2))
    simsiam_loss(p1, p2, z1, z2).backward()
    assert p1.grad is not None and p2.grad is not None
    assert z1.grad is None and z2.grad is None


def test_autocast_losses_are_fp32():
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert byol_loss(a.bfloat16(), b.bfloat16()).dtype == torch.float32
        assert negative_cosine(a.bfloat16(), b.bfloat16()).dtype == torch.float32
