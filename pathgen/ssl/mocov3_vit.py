"""MoCo v3's ViT changes to a timm VisionTransformer: fixed 2-D sin-cos position embeddings and its init.

Chen, Xie & He, ICCV 2021 (arXiv 2104.02057), Sec. 4 and Appendix; facebookresearch/moco-v3
`vits.py` (VisionTransformerMoCo, commit c349e6e). MoCo v3's ViT-S also has 12 heads where timm's
`vit_small_patch16_224` has 6: that is a backbone argument (`backbone.kwargs.num_heads: 12`).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def sincos_2d_position_embedding(grid_h: int, grid_w: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """(1, 1 + grid_h·grid_w, dim) fixed embedding: a zero row for [cls], then [sin w, cos w, sin h, cos h].

    The token order is MoCo v3's own (torch.meshgrid(grid_w, grid_h) with "ij" indexing, flattened),
    kept so that weights and results carry over; each quarter of `dim` holds one of the four terms.
    """
    if dim % 4:
        raise ValueError(f"a 2-D sin-cos position embedding needs an embedding size divisible by 4, got {dim}")
    coords_w, coords_h = torch.meshgrid(
        torch.arange(grid_w, dtype=torch.float32), torch.arange(grid_h, dtype=torch.float32), indexing="ij"
    )
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    out_w = coords_w.flatten()[:, None] * omega[None]
    out_h = coords_h.flatten()[:, None] * omega[None]
    patches = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)
    return torch.cat([torch.zeros(1, dim), patches])[None]


def use_sincos_position_embedding_(vit: nn.Module) -> None:
    """Replace a timm ViT's learned position embedding by MoCo v3's fixed one (requires_grad False)."""
    pos_embed = getattr(vit, "pos_embed", None)
    grid = getattr(getattr(vit, "patch_embed", None), "grid_size", None)
    if not isinstance(pos_embed, nn.Parameter) or grid is None:
        raise ValueError(
            f"{type(vit).__name__} has no ViT position embedding to replace; "
            "set method_options.sincos_pos_embed=false for this backbone"
        )
    n_prefix = pos_embed.shape[1] - grid[0] * grid[1]
    if n_prefix != 1:
        raise ValueError(f"MoCo v3's sin-cos embedding assumes exactly one [cls] token in pos_embed, found {n_prefix}")
    with torch.no_grad():
        pos_embed.copy_(sincos_2d_position_embedding(grid[0], grid[1], pos_embed.shape[-1]))
    pos_embed.requires_grad_(False)


def mocov3_init_(vit: nn.Module) -> None:
    """MoCo v3's weight init: Xavier-uniform Linears (Q, K and V each on its own), zero biases,
    Xavier-uniform patch projection, [cls] token N(0, 1e-6²)."""
    for name, module in vit.named_modules():
        if isinstance(module, nn.Linear):
            if "qkv" in name:
                bound = math.sqrt(6.0 / (module.weight.shape[0] // 3 + module.weight.shape[1]))
                nn.init.uniform_(module.weight, -bound, bound)
            else:
                nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    if getattr(vit, "cls_token", None) is not None:
        nn.init.normal_(vit.cls_token, std=1e-6)
    projection = getattr(getattr(vit, "patch_embed", None), "proj", None)
    if isinstance(projection, nn.Conv2d):
        fan = projection.in_channels * projection.kernel_size[0] * projection.kernel_size[1] + projection.out_channels
        bound = math.sqrt(6.0 / fan)
        nn.init.uniform_(projection.weight, -bound, bound)
        if projection.bias is not None:
            nn.init.zeros_(projection.bias)
