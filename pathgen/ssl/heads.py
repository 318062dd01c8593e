"""Projection heads and predictors for the SSL methods: the DINO head and one MLP builder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class DINOHead(nn.Module):
    """DINO projection head: MLP → L2-normalise → weight-normalised linear to `out_dim` prototypes.

    The MLP is in → hidden → … → bottleneck with GELU between layers (and BatchNorm before each
    GELU with `use_bn`, DINO's `--use_bn_in_head`), trunc-normal (std 0.02) weights and zero biases.
    The last layer has no bias and its weight-norm gain is filled with 1; with `norm_last_layer` the
    gain is frozen, so every prototype has unit norm and the logits are cosine similarities, which DINO
    found stabilises training (Caron et al., ICCV 2021, Sec. 3.1 and Appendix; facebookresearch/dino
    vision_transformer.DINOHead).

    Args:
        in_dim: Backbone feature size.
        out_dim: Number of prototypes K (DINO 65536).
        hidden_dim: MLP hidden size (2048).
        bottleneck_dim: Size before the last layer (256).
        n_layers: Linear layers in the MLP, ≥ 1 (3).
        norm_last_layer: Freeze the last layer's weight-norm gain at 1 (True).
        use_bn: BatchNorm1d after each hidden Linear (False). Batch statistics remove what every
            image shares, so a small randomly initialised backbone whose features differ little
            between images still gives the teacher targets that differ between images.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        n_layers: int = 3,
        norm_last_layer: bool = True,
        use_bn: bool = False,
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"DINOHead needs n_layers >= 1, got {n_layers}")
        dims = [in_dim] + [hidden_dim] * (n_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for index, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(d_in, d_out))
            if index < n_layers - 1:
                layers.extend([nn.BatchNorm1d(d_out), nn.GELU()] if use_bn else [nn.GELU()])
        self.mlp = nn.Sequential(*layers)
        self.mlp.apply(_trunc_normal_init)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        gain = self.last_layer.parametrizations.weight.original0
        with torch.no_grad():
            gain.fill_(1.0)
        gain.requires_grad_(not norm_last_layer)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, in_dim) features → (N, out_dim) prototype logits."""
        bottleneck = self.mlp(features)
        bottleneck = F.normalize(bottleneck, dim=-1, p=2, eps=1e-6)
        return self.last_layer(bottleneck)


def _trunc_normal_init(module: nn.Module) -> None:
    """Trunc-normal(std 0.02) weights and zero biases for Linear layers (DINO's _init_weights)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def mlp(
    in_dim: int,
    hidden_dim: int,
    out_dim: int,
    n_layers: int,
    bn: bool = True,
    last_bn: bool = False,
    last_bn_affine: bool = False,
) -> nn.Sequential:
    """Projector / predictor MLP: (Linear → [BN] → ReLU) × (n_layers − 1) → Linear → [BN].

    The patterns of the solo-learn / official recipes (docs/methods/ssl_recipes.md):
    SimCLR projector `mlp(d, 4096, 512, 2, bn=False)`; MoCo v3 projector `mlp(d, 4096, 256, 3,
    last_bn=True)` (2 layers for ResNets) and predictor `mlp(256, 4096, 256, 2)`; BYOL projector
    `mlp(d, 4096, 256, 2)` and predictor `mlp(256, 4096, 256, 2)`; SimSiam projector
    `mlp(d, 2048, 2048, 3, last_bn=True)` and predictor `mlp(2048, 512, 2048, 2)`; Barlow Twins
    projector `mlp(d, 4096, 4096, 3)`; MoCo v2 projector `mlp(d, 2048, 256, 2, bn=False)`.
    A Linear directly followed by BN has no bias (the BN's shift or centring cancels it).

    Args:
        in_dim: Input size.
        hidden_dim: Hidden size.
        out_dim: Output size.
        n_layers: Number of Linear layers, ≥ 1.
        bn: BatchNorm1d after each hidden Linear.
        last_bn: BatchNorm1d after the last Linear (MoCo v3, SimSiam projectors).
        last_bn_affine: Whether that last BN learns scale and shift (False in MoCo v3 / SimSiam).
    """
    if n_layers < 1:
        raise ValueError(f"mlp needs n_layers >= 1, got {n_layers}")
    dims = [in_dim] + [hidden_dim] * (n_layers - 1) + [out_dim]
    layers: list[nn.Module] = []
    for d_in, d_out in zip(dims[:-2], dims[1:-1]):
        layers.append(nn.Linear(d_in, d_out, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm1d(d_out))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.Linear(dims[-2], dims[-1], bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(dims[-1], affine=last_bn_affine))
    return nn.Sequential(*layers)
