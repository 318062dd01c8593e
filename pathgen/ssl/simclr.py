"""SimCLR: contrast every view against every other image's views in the global batch.

Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations", ICML 2020
(arXiv 2002.05709). Defaults are solo-learn's simclr.yaml (projector 4096 → 512, τ 0.2);
configs/ssl/simclr_resnet50.yaml has the paper's (2048 → 128 with BN, τ 0.1; docs/recipes.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pathgen.ssl.base import SSLMethod, StepInfo
from pathgen.ssl.heads import mlp
from pathgen.ssl.losses.simclr import nt_xent_loss
from pathgen.ssl.multicrop import check_view_count


@dataclass
class SimCLRConfig:
    """SimCLR hyper-parameters (solo-learn config: projector 4096 → 512, τ 0.2).

    With n_local > 0 the local crops join as extra positives (multi-positive NT-Xent).
    `proj_bn` builds SimCLR v1's head (google-research/simclr model_util.projection_head at
    commit 85e8552): Linear → BN → ReLU → Linear → BN, bias-free, the last BN scaling but not shifting.
    """

    proj_hidden_dim: int = 4096
    proj_out_dim: int = 512
    temperature: float = 0.2
    n_global: int = 2
    n_local: int = 0
    proj_bn: bool = False


class SimCLR(SSLMethod):
    """Backbone + Linear → ReLU → Linear projector trained with multi-positive NT-Xent.

    Args:
        backbone: Maps (B, 3, H, W) → (B, embed_dim).
        embed_dim: Backbone feature size.
        cfg: Hyper-parameters (SimCLRConfig() when None).
    """

    def __init__(self, backbone: nn.Module, embed_dim: int, cfg: SimCLRConfig | None = None):
        super().__init__(backbone, embed_dim)
        self.cfg = cfg = cfg or SimCLRConfig()
        if cfg.n_global + cfg.n_local < 2:
            raise ValueError(f"SimCLR needs at least 2 views, got {cfg.n_global} + {cfg.n_local}")
        self.crops = (cfg.n_global, cfg.n_local)
        self.projector = mlp(
            embed_dim,
            cfg.proj_hidden_dim,
            cfg.proj_out_dim,
            n_layers=2,
            bn=cfg.proj_bn,
            last_bn=cfg.proj_bn,
            last_bn_affine=cfg.proj_bn,
        )
        if cfg.proj_bn:  # TF's batch_norm(center=False): a learned scale, no shift
            self.projector[-1].bias.requires_grad_(False)

    def forward(self, views: list[torch.Tensor], info: StepInfo) -> dict[str, torch.Tensor]:
        """NT-Xent over the projections of all views, negatives gathered from every rank.

        Each view goes through the network on its own, as in the reference code, so batch-norm
        statistics (in a CNN backbone) are per view.
        """
        check_view_count(views, self.crops, "SimCLR")
        projections = [self.projector(self.backbone(view)) for view in views]
        weights = self.pair_weights(views)
        loss = nt_xent_loss(projections, self.cfg.temperature, weights)
        return {"loss": loss, **self.pair_weight_logs(weights)}
