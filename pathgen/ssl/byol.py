"""BYOL: predict an EMA target network's projection of another view.

Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020 (arXiv 2006.07733); MLP sizes and the
0.99 → 1 cosine EMA from solo-learn's byol.yaml (docs/methods/ssl_recipes.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pathgen.ssl.base import SSLMethod, StepInfo
from pathgen.ssl.heads import mlp
from pathgen.ssl.losses.byol import byol_loss
from pathgen.ssl.momentum import cosine_momentum, ema_update_, momentum_copy
from pathgen.ssl.multicrop import check_view_count


@dataclass
class BYOLConfig:
    """BYOL hyper-parameters (solo-learn: projector 4096 → 256, predictor 256 → 4096 → 256, EMA 0.99 → 1)."""

    proj_hidden_dim: int = 4096
    proj_out_dim: int = 256
    pred_hidden_dim: int = 4096
    momentum_base: float = 0.99
    momentum_final: float = 1.0
    n_global: int = 2
    n_local: int = 0


class BYOL(SSLMethod):
    """Online backbone → projector → predictor regressing the target network's projections.

    The target (backbone + projector) is an EMA of the online one, updated in `after_step`.
    Targets come from the global crops only; predictions from every crop (solo-learn's
    multi-crop BYOL). Each view goes through the networks on its own, so batch-norm statistics
    are per view as in the reference code. The loss sums 2 − 2·cos over ordered pairs (target view a, prediction
    view b ≠ a), so two views give BYOL's symmetrised loss. Pair weights (GenView, `pair_weighter`)
    are per image and apply to every ordered pair of that image's views.

    Args:
        backbone: Maps (B, 3, H, W) → (B, embed_dim).
        embed_dim: Backbone feature size.
        cfg: Hyper-parameters (BYOLConfig() when None).
    """

    def __init__(self, backbone: nn.Module, embed_dim: int, cfg: BYOLConfig | None = None):
        super().__init__(backbone, embed_dim)
        self.cfg = cfg = cfg or BYOLConfig()
        if cfg.n_global < 1 or cfg.n_global + cfg.n_local < 2:
            raise ValueError(f"BYOL needs n_global >= 1 and at least 2 views, got {cfg.n_global} + {cfg.n_local}")
        self.crops = (cfg.n_global, cfg.n_local)
        self.projector = mlp(embed_dim, cfg.proj_hidden_dim, cfg.proj_out_dim, n_layers=2)
        self.predictor = mlp(cfg.proj_out_dim, cfg.pred_hidden_dim, cfg.proj_out_dim, n_layers=2)
        self.target_backbone = momentum_copy(backbone)
        self.target_projector = momentum_copy(self.projector)

    def forward(self, views: list[torch.Tensor], info: StepInfo) -> dict[str, torch.Tensor]:
        """Sum of byol_loss(prediction of view b, target projection of global view a), b ≠ a."""
        check_view_count(views, self.crops, "BYOL")
        n_global = self.cfg.n_global
        predictions = [self.predictor(self.projector(self.backbone(view))) for view in views]
        with torch.no_grad():
            targets = [self.target_projector(self.target_backbone(view)) for view in views[:n_global]]
        weights = self.pair_weights(views)
        loss = sum(
            byol_loss(predictions[b], targets[a], weights) for a in range(n_global) for b in range(len(views)) if b != a
        )
        return {"loss": loss, **self.pair_weight_logs(weights)}

    @torch.no_grad()
    def after_step(self, info: StepInfo) -> None:
        """θ_target ← τ·θ_target + (1 − τ)·θ_online, τ cosine from momentum_base to momentum_final."""
        momentum = cosine_momentum(info.progress, self.cfg.momentum_base, self.cfg.momentum_final)
        ema_update_(self.target_backbone, self.backbone, momentum)
        ema_update_(self.target_projector, self.projector, momentum)
