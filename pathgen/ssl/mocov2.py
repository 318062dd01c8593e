"""MoCo v2: contrast queries against a momentum encoder's key and a queue of past keys.

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020
(arXiv 1911.05722); Chen et al., "Improved Baselines with Momentum Contrastive Learning",
arXiv 2003.04297. Symmetrised with one queue per view as solo-learn's MoCo v2+, with the
GenerativeSSL `mocov2plus` defaults (docs/methods/ssl_recipes.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pathgen.ssl.base import SSLMethod, StepInfo
from pathgen.ssl.collectives import shuffled_bn_forward
from pathgen.ssl.heads import mlp
from pathgen.ssl.losses.moco import KeyQueue, mocov2_loss
from pathgen.ssl.momentum import cosine_momentum, ema_update_, momentum_copy
from pathgen.ssl.multicrop import check_view_count


@dataclass
class MoCoV2Config:
    """MoCo v2+ hyper-parameters: projector 2048 → 256, queue 65536, τ 0.2, EMA 0.99 → 0.999.

    MoCo v2 itself (facebookresearch/moco, `--mlp --moco-t 0.2 --aug-plus --cos`): 128-d output,
    a fixed EMA 0.999 (momentum_base = momentum_final), one direction q(view 1) · k(view 2) with one
    queue (`symmetric` False), SGD decaying every parameter (`decay_biases_and_norms`) and
    shuffled BN (`shuffle_bn`: the key encoder sees the global batch in a random order across ranks).
    """

    proj_hidden_dim: int = 2048
    proj_out_dim: int = 256
    queue_size: int = 65536
    temperature: float = 0.2
    momentum_base: float = 0.99
    momentum_final: float = 0.999
    symmetric: bool = True
    shuffle_bn: bool = False
    decay_biases_and_norms: bool = False


class MoCoV2(SSLMethod):
    """Query encoder (backbone + Linear → ReLU → Linear) and its EMA key encoder, plus two key queues.

    Loss = ½[InfoNCE(q1, k2, queue of view-2 keys) + InfoNCE(q2, k1, queue of view-1 keys)]; in
    training the step's keys are then enqueued (gathered from every rank). Note: MoCo's shuffled
    batch norm across GPUs is not done, so with a batch-norm backbone under DDP prefer SyncBN.

    Args:
        backbone: Maps (B, 3, H, W) → (B, embed_dim).
        embed_dim: Backbone feature size.
        cfg: Hyper-parameters (MoCoV2Config() when None).
    """

    crops = (2, 0)

    def __init__(self, backbone: nn.Module, embed_dim: int, cfg: MoCoV2Config | None = None):
        super().__init__(backbone, embed_dim)
        self.cfg = cfg = cfg or MoCoV2Config()
        self.projector = mlp(embed_dim, cfg.proj_hidden_dim, cfg.proj_out_dim, n_layers=2, bn=False)
        self.momentum_backbone = momentum_copy(backbone)
        self.momentum_projector = momentum_copy(self.projector)
        self.sync_batchnorm = not cfg.shuffle_bn  # shuffled BN works on per-rank statistics (pathgen.distributed)
        # one queue per keyed view: [view 1, view 2] when symmetric, else [view 2]
        self.queues = nn.ModuleList([KeyQueue(cfg.queue_size, cfg.proj_out_dim) for _ in range(1 + cfg.symmetric)])

    def forward(self, views: list[torch.Tensor], info: StepInfo) -> dict[str, torch.Tensor]:
        """Queue InfoNCE, symmetrised or q1·k2 only; enqueues this step's keys when in training mode."""
        check_view_count(views, self.crops, "MoCoV2")
        keys = [self._key(view) for view in views]
        # clone: the queues change in place below, before backward needs them
        queued = [queue.keys.clone() for queue in self.queues]
        loss = mocov2_loss(self.projector(self.backbone(views[0])), keys[1], queued[-1], self.cfg.temperature)
        if self.cfg.symmetric:
            second = mocov2_loss(self.projector(self.backbone(views[1])), keys[0], queued[0], self.cfg.temperature)
            loss = 0.5 * (loss + second)
        if self.training:
            for queue, key in zip(self.queues, keys[-len(self.queues) :]):
                queue.enqueue(key)
        return {"loss": loss}

    @torch.no_grad()
    def _key(self, view: torch.Tensor) -> torch.Tensor:
        """The momentum encoder's key for one view, with MoCo's shuffled BN when configured."""
        encoder = nn.Sequential(self.momentum_backbone, self.momentum_projector)
        return shuffled_bn_forward(encoder, view) if self.cfg.shuffle_bn else encoder(view)

    @torch.no_grad()
    def after_step(self, info: StepInfo) -> None:
        """Key encoder EMA with momentum cosine from momentum_base to momentum_final."""
        momentum = cosine_momentum(info.progress, self.cfg.momentum_base, self.cfg.momentum_final)
        ema_update_(self.momentum_backbone, self.backbone, momentum)
        ema_update_(self.momentum_projector, self.projector, momentum)
