"""Per-sample loss weights: the weighted mean GenView's quality-driven loss uses.

Li et al., "GenView: Enhancing View Quality with Pretrained Generative Model for Self-Supervised
Learning", ECCV 2024: each positive pair i gets a weight w_i (mean 1 over the batch) and a loss
reduces as Σ_i w_i·ℓ_i / B, mmpretrain's weighted mean reduction (docs/methods/genview.md, quality-weighted loss).
"""

from __future__ import annotations

import torch


def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """mean_i(w_i·values_i) over the first dimension; `values.mean()` itself when weights is None.

    Args:
        values: (N,) per-sample losses.
        weights: (N,) per-sample weights (detached here: weights never get a gradient), or None.
    """
    if weights is None:
        return values.mean()
    if weights.shape != values.shape[:1]:
        raise ValueError(
            f"loss weights must have shape ({values.shape[0]},), one per sample; got {tuple(weights.shape)}"
        )
    return (values * weights.detach().to(values.dtype)).mean()
