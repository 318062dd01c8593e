"""Barlow Twins loss against the formula written out with loops, and its zero case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathgen.ssl.losses.barlow import barlow_twins_loss, cross_correlation


def naive_barlow(z1: np.ndarray, z2: np.ndarray, lambd: float, scale: float, eps: float = 1e-5) -> float:
    """Zbontar et al. Eq. 1–2: per-dimension batch standardisation, C_ij = Σ_b a_bi·b_bj / N."""
    n, d = z1.shape
    standardised = []
    for z in (z1, z2):
        columns = []
        for j in range(d):
            mean = sum(z[b, j] for b in range(n)) / n
            variance = sum((z[b, j] - mean) ** 2 for b in range(n)) / n  # biased, as BatchNorm
            columns.append([(z[b, j] - mean) / np.sqrt(variance + eps) for b in range(n)])
        standardised.append(np.array(columns).T)
    a, b = standardised
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[k, i] * b[k, j] for k in range(n)) / n
            loss += (1 - c_ij) ** 2 if i == j else lambd * c_ij**2
    return scale * loss


def test_matches_loop_formula():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    loss = barlow_twins_loss(as_tensor(z1), as_tensor(z2), 0.0051, 0.048)
    assert loss.item() == pytest.approx(naive_barlow(z1, z2, 0.0051, 0.048), rel=1e-4)


def test_zero_for_identical_decorrelated_features():
    # columns have zero mean, unit variance and are orthogonal: C = I (up to BN's eps)
    z = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    assert torch.allclose(cross_correlation(z, z * 3 + 2), torch.eye(2), atol=1e-4)
    assert barlow_twins_loss(z, z * 3 + 2).item() == pytest.approx(0.0, abs=1e-8)


def test_redundancy_term_counts_off_diagonal_with_lambda():
    # both columns equal: C = [[1,1],[1,1]], loss = scale·λ·2
    z = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]])
    assert barlow_twins_loss(z, z, lambd=0.5, scale_loss=2.0).item() == pytest.approx(2.0 * 0.5 * 2, rel=1e-4)


def test_autocast_is_fp32_with_gradients():
    z1, z2 = torch.randn(8, 4, requires_grad=True), torch.randn(8, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = barlow_twins_loss(z1.bfloat16(), z2.bfloat16())
    loss.backward()
    assert loss.dtype == torch.float32 and z1.grad is not None and z2.grad is not None
