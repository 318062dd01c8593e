"""GenView's quality weights: normalisation, the plain-loss limit, ordering, a hand-worked batch,
and the QualityWeighter around a frozen scorer."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from torch import nn

from pathgen.genaug.foreground import ForegroundPCA, HematoxylinForeground
from pathgen.genaug.quality import (
    QualityWeighter,
    pair_quality,
    pool_foreground_background,
    quality_weights,
)
from pathgen.models.backbone import BackboneConfig, create_backbone
from pathgen.models.io import read_encoder_config
from pathgen.ssl.base import StepInfo
from pathgen.ssl.registry import build_method


class PixelScorer(nn.Module):
    """A 'CNN' whose feature map is its input: tokens are the pixels, so weights can be worked by hand."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))
        self.inputs: list[torch.Tensor] = []

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return x


def identity_weighter(**kwargs) -> QualityWeighter:
    pca = ForegroundPCA(torch.tensor([1.0, 0.0, 0.0]), torch.zeros(3), threshold=0.0)
    return QualityWeighter(PixelScorer(), pca, view_mean=(0.0, 0.0, 0.0), view_std=(1.0, 1.0, 1.0), **kwargs)


def test_weights_sum_to_batch_size_and_are_one_for_equal_quality():
    quality = torch.randn(16)
    weights = quality_weights(quality, gamma=2.0)
    assert float(weights.sum()) == pytest.approx(16.0, rel=1e-6) and (weights > 0).all()
    assert torch.allclose(quality_weights(torch.full((16,), 0.37)), torch.ones(16), atol=1e-6)
    assert torch.allclose(quality_weights(quality, gamma=0.0), torch.ones(16), atol=1e-6)


def test_equal_pairs_give_unit_weights_from_tokens():
    tokens, soft_map = torch.randn(1, 9, 4).repeat(5, 1, 1), torch.rand(1, 9).repeat(5, 1)
    quality = pair_quality(tokens, tokens + 0.1, soft_map, soft_map)
    assert torch.allclose(quality_weights(quality), torch.ones(5), atol=1e-6)


def test_higher_foreground_and_lower_background_similarity_weigh_more():
    # token 0 is foreground (m = 1), token 1 background (m = 0); view 1 is the same for all pairs
    soft_map = torch.tensor([[1.0, 0.0]]).repeat(3, 1)
    view_1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).repeat(3, 1, 1)
    view_2 = torch.tensor(
        [
            [[1.0, 1.0], [0.0, 1.0]],  # baseline: fg cos 1/√2, bg cos 1
            [[1.0, 0.0], [0.0, 1.0]],  # fg more similar (cos 1), same bg
            [[1.0, 1.0], [1.0, 0.0]],  # same fg, bg less similar (cos 0)
        ]
    )
    quality = pair_quality(view_1, view_2, soft_map, soft_map)
    assert torch.allclose(quality, torch.tensor([1 / math.sqrt(2) - 1, 0.0, 1 / math.sqrt(2)]), atol=1e-6)
    weights = quality_weights(quality)
    assert weights[1] > weights[0] and weights[2] > weights[0]


def test_pooling_normalises_each_soft_map_to_sum_one():
    tokens = torch.tensor([[[2.0, 0.0], [0.0, 4.0], [1.0, 1.0]]])
    foreground, background = pool_foreground_background(tokens, torch.tensor([[1.0, 0.0, 0.5]]))
    assert torch.allclose(foreground, torch.tensor([[2.5 / 1.5, 0.5 / 1.5]]), atol=1e-6)
    assert torch.allclose(background, torch.tensor([[0.5 / 1.5, 4.5 / 1.5]]), atol=1e-6)


def test_hand_worked_two_pair_batch_through_the_weighter():
    # tokens are pixels (C = 3, N = 2); v = e0 scores pixel 0 higher, so after min-max m = (1, 0):
    # pair A: identical views → s_fg = s_bg = 1, q_A = 0
    # pair B: view 2's background pixel is (1, 1, 0) → s_fg = 1, s_bg = cos(e1, e0 + e1) = 1/√2
    pixels = lambda a, b: torch.tensor([a, b]).T.reshape(3, 1, 2)
    view_1 = torch.stack([pixels([2.0, 0, 0], [0, 1.0, 0]), pixels([2.0, 0, 0], [0, 1.0, 0])])
    view_2 = torch.stack([pixels([2.0, 0, 0], [0, 1.0, 0]), pixels([2.0, 0, 0], [1.0, 1.0, 0])])
    weighter = identity_weighter()
    q_b = 1 - 1 / math.sqrt(2)
    assert torch.allclose(weighter.scores(view_1, view_2), torch.tensor([0.0, q_b]), atol=1e-6)
    expected = torch.tensor([2 / (1 + math.exp(q_b)), 2 * math.exp(q_b) / (1 + math.exp(q_b))])
    weights = weighter([view_1, view_2])
    assert torch.allclose(weights, expected, atol=1e-6) and not weights.requires_grad


def test_views_are_renormalised_for_the_scorer_only_when_statistics_differ():
    view = torch.randn(2, 3, 4, 4)
    same = identity_weighter()
    same.weights(view, view)
    assert torch.equal(same.scorer.inputs[0], view)  # untouched
    other = identity_weighter(scorer_mean=(0.5, 0.5, 0.5), scorer_std=(0.25, 0.25, 0.25))
    other.weights(view, view)
    assert torch.allclose(other.scorer.inputs[0], (view - 0.5) / 0.25)  # RGB = view, since view stats are 0 / 1


def test_weighter_from_a_saved_encoder_with_either_foreground(tmp_path, tiny_encoder):
    model_dir = shutil.copytree(tiny_encoder, tmp_path / "encoder")
    torch.manual_seed(0)
    ForegroundPCA.fit(torch.randn(50, 4, read_encoder_config(model_dir).embed_dim)).save(model_dir)
    views = [torch.randn(6, 3, 32, 32), torch.randn(6, 3, 32, 32)]
    for foreground in (None, HematoxylinForeground()):
        weighter = QualityWeighter.from_model_dir(model_dir, foreground=foreground)
        weights = weighter(views)
        assert weights.shape == (6,) and float(weights.sum()) == pytest.approx(6.0, rel=1e-5)
        assert not any(p.requires_grad for p in weighter.scorer.parameters())
    with pytest.raises(ValueError, match="two views"):
        weighter(views[:1])


def test_weighter_on_a_method_trains_and_stays_out_of_its_state():
    torch.manual_seed(0)
    backbone = create_backbone(BackboneConfig(name="test_vit", img_size=32))[0]
    method = build_method(
        "mocov3", backbone, backbone.num_features, {"proj_hidden_dim": 16, "proj_out_dim": 8, "pred_hidden_dim": 16}
    )
    scorer = create_backbone(BackboneConfig(name="test_vit", img_size=32))[0]
    pca = ForegroundPCA.fit(torch.randn(40, 4, scorer.num_features))
    method.pair_weighter = QualityWeighter(scorer, pca, scorer_mean=(0.5, 0.5, 0.5), scorer_std=(0.5, 0.5, 0.5))
    views = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method(views, StepInfo(0, 10, 0.0))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["pair_weight_max"] >= 1.0
    assert all(p.grad is None for p in scorer.parameters())
    assert not any(key.startswith("pair_weighter") for key in method.state_dict())
    method.train()
    assert not scorer.training
