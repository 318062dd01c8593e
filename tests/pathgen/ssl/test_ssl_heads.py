"""DINOHead structure and initialisation; the projector / predictor MLP layer patterns."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pathgen.ssl.heads import DINOHead, mlp


def test_dino_head_layers_and_init():
    torch.manual_seed(0)
    head = DINOHead(in_dim=64, out_dim=50, hidden_dim=512, bottleneck_dim=32)
    linears = [m for m in head.mlp if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(64, 512), (512, 512), (512, 32)]
    assert sum(isinstance(m, nn.GELU) for m in head.mlp) == 2
    assert not any(isinstance(m, nn.BatchNorm1d) for m in head.mlp)
    weights = linears[1].weight
    assert weights.std().item() == pytest.approx(0.02, rel=0.05)
    assert weights.mean().item() == pytest.approx(0.0, abs=1e-3)  # truncation at ±2 (absolute), as DINO
    assert all(torch.count_nonzero(l.bias) == 0 for l in linears)
    assert head.last_layer.bias is None
    assert head(torch.randn(3, 64)).shape == (3, 50)


def test_norm_last_layer_freezes_unit_gain():
    frozen = DINOHead(16, 10, 32, 8, norm_last_layer=True)
    gain = frozen.last_layer.parametrizations.weight.original0
    assert torch.all(gain == 1.0) and not gain.requires_grad
    assert torch.allclose(frozen.last_layer.weight.norm(dim=1), torch.ones(10))
    free = DINOHead(16, 10, 32, 8, norm_last_layer=False)
    assert free.last_layer.parametrizations.weight.original0.requires_grad


def test_dino_head_output_is_cosine_to_prototypes():
    # bottleneck is L2-normalised and prototypes have unit norm, so |logit| <= 1
    head = DINOHead(16, 10, 32, 8)
    assert head(torch.randn(5, 16) * 100).abs().max().item() <= 1.0 + 1e-5


def _pattern(module: nn.Sequential) -> list[str]:
    names = []
    for layer in module:
        if isinstance(layer, nn.Linear):
            names.append("Linear" if layer.bias is not None else "Linear(no bias)")
        elif isinstance(layer, nn.BatchNorm1d):
            names.append("BN" if layer.affine else "BN(no affine)")
        else:
            names.append(type(layer).__name__)
    return names


def test_mlp_patterns_of_the_recipes():
    assert _pattern(mlp(8, 16, 4, 2, bn=False)) == ["Linear", "ReLU", "Linear"]  # SimCLR, MoCo v2
    assert _pattern(mlp(8, 16, 4, 2)) == ["Linear(no bias)", "BN", "ReLU", "Linear"]  # BYOL, predictors
    assert _pattern(mlp(8, 16, 4, 3, last_bn=True)) == [  # MoCo v3 / SimSiam projectors
        "Linear(no bias)",
        "BN",
        "ReLU",
        "Linear(no bias)",
        "BN",
        "ReLU",
        "Linear(no bias)",
        "BN(no affine)",
    ]
    assert _pattern(mlp(8, 16, 4, 1)) == ["Linear"]
    assert mlp(8, 16, 4, 3)(torch.randn(5, 8)).shape == (5, 4)
    with pytest.raises(ValueError, match="n_layers >= 1"):
        mlp(8, 16, 4, 0)
