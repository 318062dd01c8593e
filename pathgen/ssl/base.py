"""The interface every SSL method implements, so one training loop (pathgen.train) runs them all.

A method owns its student backbone, heads, and any teacher / momentum copies. The loop gives it a
batch of views and the training progress; it returns its loss and scalars to log. After each
optimizer step the loop calls `after_step`, where momentum encoders are updated.
"""

from __future__ import annotations

import abc

import torch
from torch import nn

from pathgen.schedules import StepInfo

__all__ = ["SSLMethod", "StepInfo"]


class SSLMethod(nn.Module, abc.ABC):
    """Base class: a backbone (timm model with num_classes=0, returning pooled features) plus heads."""

    #: crops the method expects: (n_global, n_local); the data pipeline produces exactly these
    crops: tuple[int, int] = (2, 0)

    def __init__(self, backbone: nn.Module, embed_dim: int):
        super().__init__()
        self.backbone = backbone
        self.embed_dim = embed_dim

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
        """Trainable parameters split for weight decay: no decay on biases and norm weights (1-D)."""
        decay, no_decay = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
