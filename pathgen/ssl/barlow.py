"""Barlow Twins: make the cross-correlation of two views' projections the identity.

Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy Reduction", ICML 2021
(arXiv 2103.03230). The defaults are solo-learn's barlow.yaml (projector 4096, scale 0.048);
configs/ssl/barlow_resnet50.yaml has the paper's (docs/recipes.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pathgen.ssl.base import SSLMethod, StepInfo
from pathgen.ssl.heads import mlp
from pathgen.ssl.losses.barlow import barlow_twins_loss
from pathgen.ssl.multicrop import check_view_count


@dataclass
class BarlowConfig:
    """Barlow Twins hyper-parameters (solo-learn: projector 4096-4096-4096, λ 0.0051, scale 0.048).

    The official code (facebookresearch/barlowtwins) uses a 8192-8192-8192 projector, no loss scale
    and LARS at 0.2 for weights but 0.0048 for biases and BN parameters (1-D tensors): set
    `bias_and_norm_lr_scale` 0.024 (= 0.0048 / 0.2; the optimizer group's "lr_scale").
    """

    proj_hidden_dim: int = 4096
    proj_out_dim: int = 4096
    lambd: float = 0.0051
    scale_loss: float = 0.048
    bias_and_norm_lr_scale: float = 1.0


class BarlowTwins(SSLMethod):
    """Backbone → 3-layer projector (Linear → BN → ReLU ×2 → Linear) with the Barlow Twins loss.

    Args:
        backbone: Maps (B, 3, H, W) → (B, embed_dim).
        embed_dim: Backbone feature size.
        cfg: Hyper-parameters (BarlowConfig() when None).
    """

    crops = (2, 0)

    def __init__(self, backbone: nn.Module, embed_dim: int, cfg: BarlowConfig | None = None):
        super().__init__(backbone, embed_dim)
        self.cfg = cfg = cfg or BarlowConfig()
        self.projector = mlp(embed_dim, cfg.proj_hidden_dim, cfg.proj_out_dim, n_layers=3)

    def forward(self, views: list[torch.Tensor], info: StepInfo) -> dict[str, torch.Tensor]:
        """Barlow Twins loss on the two views' projections, each view on its own (per-view BN statistics)."""
        check_view_count(views, self.crops, "BarlowTwins")
        projection_1, projection_2 = (self.projector(self.backbone(view)) for view in views)
        loss = barlow_twins_loss(projection_1, projection_2, self.cfg.lambd, self.cfg.scale_loss)
        return {"loss": loss}
