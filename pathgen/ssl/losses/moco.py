"""MoCo contrastive losses: v3 (in-batch keys from all ranks) and v2 (keys from a queue).

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020
(arXiv 1911.05722), Algorithm 1; Chen et al., "Improved Baselines with Momentum Contrastive
Learning" (MoCo v2), arXiv 2003.04297; Chen, Xie & He, "An Empirical Study of Training
Self-Supervised Vision Transformers" (MoCo v3), ICCV 2021 (arXiv 2104.02057), Algorithm 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pathgen.ssl.collectives import all_gather_cat, rank
from pathgen.ssl.losses.weighting import weighted_mean


def mocov3_contrastive(
    query: torch.Tensor, key: torch.Tensor, temperature: float, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """2τ · CE(q̂·k̂ᵀ / τ, labels = i + B·rank), keys gathered from every rank (MoCo v3 Alg. 1).

    The 2τ factor makes the loss scale independent of τ, as in the official code.

    Args:
        query: (B, D) predictor outputs of the online branch for one view.
        key: (B, D) momentum-projector outputs for the other view (no gradient).
        temperature: τ (MoCo v3: 0.2 for ViT, 1.0 for ResNet-50).
        weights: Optional (B,) per-sample weights (GenView's quality-driven loss): the cross-entropy
            reduces as Σ w_i·ℓ_i / B instead of the plain mean. None is the unweighted loss.
    """
    with torch.autocast(device_type=query.device.type, enabled=False):
        query = F.normalize(query.float(), dim=1)
        key = F.normalize(key.detach().float(), dim=1)
        logits = query @ all_gather_cat(key).T / temperature
    labels = torch.arange(query.shape[0], device=query.device) + query.shape[0] * rank()
    if weights is None:
        return F.cross_entropy(logits, labels) * (2.0 * temperature)
    return weighted_mean(F.cross_entropy(logits, labels, reduction="none"), weights) * (2.0 * temperature)


def mocov3_loss(
    query_1: torch.Tensor,
    query_2: torch.Tensor,
    key_1: torch.Tensor,
    key_2: torch.Tensor,
    temperature: float = 0.2,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetrised MoCo v3 loss: L(q1, k2) + L(q2, k1); optional (B,) weights apply to both terms (GenView)."""
    return mocov3_contrastive(query_1, key_2, temperature, weights) + mocov3_contrastive(
        query_2, key_1, temperature, weights
    )


def mocov2_loss(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """InfoNCE with one positive (the key of the same image) and the queue as negatives (MoCo Eq. 1).

    Args:
        query: (B, D) online projections.
        key: (B, D) momentum projections of the other view (no gradient).
        queue: (K, D) L2-normalised keys of earlier batches.
        temperature: τ (MoCo v2 0.2).
    """
    with torch.autocast(device_type=query.device.type, enabled=False):
        query = F.normalize(query.float(), dim=1)
        key = F.normalize(key.detach().float(), dim=1)
        positive = torch.sum(query * key, dim=1, keepdim=True)
        negatives = query @ queue.detach().float().T
        logits = torch.cat([positive, negatives], dim=1) / temperature
    labels = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return F.cross_entropy(logits, labels)


class KeyQueue(nn.Module):
    """First-in first-out queue of L2-normalised keys, the MoCo dictionary of negatives.

    Held as buffers so it moves with `.to(device)` and is saved in checkpoints. `enqueue` gathers
    the keys of every rank first, so all ranks keep the same queue (MoCo Alg. 1 "enqueue").

    Args:
        size: Number of keys K (MoCo 65536).
        dim: Key dimension.
    """

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Replace the oldest entries with this step's (B, D) keys from every rank (wrapping round)."""
        incoming = F.normalize(all_gather_cat(keys.detach()).float(), dim=1)
        size = self.keys.shape[0]
        if incoming.shape[0] > size:
            raise ValueError(f"global batch of {incoming.shape[0]} keys exceeds the queue size {size}")
        slots = (self.pointer + torch.arange(incoming.shape[0], device=incoming.device)) % size
        self.keys[slots] = incoming.to(self.keys.dtype)
        self.pointer.copy_((self.pointer + incoming.shape[0]) % size)
