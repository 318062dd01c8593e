"""SimSiam symmetrised negative-cosine loss with stop-gradient.

Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021 (arXiv 2011.10566),
Eq. 1–4 and Algorithm 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def negative_cosine(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """D(p, z) = −mean cos(p, sg(z)) over the batch; the stop-gradient on z prevents collapse (Eq. 3)."""
    with torch.autocast(device_type=prediction.device.type, enabled=False):
        return -F.cosine_similarity(prediction.float(), target.detach().float(), dim=-1).mean()


def simsiam_loss(
    prediction_1: torch.Tensor, prediction_2: torch.Tensor, projection_1: torch.Tensor, projection_2: torch.Tensor
) -> torch.Tensor:
    """L = ½·D(p1, z2) + ½·D(p2, z1) (SimSiam Eq. 4); in [−1, 1], −1 when each p matches the other z.

    Args:
        prediction_1, prediction_2: (B, D) predictor outputs of views 1 and 2.
        projection_1, projection_2: (B, D) projector outputs of views 1 and 2 (stop-gradient applied).
    """
    return 0.5 * negative_cosine(prediction_1, projection_2) + 0.5 * negative_cosine(prediction_2, projection_1)
