"""SimSiam symmetrised negative-cosine loss with stop-gradient.

Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021 (arXiv 2011.10566),
Eq. 1–4 and Algorithm 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pathgen.ssl.losses.weighting import weighted_mean


def negative_cosine(
    prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """D(p, z) = −mean cos(p, sg(z)) over the batch; the stop-gradient on z prevents collapse (Eq. 3).

    With (B,) `weights` the mean is Σ w_i·(−cos_i) / B (GenView's quality-driven loss).
    """
    with torch.autocast(device_type=prediction.device.type, enabled=False):
        return -weighted_mean(F.cosine_similarity(prediction.float(), target.detach().float(), dim=-1), weights)


def simsiam_loss(
    prediction_1: torch.Tensor,
    prediction_2: torch.Tensor,
    projection_1: torch.Tensor,
    projection_2: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """L = ½·D(p1, z2) + ½·D(p2, z1) (SimSiam Eq. 4); in [−1, 1], −1 when each p matches the other z.

    Args:
        prediction_1, prediction_2: (B, D) predictor outputs of views 1 and 2.
        projection_1, projection_2: (B, D) projector outputs of views 1 and 2 (stop-gradient applied).
        weights: Optional (B,) per-pair weights, the same in both terms (GenView); None is unweighted.
    """
    return 0.5 * negative_cosine(prediction_1, projection_2, weights) + 0.5 * negative_cosine(
        prediction_2, projection_1, weights
    )
