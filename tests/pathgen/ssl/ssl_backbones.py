"""Tiny random-init backbones for the SSL tests (never downloads weights)."""

from __future__ import annotations

import timm
from torch import nn

TINY_VIT_DIM = 192
TINY_CNN_DIM = 8


def make_tiny_vit(depth: int = 2) -> nn.Module:
    """ViT-tiny with `depth` blocks on 32 px images, 8 px patches; any input size (dynamic_img_size)."""
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=0,
        img_size=32,
        patch_size=8,
        dynamic_img_size=True,
        depth=depth,
    )


def make_tiny_cnn() -> nn.Module:
    """Conv → BN → ReLU → global average pool: a batch-norm backbone mapping (B, 3, H, W) → (B, 8)."""
    return nn.Sequential(
        nn.Conv2d(3, TINY_CNN_DIM, 3, padding=1),
        nn.BatchNorm2d(TINY_CNN_DIM),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
