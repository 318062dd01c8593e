"""Barlow Twins redundancy-reduction loss.

Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction", ICML 2021
(arXiv 2103.03230), Eq. 1–2; facebookresearch/barlowtwins main.py (commit 8e8d284). The scale_loss
default 0.048 is solo-learn's barlow.yaml; the official code now uses 1 (docs/recipes.md).
"""

from __future__ import annotations

import torch

from pathgen.ssl.collectives import all_reduce_mean

BN_EPS = 1e-5  # BatchNorm1d's default, as the official code's nn.BatchNorm1d(affine=False)


def batch_standardise(projection: torch.Tensor) -> torch.Tensor:
    """(z − mean) / √(var + ε) per dimension, with mean and biased variance over the global batch.

    The official code runs nn.BatchNorm1d(affine=False) under SyncBatchNorm, so the statistics span
    every rank; here they are all-reduced (differentiably), which also equals a one-process batch.
    Every rank must hold the same number of rows.
    """
    centred = projection - all_reduce_mean(projection.mean(dim=0))
    variance = all_reduce_mean(centred.pow(2).mean(dim=0))  # biased, as BatchNorm normalises with
    return centred / torch.sqrt(variance + BN_EPS)


def cross_correlation(projection_1: torch.Tensor, projection_2: torch.Tensor) -> torch.Tensor:
    """C = BN(z1)ᵀ·BN(z2) / N over the global batch, BN without affine and with global statistics (Eq. 2).

    Args:
        projection_1, projection_2: (N, D) projector outputs of the two views, N ≥ 2.
    Returns:
        (D, D) fp32 cross-correlation matrix.
    """
    with torch.autocast(device_type=projection_1.device.type, enabled=False):
        normed_1 = batch_standardise(projection_1.float())
        normed_2 = batch_standardise(projection_2.float())
        correlation = normed_1.T @ normed_2 / projection_1.shape[0]
    return all_reduce_mean(correlation)


def barlow_twins_loss(
    projection_1: torch.Tensor, projection_2: torch.Tensor, lambd: float = 0.0051, scale_loss: float = 0.048
) -> torch.Tensor:
    """scale_loss · [Σ_i (1 − C_ii)² + λ·Σ_{i≠j} C_ij²] (Barlow Twins Eq. 1).

    The invariance term pulls the diagonal of C to 1; the redundancy term pushes the off-diagonal
    to 0, decorrelating feature dimensions.

    Args:
        projection_1, projection_2: (N, D) projector outputs of the two views.
        lambd: λ, weight of the redundancy term (solo-learn config 0.0051; paper 5e-3).
        scale_loss: Overall scale (solo-learn config 0.048).

    Returns:
        The scalar loss (fp32).
    """
    correlation = cross_correlation(projection_1, projection_2)
    diagonal = torch.diagonal(correlation)
    on_diagonal = (1.0 - diagonal).pow(2).sum()
    off_diagonal = correlation.pow(2).sum() - diagonal.pow(2).sum()
    return scale_loss * (on_diagonal + lambd * off_diagonal)
