"""Barlow Twins redundancy-reduction loss.

Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction", ICML 2021
(arXiv 2103.03230), Eq. 1–2; scale_loss and λ defaults from solo-learn's barlow.yaml.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pathgen.ssl.collectives import all_reduce_mean


def cross_correlation(projection_1: torch.Tensor, projection_2: torch.Tensor) -> torch.Tensor:
    """C = BN(z1)ᵀ·BN(z2) / N, BN without affine over the local batch, averaged over ranks (Eq. 2).

    Args:
        projection_1, projection_2: (N, D) projector outputs of the two views, N ≥ 2.

    Returns:
        (D, D) fp32 cross-correlation matrix.
    """
    with torch.autocast(device_type=projection_1.device.type, enabled=False):
        normed_1 = F.batch_norm(projection_1.float(), None, None, training=True)
        normed_2 = F.batch_norm(projection_2.float(), None, None, training=True)
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
