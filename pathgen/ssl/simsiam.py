"""SimSiam: a Siamese network with a predictor and stop-gradient, no negatives, no momentum.

Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021 (arXiv 2011.10566);
2048-d projector and 512-d predictor bottleneck from the paper (docs/methods/ssl_recipes.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pathgen.ssl.base import SSLMethod, StepInfo
from pathgen.ssl.heads import mlp
from pathgen.ssl.losses.simsiam import simsiam_loss
from pathgen.ssl.multicrop import check_view_count


@dataclass
class SimSiamConfig:
    """SimSiam hyper-parameters (paper / GenView: 2048-d projector, predictor bottleneck 512).

    solo-learn's config uses 4096 for the projector. `fixed_predictor_lr` marks the predictor's
    parameter groups with "fixed_lr": True so a training loop can keep their learning rate
    constant, which the paper found helps (Sec. 4.4). The official SGD decays every parameter,
    biases and BN included (`decay_biases_and_norms`, facebookresearch/simsiam main_simsiam.py).
    """

    proj_hidden_dim: int = 2048
    proj_out_dim: int = 2048
    pred_hidden_dim: int = 512
    fixed_predictor_lr: bool = True
    decay_biases_and_norms: bool = True


class SimSiam(SSLMethod):
    """Backbone → 3-layer projector (final BN without affine) → 2-layer bottleneck predictor.

    Args:
        backbone: Maps (B, 3, H, W) → (B, embed_dim).
        embed_dim: Backbone feature size.
        cfg: Hyper-parameters (SimSiamConfig() when None).
    """

    crops = (2, 0)

    def __init__(self, backbone: nn.Module, embed_dim: int, cfg: SimSiamConfig | None = None):
        super().__init__(backbone, embed_dim)
        self.cfg = cfg = cfg or SimSiamConfig()
        self.projector = mlp(embed_dim, cfg.proj_hidden_dim, cfg.proj_out_dim, n_layers=3, last_bn=True)
        self.predictor = mlp(cfg.proj_out_dim, cfg.pred_hidden_dim, cfg.proj_out_dim, n_layers=2)

    def forward(self, views: list[torch.Tensor], info: StepInfo) -> dict[str, torch.Tensor]:
        """½·D(p1, sg(z2)) + ½·D(p2, sg(z1)); each view on its own (per-view batch-norm statistics)."""
        check_view_count(views, self.crops, "SimSiam")
        projection_1, projection_2 = (self.projector(self.backbone(view)) for view in views)
        prediction_1, prediction_2 = self.predictor(projection_1), self.predictor(projection_2)
        weights = self.pair_weights(views)
        loss = simsiam_loss(prediction_1, prediction_2, projection_1, projection_2, weights)
        return {"loss": loss, **self.pair_weight_logs(weights)}

    def param_groups(self) -> list[dict]:
        """The base decay / no-decay split, with the predictor's groups marked "fixed_lr" when configured."""
        if not self.cfg.fixed_predictor_lr:
            return super().param_groups()
        predictor_ids = {id(p) for p in self.predictor.parameters()}
        groups: list[dict] = []
        for group in super().param_groups():
            rest = {**group, "params": [p for p in group["params"] if id(p) not in predictor_ids]}
            predictor = {**group, "params": [p for p in group["params"] if id(p) in predictor_ids], "fixed_lr": True}
            groups.extend(g for g in (rest, predictor) if g["params"])
        return groups
