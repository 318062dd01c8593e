"""SimCLR, MoCo v2/v3, BYOL, SimSiam and Barlow Twins: one step, EMA updates, exports, param groups."""

from __future__ import annotations

import pytest
import torch
from ssl_backbones import TINY_CNN_DIM, TINY_VIT_DIM

from pathgen.ssl.base import StepInfo
from pathgen.ssl.registry import build_method

SMALL = {
    "simclr": {"proj_hidden_dim": 16, "proj_out_dim": 8, "n_local": 1},
    "mocov2": {"proj_hidden_dim": 16, "proj_out_dim": 8, "queue_size": 32},
    "mocov3": {"proj_hidden_dim": 16, "proj_out_dim": 8, "pred_hidden_dim": 16},
    "byol": {"proj_hidden_dim": 16, "proj_out_dim": 8, "pred_hidden_dim": 16, "n_local": 1},
    "simsiam": {"proj_hidden_dim": 16, "proj_out_dim": 8, "pred_hidden_dim": 4},
    "barlow": {"proj_hidden_dim": 16, "proj_out_dim": 8},
}
# method → (momentum module, online module, momentum at progress 0.5 computed by hand)
MOMENTUM = {
    "mocov2": ("momentum_backbone", "backbone", 0.999 - 0.009 * 0.5),
    "mocov3": ("momentum_backbone", "backbone", 1.0 - 0.01 * 0.5),
    "byol": ("target_backbone", "backbone", 1.0 - 0.01 * 0.5),
}


