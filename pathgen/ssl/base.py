"""The interface every SSL method implements, so one training loop (pathgen.train) runs them all.

A method owns its student backbone, heads, and any teacher / momentum copies. The loop gives it a
batch of views and the training progress; it returns its loss and scalars to log. After each
optimizer step the loop calls `after_step`, where momentum encoders are updated.

Pairwise methods (MoCo v3, SimSiam, BYOL, SimCLR) can weight each positive pair in their loss by
an optional `pair_weighter`, GenView's quality-driven contrastive loss (Li et al., ECCV 2024;
pathgen.genaug.quality.QualityWeighter). DINO, Barlow Twins and MoCo v2 take no pair weights:
DINO and Barlow Twins are not per-pair contrastive losses (a distillation over all crop pairs, a
batch cross-correlation matrix), and GenView's released configs weight only MoCo v3 and SimSiam;
its MoCo v2 recipe is not public (docs/methods/genview.md, quality-weighted loss), though MoCo v2's per-query
InfoNCE could take
weights the same way.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch
from torch import nn

from pathgen.optim import decay_groups
from pathgen.schedules import StepInfo

__all__ = ["PairWeighter", "SSLMethod", "StepInfo"]

#: views (global crops first, each (B, 3, H, W)) → (B,) loss weight per image, or None for unweighted
PairWeighter = Callable[[list[torch.Tensor]], torch.Tensor | None]


class SSLMethod(nn.Module, abc.ABC):
    """Base class: a backbone (timm model with num_classes=0, returning pooled features) plus heads."""

    #: crops the method expects: (n_global, n_local); the data pipeline produces exactly these
    crops: tuple[int, int] = (2, 0)

    def __init__(self, backbone: nn.Module, embed_dim: int):
        super().__init__()
        self.backbone = backbone
        self.embed_dim = embed_dim
        #: optional GenView pair weighter, set after construction; read by `pair_weights`
        self.pair_weighter: PairWeighter | None = None

    def __setattr__(self, name: str, value: object) -> None:
        if name == "pair_weighter" and isinstance(value, nn.Module):
            raise TypeError(
                "pair_weighter must be a plain callable, not an nn.Module: a module would be registered "
                "into this method (its state dict, optimizer groups, train()/eval() and DDP); keep the frozen "
                "scorer inside a plain object such as pathgen.genaug.quality.QualityWeighter"
            )
        super().__setattr__(name, value)

    def pair_weights(self, views: list[torch.Tensor]) -> torch.Tensor | None:
        """(B,) detached fp32 loss weights from `pair_weighter` (GenView), or None when there is none.

        Methods whose loss takes per-pair weights call this in `forward` and pass the result on;
        None keeps their loss exactly the unweighted one.
        """
        if self.pair_weighter is None:
            return None
        with torch.no_grad():
            weights = self.pair_weighter(views)
        if weights is None:
            return None
        batch = views[0].shape[0]
        if weights.shape != (batch,):
            raise ValueError(f"pair_weighter returned shape {tuple(weights.shape)}; expected ({batch},), one per image")
        return weights.detach().float()

    @staticmethod
    def pair_weight_logs(weights: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Scalars to log about the pair weights: none when unweighted, else their largest value."""
        return {} if weights is None else {"pair_weight_max": weights.max()}

    @abc.abstractmethod
    def forward(self, views: list[torch.Tensor], info: StepInfo) -> dict[str, torch.Tensor]:
        """Loss on one batch: `views` are n_global global crops then n_local local crops, each
        (B, 3, H, W) normalised float. Returns {"loss": scalar, ...other scalars to log}."""

    def before_optimizer_step(self, info: StepInfo) -> None:
        """Adjust gradients after backward, before the step (DINO zeroes its last layer's early on)."""

    @torch.no_grad()
    def after_step(self, info: StepInfo) -> None:
        """Update momentum / teacher weights after the optimizer step (no-op by default)."""

    def export_backbone(self) -> nn.Module:
        """The backbone to save as the trained encoder (the teacher's, for DINO-like methods)."""
        return self.backbone

    def param_groups(self) -> list[dict]:
        """Trainable parameters split for weight decay: by default no decay on biases and norm weights
        (1-D); a method config with `decay_biases_and_norms` / `bias_and_norm_lr_scale` fields sets
        its official code's rule instead (pathgen.optim.decay_groups)."""
        cfg = getattr(self, "cfg", None)
        return decay_groups(
            self.named_parameters(),
            getattr(cfg, "decay_biases_and_norms", False),
            getattr(cfg, "bias_and_norm_lr_scale", 1.0),
        )
