"""MoCo v3: symmetric in-batch contrast between a predictor's queries and momentum keys.

Chen, Xie & He, "An Empirical Study of Training Self-Supervised Vision Transformers", ICCV 2021
(arXiv 2104.02057), Algorithm 1; defaults from facebookresearch/moco-v3 for ViT-S/16
(builder.py, vits.py, main_moco.py at commit c349e6e; docs/recipes.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pathgen.ssl.base import SSLMethod, StepInfo
from pathgen.ssl.heads import mlp
from pathgen.ssl.losses.moco import mocov3_loss
from pathgen.ssl.mocov3_vit import mocov3_init_, use_sincos_position_embedding_
from pathgen.ssl.momentum import cosine_momentum, ema_update_, momentum_copy
from pathgen.ssl.multicrop import check_view_count


@dataclass
class MoCoV3Config:
    """MoCo v3 hyper-parameters for ViTs: projector 3 layers 4096 → 256, predictor 2 layers, τ 0.2,
    momentum cosine 0.99 → 1. For ResNets use proj_layers 2, pred_last_bn False and temperature 1.0.

    `stop_grad_patch_embed` freezes the ViT patch projection (a random fixed patch embedding),
    which MoCo v3 found stabilises ViT training (Sec. 5). It sets requires_grad False on the
    backbone passed in (`backbone.patch_embed.proj`) and does nothing for other backbones.

    Official-code details (facebookresearch/moco-v3): every MLP Linear is bias-free and the ViT
    predictor ends in BatchNorm1d(affine=False) like the projector (`pred_last_bn`); AdamW decays
    every parameter, biases and norms included (`decay_biases_and_norms`). `sincos_pos_embed`
    swaps the ViT's learned position embedding for MoCo v3's fixed 2-D sin-cos one and
    `mocov3_init` applies its ViT weight init (pathgen.ssl.mocov3_vit); both need a timm ViT.
    """

    proj_hidden_dim: int = 4096
    proj_out_dim: int = 256
    proj_layers: int = 3
    pred_hidden_dim: int = 4096
    pred_last_bn: bool = True
    temperature: float = 0.2
    momentum_base: float = 0.99
    momentum_final: float = 1.0
    stop_grad_patch_embed: bool = True
    sincos_pos_embed: bool = False
    mocov3_init: bool = False
    decay_biases_and_norms: bool = True


class MoCoV3(SSLMethod):
    """Base encoder (backbone + projector + predictor) and a momentum encoder (backbone + projector).

    Args:
        backbone: Maps (B, 3, H, W) → (B, embed_dim).
        embed_dim: Backbone feature size.
        cfg: Hyper-parameters (MoCoV3Config() when None).
    """

    crops = (2, 0)

    def __init__(self, backbone: nn.Module, embed_dim: int, cfg: MoCoV3Config | None = None):
        super().__init__(backbone, embed_dim)
        self.cfg = cfg = cfg or MoCoV3Config()
        if cfg.mocov3_init:
            mocov3_init_(backbone)
        if cfg.sincos_pos_embed:
            use_sincos_position_embedding_(backbone)
        patch_projection = getattr(getattr(backbone, "patch_embed", None), "proj", None)
        if cfg.stop_grad_patch_embed and isinstance(patch_projection, nn.Module):
            patch_projection.requires_grad_(False)
        self.projector = mlp(embed_dim, cfg.proj_hidden_dim, cfg.proj_out_dim, cfg.proj_layers, last_bn=True)
        self.predictor = mlp(
            cfg.proj_out_dim, cfg.pred_hidden_dim, cfg.proj_out_dim, n_layers=2, last_bn=cfg.pred_last_bn
        )
        self.momentum_backbone = momentum_copy(backbone)
        self.momentum_projector = momentum_copy(self.projector)

    def forward(self, views: list[torch.Tensor], info: StepInfo) -> dict[str, torch.Tensor]:
        """L(q1, k2) + L(q2, k1) with MoCo v3's 2τ-scaled contrastive loss over the global batch."""
        check_view_count(views, self.crops, "MoCoV3")
        query_1, query_2 = (self.predictor(self.projector(self.backbone(view))) for view in views)
        with torch.no_grad():
            key_1, key_2 = (self.momentum_projector(self.momentum_backbone(view)) for view in views)
        weights = self.pair_weights(views)
        loss = mocov3_loss(query_1, query_2, key_1, key_2, self.cfg.temperature, weights)
        return {"loss": loss, **self.pair_weight_logs(weights)}

    @torch.no_grad()
    def after_step(self, info: StepInfo) -> None:
        """Momentum encoder EMA, m = 1 − ½(1 + cos(π·progress))·(1 − m0) (official `--moco-m-cos`)."""
        momentum = cosine_momentum(info.progress, self.cfg.momentum_base, self.cfg.momentum_final)
        ema_update_(self.momentum_backbone, self.backbone, momentum)
        ema_update_(self.momentum_projector, self.projector, momentum)