def _views(method, batch: int = 4) -> list[torch.Tensor]:
    n_global, n_local = method.crops
    return [torch.randn(batch, 3, 32, 32) for _ in range(n_global)] + [
        torch.randn(batch, 3, 16, 16) for _ in range(n_local)
    ]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_one_step_gives_finite_loss_and_student_grads(name, tiny_cnn):
    method = build_method(name, tiny_cnn, TINY_CNN_DIM, SMALL[name])
    out = method(_views(method), StepInfo(0, 10, 0.0))
    out["loss"].backward()
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    trainable = [p for p in method.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
    frozen = [p for p in method.parameters() if not p.requires_grad]
    assert all(p.grad is None for p in frozen)
    assert method.export_backbone() is method.backbone


@pytest.mark.parametrize("name", sorted(MOMENTUM))
def test_after_step_moves_momentum_weights_by_the_schedule(name, tiny_cnn):
    method = build_method(name, tiny_cnn, TINY_CNN_DIM, SMALL[name])
    momentum_name, online_name, momentum = MOMENTUM[name]
    target_weight = getattr(method, momentum_name)[0].weight
    before = target_weight.clone()
    with torch.no_grad():
        getattr(method, online_name)[0].weight.add_(0.5)
    method.after_step(StepInfo(step=5, total_steps=10, epoch=1.0))
    online_weight = getattr(method, online_name)[0].weight
    assert torch.allclose(target_weight, momentum * before + (1 - momentum) * online_weight, atol=1e-7)


@pytest.mark.parametrize("name", ["simclr", "simsiam", "barlow"])
def test_after_step_is_a_no_op_without_momentum_encoder(name, tiny_cnn):
    method = build_method(name, tiny_cnn, TINY_CNN_DIM, SMALL[name])
    before = {k: v.clone() for k, v in method.state_dict().items()}
    method.after_step(StepInfo(5, 10, 1.0))
    assert all(torch.equal(before[k], v) for k, v in method.state_dict().items())


DECAY_ALL = {"mocov3", "simsiam"}  # their official optimizers decay every parameter (docs/recipes.md)


@pytest.mark.parametrize("name", sorted(set(SMALL) - DECAY_ALL))
def test_param_groups_exclude_biases_and_norms_from_decay(name, tiny_cnn):
    method = build_method(name, tiny_cnn, TINY_CNN_DIM, SMALL[name])
    groups = method.param_groups()
    decayed = [p for g in groups if g.get("weight_decay") != 0.0 for p in g["params"]]
    not_decayed = [p for g in groups if g.get("weight_decay") == 0.0 for p in g["params"]]
    assert decayed and not_decayed
    assert all(p.ndim >= 2 for p in decayed) and all(p.ndim <= 1 for p in not_decayed)
    grouped = {id(p) for p in decayed + not_decayed}
    assert grouped == {id(p) for p in method.parameters() if p.requires_grad}


@pytest.mark.parametrize("name", sorted(DECAY_ALL | {"mocov2"}))
def test_param_groups_decay_every_parameter_when_the_official_code_does(name, tiny_cnn):
    options = {**SMALL[name], "decay_biases_and_norms": True}
    groups = build_method(name, tiny_cnn, TINY_CNN_DIM, options).param_groups()
    assert all("weight_decay" not in group for group in groups)  # every group takes the scheduled decay
    assert any(p.ndim <= 1 for group in groups for p in group["params"])
    off = build_method(name, tiny_cnn, TINY_CNN_DIM, {**options, "decay_biases_and_norms": False}).param_groups()
    assert {p.ndim <= 1 for g in off if g.get("weight_decay") == 0.0 for p in g["params"]} == {True}


def test_barlow_gives_biases_and_norms_their_own_lr_scale(tiny_cnn):
    groups = build_method(
        "barlow", tiny_cnn, TINY_CNN_DIM, {**SMALL["barlow"], "bias_and_norm_lr_scale": 0.024}
    ).param_groups()
    scaled = [g for g in groups if "lr_scale" in g]
    assert len(scaled) == 1 and scaled[0]["lr_scale"] == 0.024 and scaled[0]["weight_decay"] == 0.0
    assert all(p.ndim <= 1 for p in scaled[0]["params"])


def test_simsiam_marks_predictor_groups_fixed_lr(tiny_cnn):
    method = build_method("simsiam", tiny_cnn, TINY_CNN_DIM, SMALL["simsiam"])
    fixed = {id(p) for g in method.param_groups() if g.get("fixed_lr") for p in g["params"]}
    assert fixed == {id(p) for p in method.predictor.parameters()}


def test_mocov2_enqueues_keys_only_in_training(tiny_cnn):
    method = build_method("mocov2", tiny_cnn, TINY_CNN_DIM, SMALL["mocov2"])
    method(_views(method), StepInfo(0, 10, 0.0))["loss"].backward()  # queue edits must not break backward
    assert [int(q.pointer) for q in method.queues] == [4, 4]
    method.eval()
    with torch.no_grad():
        method(_views(method), StepInfo(0, 10, 0.0))
    assert [int(q.pointer) for q in method.queues] == [4, 4]


def test_mocov3_freezes_vit_patch_projection(tiny_vit):
    method = build_method("mocov3", tiny_vit, TINY_VIT_DIM, SMALL["mocov3"])
    assert not any(p.requires_grad for p in method.backbone.patch_embed.proj.parameters())
    out = method([torch.randn(4, 3, 32, 32) for _ in range(2)], StepInfo(0, 10, 0.0))
    out["loss"].backward()
    assert method.backbone.blocks[0].attn.qkv.weight.grad is not None


@pytest.mark.parametrize("name", sorted(SMALL) + ["dino"])
def test_step_under_bf16_autocast(name, tiny_vit):
    cfg = SMALL.get(
        name,
        {
            "out_dim": 32,
            "hidden_dim": 16,
            "bottleneck_dim": 8,
            "n_local": 1,
            "koleo_weight": 0.1,
            "ibot_weight": 1.0,
            "mask_probability": 1.0,
        },
    )
    method = build_method(name, tiny_vit, TINY_VIT_DIM, cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = method(_views(method), StepInfo(0, 10, 0.0))
    out["loss"].backward()
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    assert all(torch.isfinite(p.grad).all() for p in method.parameters() if p.grad is not None)
