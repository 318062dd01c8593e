"""Masked-image-modelling input for timm Vision Transformers: patch masks and a masked forward.

iBOT (Zhou et al., ICLR 2022) and DINOv2 (Oquab et al., TMLR 2024, Sec. 4) replace a random
subset of a global crop's patch embeddings with a learned mask token for the student and ask it
to predict the teacher's tokens there. timm's VisionTransformer has no mask-token input, so
`vit_tokens` re-runs its `forward_features` steps with the swap inserted after the patch
embedding; `tests/pathgen/ssl/test_masked_vit.py` checks it matches timm's own forward.
"""

from __future__ import annotations

import torch
from torch import nn

_VIT_PARTS = ("patch_embed", "_pos_embed", "patch_drop", "norm_pre", "blocks", "norm", "forward_head")


def supports_patch_tokens(backbone: nn.Module) -> bool:
    """True when `backbone` looks like a timm VisionTransformer (the parts `vit_tokens` calls)."""
    return all(hasattr(backbone, part) for part in _VIT_PARTS) and hasattr(backbone, "num_prefix_tokens")


def patch_count(backbone: nn.Module, image_hw: tuple[int, int]) -> int:
    """Number of patch tokens a timm ViT makes from an image of size `image_hw`."""
    patch_embed = backbone.patch_embed
    if hasattr(patch_embed, "dynamic_feat_size"):
        grid_h, grid_w = patch_embed.dynamic_feat_size(tuple(image_hw))
    else:
        grid_h, grid_w = patch_embed.grid_size
    return int(grid_h * grid_w)


def random_patch_masks(
    batch: int,
    n_patches: int,
    mask_probability: float = 0.5,
    ratio_min: float = 0.1,
    ratio_max: float = 0.5,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(batch, n_patches) bool masks: round(batch·p) random images get a random ratio of patches.

    As in DINOv2 (`mask_sample_probability` 0.5, `mask_ratio_min_max` (0.1, 0.5)) the masked
    images and their ratios (uniform in [ratio_min, ratio_max]) are drawn per batch; the
    positions are drawn uniformly at random (iBOT's "rand" masking), not in blocks.
    """
    n_masked_images = round(batch * mask_probability)
    masked_images = torch.randperm(batch, device=device)[:n_masked_images]
    ratios = torch.zeros(batch, device=device)
    ratios[masked_images] = torch.empty(n_masked_images, device=device).uniform_(ratio_min, ratio_max)
    n_masked_patches = (ratios * n_patches).round().long()
    position_rank = torch.rand(batch, n_patches, device=device).argsort(dim=1).argsort(dim=1)
    return position_rank < n_masked_patches[:, None]


def vit_tokens(
    backbone: nn.Module, images: torch.Tensor, masks: torch.Tensor | None = None, mask_token: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features and patch tokens of a timm ViT, with masked patches swapped for `mask_token`.

    Args:
        backbone: A timm VisionTransformer created with num_classes=0 (see `supports_patch_tokens`).
        images: (B, 3, H, W).
        masks: Optional (B, N) bool, True where the patch embedding is replaced.
        mask_token: (1, D) or (D,) learned embedding used where `masks` is True.

    Returns:
        (B, D) pooled features (what `backbone(images)` returns when nothing is masked) and
        (B, N, D) patch tokens after the final norm.
    """
    tokens = backbone.patch_embed(images)  # (B, N, D), or (B, H', W', D) with dynamic_img_size
    if masks is not None:
        if mask_token is None:
            raise ValueError("vit_tokens was given masks but no mask_token to put in their place")
        swap = masks.reshape(tokens.shape[:-1]).unsqueeze(-1)
        tokens = torch.where(swap, mask_token.reshape(-1).to(tokens.dtype), tokens)
    tokens = backbone._pos_embed(tokens)
    tokens = backbone.patch_drop(tokens)
    tokens = backbone.norm_pre(tokens)
    tokens = backbone.blocks(tokens)
    tokens = backbone.norm(tokens)
    pooled = backbone.forward_head(tokens, pre_logits=True)
    return pooled, tokens[:, backbone.num_prefix_tokens :]
