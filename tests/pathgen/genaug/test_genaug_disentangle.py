"""Gen-SIS disentanglement: the entangled target at α = 0 / 1 is each source's plain DINO target,
and Gen-DINO is DINO plus that term on batches with interpolated views."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
import torch.nn.functional as F

from pathgen.genaug.disentangle import disentangle_loss, entangled_logits
from pathgen.genaug.gensis_dino import GenSISDINO
from pathgen.ssl.base import StepInfo
from pathgen.ssl.dino import DINO, DINOConfig
from pathgen.ssl.losses.dino import DINOLoss

SMALL = {"out_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8, "n_global": 2, "n_local": 2}
INFO = StepInfo(step=0, total_steps=10, epoch=0.0)


def _teacher_loss() -> DINOLoss:
    loss = DINOLoss(out_dim=8, student_temp=0.1)
    loss.center.copy_(torch.randn(1, 8))
    return loss


@pytest.mark.parametrize("alpha, source", [(1.0, 0), (0.0, 1)])
def test_target_at_alpha_end_points_is_the_plain_target_of_each_source(alpha, source):
    teacher = _teacher_loss()
    t1, t2 = torch.randn(4, 8), torch.randn(4, 8)
    mixed = teacher.teacher_probabilities(entangled_logits(t1, t2, torch.full((4,), alpha)), 0.04)
    plain = teacher.teacher_probabilities((t1, t2)[source], 0.04)
    torch.testing.assert_close(mixed, plain)
    student = torch.randn(4, 8)
    expected = torch.sum(-plain * F.log_softmax(student / 0.1, dim=-1), dim=-1).mean()
    torch.testing.assert_close(disentangle_loss(student, t1, t2, torch.full((4,), alpha), teacher, 0.04), expected)


def test_mixing_is_on_raw_logits_before_centring():
    t1, t2, alpha = torch.randn(3, 8), torch.randn(3, 8), torch.tensor([0.2, 0.5, 0.9])
    expected = alpha[:, None] * t1 + (1 - alpha[:, None]) * t2
    torch.testing.assert_close(entangled_logits(t1, t2, alpha), expected)


def test_invalid_samples_do_not_count_and_centre_is_untouched():
    teacher = _teacher_loss()
    centre = teacher.center.clone()
    student, t1, t2 = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
    alpha, valid = torch.rand(4), torch.tensor([True, False, True, False])
    masked = disentangle_loss(student, t1, t2, alpha, teacher, 0.04, valid)
    subset = disentangle_loss(student[valid], t1[valid], t2[valid], alpha[valid], teacher, 0.04)
    torch.testing.assert_close(masked, subset)
    assert torch.equal(teacher.center, centre)


def _vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=0,
        img_size=32,
        patch_size=8,
        dynamic_img_size=True,
        depth=1,
    )


def _views(batch: int = 3) -> list[torch.Tensor]:
    torch.manual_seed(1)
    return [torch.randn(batch, 3, 32, 32) for _ in range(2)] + [torch.randn(batch, 3, 16, 16) for _ in range(2)]


def test_gen_dino_on_plain_crops_is_dino():
    plain = DINO(_vit(), 192, DINOConfig(**SMALL))
    gen = GenSISDINO(copy.deepcopy(plain.backbone), 192, DINOConfig(**SMALL))
    gen.load_state_dict(plain.state_dict())
    torch.testing.assert_close(gen(_views(), INFO)["loss"], plain(_views(), INFO)["loss"])


def test_gen_dino_adds_the_weighted_disentangle_term_and_trains_the_student():
    method = GenSISDINO(_vit(), 192, DINOConfig(**SMALL), disentangle_weight=0.5)
    batch = {
        "views": _views(),
        "interp": torch.randn(3, 3, 32, 32),
        "secondary": torch.randn(3, 3, 32, 32),
        "alpha": torch.tensor([0.3, 0.6, 1.0]),
        "has_interp": torch.tensor([True, True, False]),
    }
    out = method(batch, INFO)
    assert set(out) >= {"loss", "dino_loss", "disentangle_loss"}
    torch.testing.assert_close(out["loss"].detach(), out["dino_loss"] + 0.5 * out["disentangle_loss"])
    out["loss"].backward()
    assert all(p.grad is None for p in method.teacher_backbone.parameters())
    assert method.backbone.blocks[0].attn.qkv.weight.grad is not None


def _interp_batch(valid: list[bool], seed: int = 2, blank_invalid: bool = True) -> dict:
    torch.manual_seed(seed)
    n = len(valid)
    has = torch.tensor(valid)
    interp, secondary = torch.randn(n, 3, 32, 32), torch.randn(n, 3, 32, 32)
    if blank_invalid:  # what InterpolationViews gives a tile without a row
        interp[~has], secondary[~has] = 0.0, 0.0
    return {"views": _views(n), "interp": interp, "secondary": secondary, "alpha": torch.rand(n), "has_interp": has}


def _full_batch_loss(method: GenSISDINO, batch: dict) -> torch.Tensor:
    """What Gen-DINO computed before: both extra passes on the whole batch, invalid samples masked in the loss."""
    _, teacher_logits, temp = method.distillation_terms(batch["views"], INFO)
    with torch.no_grad():
        teacher_secondary = method.teacher_head(method.teacher_backbone(batch["secondary"]))
    student = method.head(method.backbone(batch["interp"]))
    return disentangle_loss(
        student, teacher_logits[0], teacher_secondary, batch["alpha"], method.dino_loss, temp, batch["has_interp"]
    )


def test_extra_passes_on_valid_samples_only_equal_the_full_batch_loss_without_batchnorm():
    method = GenSISDINO(_vit(), 192, DINOConfig(**SMALL))
    batch = _interp_batch([True, False, True, False, False])
    before = copy.deepcopy(method)  # a forward updates the DINO centre: compare from the same state
    out = method(batch, INFO)
    torch.testing.assert_close(out["disentangle_loss"], _full_batch_loss(before, batch).detach())
    assert out["disentangle_share"].item() == pytest.approx(0.4)


def _bn_method() -> GenSISDINO:
    torch.manual_seed(0)
    backbone = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    )
    return GenSISDINO(backbone, 8, DINOConfig(**SMALL, use_bn_in_head=True))


def test_with_batchnorm_invalid_samples_no_longer_shift_the_valid_targets():
    method = _bn_method()
    valid = [True, True, False, True, False]
    blank, noise = _interp_batch(valid), _interp_batch(valid, blank_invalid=False)
    assert torch.equal(blank["interp"][torch.tensor(valid)], noise["interp"][torch.tensor(valid)])
    twin = copy.deepcopy(method)
    torch.testing.assert_close(method(blank, INFO)["disentangle_loss"], twin(noise, INFO)["disentangle_loss"])
    # the full-batch passes mixed the invalid images into BatchNorm's statistics: the loss moved
    old, old_twin = _bn_method(), _bn_method()
    assert not torch.allclose(_full_batch_loss(old, blank), _full_batch_loss(old_twin, noise))


def test_no_interpolation_costs_no_pass_and_one_sample_with_batchnorm_is_skipped():
    method = GenSISDINO(_vit(), 192, DINOConfig(**SMALL))
    calls = []
    method.backbone.register_forward_hook(lambda *_: calls.append(1))
    out = method(_interp_batch([False, False, False]), INFO)
    assert out["disentangle_share"].item() == 0.0 and out["disentangle_loss"].item() == 0.0
    torch.testing.assert_close(out["loss"], out["dino_loss"])
    plain_calls = len(calls)
    calls.clear()
    method(_interp_batch([True, False, False]), INFO)
    assert len(calls) == plain_calls + 1  # the one student pass on the interpolated image
    bn = _bn_method()
    single = bn(_interp_batch([False, True, False]), INFO)
    assert single["disentangle_loss"].item() == 0.0 and single["disentangle_share"].item() == pytest.approx(1 / 3)
