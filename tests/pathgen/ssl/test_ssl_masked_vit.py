"""Masked-token forward of timm ViTs and the random patch masks used for iBOT."""

from __future__ import annotations

import pytest
import torch
from ssl_backbones import make_tiny_vit
from torch import nn

from pathgen.ssl.masked_vit import patch_count, random_patch_masks, supports_patch_tokens, vit_tokens


def test_unmasked_tokens_match_timm_forward():
    torch.manual_seed(0)
    vit = make_tiny_vit().eval()
    images = torch.randn(2, 3, 32, 32)
    pooled, patches = vit_tokens(vit, images)
    assert torch.allclose(pooled, vit(images), atol=1e-5)
    assert patches.shape == (2, 16, 192)
    assert torch.allclose(patches, vit.forward_features(images)[:, 1:], atol=1e-5)


def test_masking_replaces_only_masked_patch_embeddings():
    torch.manual_seed(0)
    vit = make_tiny_vit(depth=1).eval()
    vit.blocks = nn.Sequential()  # no attention: each output token depends on its own input only
    images = torch.randn(2, 3, 32, 32)
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[0, 3] = True
    _, clean = vit_tokens(vit, images)
    _, masked = vit_tokens(vit, images, masks, torch.full((1, 192), 5.0))
    changed = (clean - masked).abs().amax(dim=-1) > 1e-6
    assert torch.equal(changed, masks)
    with pytest.raises(ValueError, match="no mask_token"):
        vit_tokens(vit, images, masks)


def test_patch_count_and_support():
    vit = make_tiny_vit(depth=1)
    assert patch_count(vit, (32, 32)) == 16 and patch_count(vit, (16, 24)) == 6
    assert supports_patch_tokens(vit) and not supports_patch_tokens(nn.Linear(2, 2))


def test_random_patch_masks_counts():
    torch.manual_seed(0)
    masks = random_patch_masks(8, 100, mask_probability=0.5, ratio_min=0.1, ratio_max=0.5)
    per_image = masks.sum(dim=1)
    assert masks.shape == (8, 100) and masks.dtype == torch.bool
    assert int((per_image > 0).sum()) == 4
    assert all(10 <= n <= 50 for n in per_image[per_image > 0].tolist())
