"""KoLeo regulariser: spread features uniformly over the sphere.

Sablayrolles et al., "Spreading vectors for similarity search", ICLR 2019 (arXiv 1806.03198),
the Kozachenko-Leonenko differential-entropy estimator; used on the class token in DINOv2
(Oquab et al., TMLR 2024, Sec. 4 "KoLeo regularizer").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def koleo_loss(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """−mean_i log(‖x_i − x_nn(i)‖ + eps) over L2-normalised rows, nn(i) the nearest other row.

    Minimising it pushes each feature away from its nearest neighbour in the batch, which
    raises the entropy of the feature distribution (DINOv2's KoLeoLoss). Computed in fp32.

    Args:
        features: (B, D) features, B ≥ 2 (local batch; DINOv2 does not gather across ranks).
        eps: Added to the distance before the log, and used by the normalisation.

    Returns:
        The scalar loss.
    """
    if features.shape[0] < 2:
        raise ValueError(f"koleo_loss needs at least 2 rows to find neighbours, got shape {tuple(features.shape)}")
    with torch.autocast(device_type=features.device.type, enabled=False):
        normed = F.normalize(features.float(), p=2, dim=-1, eps=eps)
        with torch.no_grad():
            similarity = normed @ normed.T
            similarity.fill_diagonal_(-2.0)  # a row is not its own neighbour; cosine ≥ −1 elsewhere
            nearest = similarity.argmax(dim=1)
        distances = F.pairwise_distance(normed, normed[nearest], p=2, eps=eps)
        return -torch.log(distances + eps).mean()
