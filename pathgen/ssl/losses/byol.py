"""BYOL regression loss between the online prediction and the target projection.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
NeurIPS 2020 (arXiv 2006.07733), Eq. 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pathgen.ssl.losses.weighting import weighted_mean


def byol_loss(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of ‖p̂ − ẑ‖² = 2 − 2·cos(p, sg(z)) (BYOL Eq. 2).

    The target is detached here (stop-gradient), so only the online branch learns; the target
    network follows it by EMA. 0 when p and z point the same way, 4 when opposite.

    Args:
        prediction: (B, D) online predictor outputs p.
        target: (B, D) target-network projections z of another view.
        weights: Optional (B,) per-pair weights: the mean becomes Σ w_i·ℓ_i / B (GenView's
            quality-driven loss). None is the unweighted loss.

    Returns:
        The scalar loss (fp32).
    """
    with torch.autocast(device_type=prediction.device.type, enabled=False):
        cosine = F.cosine_similarity(prediction.float(), target.detach().float(), dim=-1)
    return weighted_mean(2.0 - 2.0 * cosine, weights)
