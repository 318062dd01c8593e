"""NT-Xent (normalised temperature-scaled cross-entropy), multi-positive form.

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020
(arXiv 2002.05709), Eq. 1; the multi-positive form (every other view of the same image is a
positive) as in solo-learn's `simclr_loss_func` and Khosla et al., "Supervised Contrastive
Learning", NeurIPS 2020, Eq. 2 ("L_out").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from pathgen.ssl.collectives import all_gather_cat, rank, world_size
from pathgen.ssl.losses.weighting import weighted_mean


def nt_xent_loss(
    views: Sequence[torch.Tensor], temperature: float = 0.2, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """−mean_i log(pos_i / (pos_i + neg_i)), with similarities gathered from every rank.

    For anchor i, pos_i = Σ exp(ẑ_i·ẑ_j / τ) over the other views j of the same image and neg_i
    the same sum over every view of every other image in the global batch (all ranks). The
    anchor's similarity with itself is in neither. Computed as a log-sum-exp difference in fp32,
    so small τ cannot overflow.

    Args:
        views: V ≥ 2 projections (B, D), view v row i being image i; every rank the same B.
        temperature: τ (solo-learn config 0.2; SimCLR paper 0.1 at batch 4096).
        weights: Optional (B,) per-image weights (GenView's quality-driven loss): every anchor of
            image i (each of its V views, so both anchors of a two-view pair) gets w_i, and the
            mean becomes Σ w·ℓ / (V·B). None is the unweighted loss.

    Returns:
        The scalar loss, the mean over this rank's V·B anchors.
    """
    if len(views) < 2:
        raise ValueError(f"nt_xent_loss needs at least 2 views per image, got {len(views)}")
    n_views, batch = len(views), views[0].shape[0]
    if weights is not None and weights.shape != (batch,):
        raise ValueError(f"nt_xent_loss weights must have shape ({batch},), one per image; got {tuple(weights.shape)}")
    device = views[0].device
    with torch.autocast(device_type=device.type, enabled=False):
        anchors = F.normalize(torch.cat(list(views)).float(), dim=-1)  # (V·B, D), view-major
        logits = anchors @ all_gather_cat(anchors).T / temperature  # (V·B, W·V·B)
    local_ids = torch.arange(batch, device=device).repeat(n_views)
    anchor_ids = local_ids + rank() * batch
    column_ids = torch.cat([local_ids + r * batch for r in range(world_size())])
    is_self = torch.zeros_like(logits, dtype=torch.bool)
    rows = torch.arange(n_views * batch, device=device)
    is_self[rows, rows + rank() * n_views * batch] = True
    is_positive = (anchor_ids[:, None] == column_ids[None, :]) & ~is_self
    log_pos = torch.logsumexp(logits.masked_fill(~is_positive, float("-inf")), dim=1)
    log_all = torch.logsumexp(logits.masked_fill(is_self, float("-inf")), dim=1)
    return weighted_mean(log_all - log_pos, None if weights is None else weights.repeat(n_views))
