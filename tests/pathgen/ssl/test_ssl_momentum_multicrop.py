"""Cosine momentum schedule, EMA update, frozen copies, and the multi-crop backbone runner."""

from __future__ import annotations

import pytest
import torch
from ssl_backbones import make_tiny_vit
from torch import nn

from pathgen.ssl.momentum import cosine_momentum, disable_drop_path_, ema_update_, momentum_copy
from pathgen.ssl.multicrop import check_view_count, multicrop_features, same_resolution_runs


def test_cosine_momentum_values():
    assert cosine_momentum(0.0, 0.996) == pytest.approx(0.996)
    assert cosine_momentum(0.5, 0.996) == pytest.approx(0.998)  # 1 − 0.004·(0 + 1)/2
    assert cosine_momentum(1.0, 0.996) == pytest.approx(1.0)
    assert cosine_momentum(0.25, 0.99, 0.999) == pytest.approx(0.999 - 0.009 * (2**-0.5 + 1) / 2)


def test_ema_update_formula_and_frozen_copy():
    online = nn.Linear(3, 2)
    target = momentum_copy(online)
    assert not any(p.requires_grad for p in target.parameters())
    before = target.weight.clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    ema_update_(target, online, 0.9)
    assert torch.allclose(target.weight, 0.9 * before + 0.1 * online.weight)


def test_disable_drop_path_on_timm_vit():
    import timm

    vit = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, patch_size=8, depth=2, drop_path_rate=0.1
    )
    assert vit.blocks[1].drop_path1.drop_prob > 0
    disable_drop_path_(vit)
    assert all(m.drop_prob == 0 for m in vit.modules() if type(m).__name__ == "DropPath")


def test_runs_group_consecutive_equal_sizes():
    views = [torch.zeros(2, 3, 32, 32)] * 2 + [torch.zeros(2, 3, 16, 16)] * 3 + [torch.zeros(2, 3, 32, 32)]
    assert same_resolution_runs(views) == [(0, 2), (2, 5), (5, 6)]
    assert same_resolution_runs([]) == []


def test_multicrop_features_equal_per_view_forward():
    torch.manual_seed(0)
    backbone = make_tiny_vit().eval()
    views = [torch.randn(2, 3, 32, 32) for _ in range(2)] + [torch.randn(2, 3, 16, 16) for _ in range(2)]
    features = multicrop_features(backbone, views)
    for view, feature in zip(views, features):
        assert torch.allclose(feature, backbone(view), atol=1e-5)


def test_check_view_count_message():
    with pytest.raises(ValueError, match="DINO expects 2 global \\+ 8 local = 10 views, got 3"):
        check_view_count([torch.zeros(1)] * 3, (2, 8), "DINO")
