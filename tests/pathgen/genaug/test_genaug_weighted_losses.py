"""Per-pair weights in the MoCo v3, SimSiam, BYOL and SimCLR losses and methods: w = 1 is the plain
loss, weighted values match loops, and DINO / Barlow / MoCo v2 never ask for weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pathgen.ssl.base import StepInfo
from pathgen.ssl.losses.byol import byol_loss
from pathgen.ssl.losses.moco import mocov3_contrastive, mocov3_loss
from pathgen.ssl.losses.simclr import nt_xent_loss
from pathgen.ssl.losses.simsiam import negative_cosine, simsiam_loss
from pathgen.ssl.registry import build_method

B, D = 6, 8


def _tensors(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, D, generator=g) for _ in range(n)]


def _all_losses(weights):
    q1, q2, k1, k2 = _tensors(4)
    return {
        "mocov3": mocov3_loss(q1, q2, k1, k2, 0.2, weights=weights),
        "simsiam": simsiam_loss(q1, q2, k1, k2, weights=weights),
        "byol": byol_loss(q1, k2, weights=weights),
        "simclr_2": nt_xent_loss([q1, q2], 0.2, weights=weights),
        "simclr_3": nt_xent_loss([q1, q2, k1], 0.2, weights=weights),
    }


def test_unit_weights_give_the_unweighted_losses():
    plain, unit = _all_losses(None), _all_losses(torch.ones(B))
    for name in plain:
        assert torch.allclose(unit[name], plain[name], atol=1e-6, rtol=0), name


def test_unweighted_path_is_the_plain_mean_bit_for_bit():
    p, z = _tensors(2)
    assert torch.equal(byol_loss(p, z), (2.0 - 2.0 * F.cosine_similarity(p, z, dim=-1)).mean())
    assert torch.equal(negative_cosine(p, z), -F.cosine_similarity(p, z, dim=-1).mean())


def test_weighted_mocov3_and_byol_match_per_sample_loops():
    q, k = _tensors(2)
    w = torch.rand(B) * 2
    unit_q, unit_k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    logits = unit_q @ unit_k.T / 0.2
    per_sample = [float(torch.logsumexp(logits[i], 0) - logits[i, i]) for i in range(B)]
    expected = sum(w[i].item() * per_sample[i] for i in range(B)) / B * 2 * 0.2
    assert mocov3_contrastive(q, k, 0.2, w).item() == pytest.approx(expected, rel=1e-5)
    byol = [2 - 2 * float(unit_q[i] @ unit_k[i]) for i in range(B)]
    assert byol_loss(q, k, w).item() == pytest.approx(sum(w[i].item() * byol[i] for i in range(B)) / B, rel=1e-5)


def test_weighted_nt_xent_gives_each_image_weight_to_all_its_anchors():
    views = np.random.default_rng(0).normal(size=(2, 3, 4))
    w = np.array([0.5, 1.0, 1.5])
    unit = views / np.linalg.norm(views, axis=-1, keepdims=True)
    losses = []
    for v in range(2):
        for i in range(3):
            sims = {(u, j): math.exp(float(unit[v, i] @ unit[u, j]) / 0.5) for u in range(2) for j in range(3)}
            positive = sims[(1 - v, i)]
            total = sum(s for key, s in sims.items() if key != (v, i))
            losses.append(w[i] * -math.log(positive / total))
    loss = nt_xent_loss(
        [torch.tensor(x, dtype=torch.float32) for x in views], 0.5, torch.tensor(w, dtype=torch.float32)
    )
    assert loss.item() == pytest.approx(float(np.mean(losses)), rel=1e-5)


def test_weights_get_no_gradient_and_wrong_shapes_are_refused():
    q1, q2, k1, k2 = (t.requires_grad_() for t in _tensors(4))
    w = torch.rand(B, requires_grad=True)
    mocov3_loss(q1, q2, k1, k2, 0.2, weights=w).backward()
    assert w.grad is None and q1.grad is not None
    with pytest.raises(ValueError, match="one per sample"):
        byol_loss(q1, k1, torch.ones(B + 1))
    with pytest.raises(ValueError, match="one per image"):
        nt_xent_loss([q1, q2], 0.2, torch.ones(2 * B))


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )


SMALL = {
    "mocov3": {"proj_hidden_dim": 16, "proj_out_dim": 8, "pred_hidden_dim": 16},
    "simsiam": {"proj_hidden_dim": 16, "proj_out_dim": 8, "pred_hidden_dim": 4},
    "byol": {"proj_hidden_dim": 16, "proj_out_dim": 8, "pred_hidden_dim": 16, "n_local": 1},
    "simclr": {"proj_hidden_dim": 16, "proj_out_dim": 8, "n_local": 1},
}


def _views(method) -> list[torch.Tensor]:
    torch.manual_seed(1)
    n_global, n_local = method.crops
    return [torch.randn(4, 3, 16, 16) for _ in range(n_global)] + [torch.randn(4, 3, 8, 8) for _ in range(n_local)]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_methods_pass_pair_weights_to_their_loss(name):
    method = build_method(name, tiny_cnn(), 8, SMALL[name])
    views, info = _views(method), StepInfo(0, 10, 0.0)
    plain = method(views, info)
    assert set(plain) == {"loss"}
    seen = []
    method.pair_weighter = lambda v: seen.append(len(v)) or torch.ones(v[0].shape[0])
    unit = method(views, info)
    assert seen == [len(views)] and torch.allclose(unit["loss"], plain["loss"], atol=1e-6)
    assert float(unit["pair_weight_max"]) == 1.0
    method.pair_weighter = lambda v: torch.tensor([4.0, 0.0, 0.0, 0.0])
    assert not torch.allclose(method(views, info)["loss"], plain["loss"])
    method.pair_weighter = lambda v: None
    assert torch.equal(method(views, info)["loss"], plain["loss"])
    method.pair_weighter = lambda v: torch.ones(3)
    with pytest.raises(ValueError, match="one per image"):
        method(views, info)


@pytest.mark.parametrize("name", ["dino", "barlow", "mocov2"])
def test_non_pairwise_methods_never_call_the_weighter(name):
    cfg = {
        "dino": {"out_dim": 16, "hidden_dim": 16, "bottleneck_dim": 8, "n_local": 0},
        "barlow": {"proj_hidden_dim": 16, "proj_out_dim": 8},
        "mocov2": {"proj_hidden_dim": 16, "proj_out_dim": 8, "queue_size": 32},
    }[name]
    method = build_method(name, tiny_cnn(), 8, cfg)

    def refuse(views):
        raise AssertionError(f"{name} asked for pair weights")

    method.pair_weighter = refuse
    assert torch.isfinite(method(_views(method), StepInfo(0, 10, 0.0))["loss"])


def test_pair_weighter_must_not_be_a_module():
    method = build_method("simsiam", tiny_cnn(), 8, SMALL["simsiam"])
    with pytest.raises(TypeError, match="not an nn.Module"):
        method.pair_weighter = nn.Linear(2, 2)
    assert method.pair_weighter is None
