"""The DINO method: forward/backward, teacher isolation, EMA, last-layer freezing, KoLeo and iBOT."""

from __future__ import annotations

import pytest
import torch
from ssl_backbones import TINY_CNN_DIM, TINY_VIT_DIM

from pathgen.ssl.base import StepInfo
from pathgen.ssl.dino import DINO, DINOConfig

SMALL = {"out_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8, "n_global": 2, "n_local": 2}


def _views(batch: int = 3) -> list[torch.Tensor]:
    return [torch.randn(batch, 3, 32, 32) for _ in range(2)] + [torch.randn(batch, 3, 16, 16) for _ in range(2)]


def test_forward_backward_student_only_and_teacher_sees_globals(tiny_vit):
    method = DINO(tiny_vit, TINY_VIT_DIM, DINOConfig(**SMALL))
    assert method.crops == (2, 2)
    seen = {"teacher": [], "student": []}
    method.teacher_backbone.register_forward_hook(lambda m, inp, out: seen["teacher"].append(tuple(inp[0].shape)))
    method.backbone.register_forward_hook(lambda m, inp, out: seen["student"].append(tuple(inp[0].shape)))
    out = method(_views(), StepInfo(step=0, total_steps=10, epoch=0.0))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["loss"].ndim == 0
    assert seen["teacher"] == [(6, 3, 32, 32)]  # the 2 global crops, in one forward
    assert seen["student"] == [(6, 3, 32, 32), (6, 3, 16, 16)]  # one forward per resolution
    assert all(p.grad is not None for p in method.backbone.parameters() if p.requires_grad)
    assert all(p.grad is None and not p.requires_grad for p in method.teacher_backbone.parameters())
    assert all(p.grad is None for p in method.teacher_head.parameters())
    assert torch.count_nonzero(method.dino_loss.center) > 0  # the centre moved


def test_after_step_is_the_scheduled_ema(tiny_vit):
    method = DINO(tiny_vit, TINY_VIT_DIM, DINOConfig(**SMALL))
    teacher_weight = method.teacher_backbone.blocks[0].attn.qkv.weight
    teacher_head_weight = method.teacher_head.mlp[0].weight
    before, before_head = teacher_weight.clone(), teacher_head_weight.clone()
    with torch.no_grad():  # stand-in for an optimizer step on the student
        for parameter in method.backbone.parameters():
            parameter.add_(0.1)
        method.head.mlp[0].weight.add_(0.1)
    method.after_step(StepInfo(step=5, total_steps=10, epoch=0.5))
    momentum = 0.998  # cosine 0.996 → 1 at half-way: 1 − 0.004·(cos(π/2) + 1)/2
    student_weight = method.backbone.blocks[0].attn.qkv.weight
    assert torch.allclose(teacher_weight, momentum * before + (1 - momentum) * student_weight, atol=1e-7)
    expected_head = momentum * before_head + (1 - momentum) * method.head.mlp[0].weight
    assert torch.allclose(teacher_head_weight, expected_head, atol=1e-7)


def test_before_optimizer_step_drops_last_layer_grads_in_first_epoch(tiny_vit):
    method = DINO(tiny_vit, TINY_VIT_DIM, DINOConfig(**SMALL, norm_last_layer=False))
    method(_views(), StepInfo(0, 10, 0.0))["loss"].backward()
    method.before_optimizer_step(StepInfo(1, 10, epoch=1.0))
    assert all(p.grad is not None for p in method.head.last_layer.parameters())
    method.before_optimizer_step(StepInfo(0, 10, epoch=0.5))
    assert all(p.grad is None for p in method.head.last_layer.parameters())
    assert method.head.mlp[0].weight.grad is not None


def test_export_backbone_and_param_groups(tiny_vit):
    method = DINO(tiny_vit, TINY_VIT_DIM, DINOConfig(**SMALL))
    assert method.export_backbone() is method.teacher_backbone
    decay, no_decay = method.param_groups()
    assert no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    grouped = {id(p) for group in (decay, no_decay) for p in group["params"]}
    assert grouped == {id(p) for p in method.parameters() if p.requires_grad}
    assert not grouped & {id(p) for p in method.teacher_backbone.parameters()}
    assert id(method.head.last_layer.parametrizations.weight.original0) not in grouped  # frozen gain


def test_teacher_temperature_warmup_is_logged(tiny_cnn):
    cfg = DINOConfig(**SMALL, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=30)
    method = DINO(tiny_cnn, TINY_CNN_DIM, cfg)
    out = method(_views(), StepInfo(step=0, total_steps=10, epoch=15.0))
    assert out["teacher_temp"].item() == pytest.approx(0.055)


def test_koleo_and_ibot_terms(tiny_vit):
    cfg = DINOConfig(**SMALL, koleo_weight=0.1, ibot_weight=1.0, mask_probability=1.0)
    method = DINO(tiny_vit, TINY_VIT_DIM, cfg)
    out = method(_views(), StepInfo(0, 10, 0.0))
    out["loss"].backward()
    expected = out["dino_loss"] + 0.1 * out["koleo_loss"] + 1.0 * out["ibot_loss"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.isfinite(out["ibot_loss"]) and out["ibot_loss"] > 0
    assert method.mask_token.grad is not None and method.mask_token.grad.abs().sum() > 0
    assert torch.count_nonzero(method.ibot_loss.center) > 0


def test_configuration_errors(tiny_cnn):
    with pytest.raises(ValueError, match="timm VisionTransformer"):
        DINO(tiny_cnn, TINY_CNN_DIM, DINOConfig(**SMALL, ibot_weight=1.0))
    method = DINO(tiny_cnn, TINY_CNN_DIM, DINOConfig(**SMALL))
    with pytest.raises(ValueError, match="2 global \\+ 2 local"):
        method(_views()[:3], StepInfo(0, 10, 0.0))
