"""DINOLoss and the teacher-temperature schedule against a naive numpy version of the paper's formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pathgen.ssl.losses.dino import DINOLoss, teacher_temperature


def _softmax(vector: np.ndarray) -> np.ndarray:
    exps = np.array([math.exp(v - max(vector)) for v in vector])
    return exps / exps.sum()


def naive_dino(student: np.ndarray, teacher: np.ndarray, center: np.ndarray, student_temp: float, teacher_temp: float):
    """Caron et al. Algorithm 1 with explicit loops: mean over pairs (a, b≠a) of the batch-mean cross-entropy."""
    n_views, batch, _ = student.shape
    terms = []
    for a in range(teacher.shape[0]):
        for b in range(n_views):
            if a == b:
                continue
            per_image = []
            for i in range(batch):
                target = _softmax((teacher[a, i] - center) / teacher_temp)
                log_pred = np.log(_softmax(student[b, i] / student_temp))
                per_image.append(-np.sum(target * log_pred))
            terms.append(np.mean(per_image))
    return np.mean(terms)


def test_teacher_temperature_schedule_values():
    assert teacher_temperature(0, 0.04, 0.07, 30) == pytest.approx(0.04)
    assert teacher_temperature(15, 0.04, 0.07, 30) == pytest.approx(0.055)
    assert teacher_temperature(29.5, 0.04, 0.07, 30) == pytest.approx(0.04 + 0.03 * 29.5 / 30)
    assert teacher_temperature(30, 0.04, 0.07, 30) == pytest.approx(0.07)
    assert teacher_temperature(100, 0.04, 0.07, 30) == pytest.approx(0.07)
    assert teacher_temperature(0, 0.04, 0.07, 0) == pytest.approx(0.07)  # no warm-up (DINO's code default)


def test_dino_loss_matches_naive_formula_and_updates_centre():
    rng = np.random.default_rng(0)
    student = rng.normal(size=(4, 3, 5))  # 2 global + 2 local views, batch 3, K 5
    teacher = rng.normal(size=(2, 3, 5))
    loss_fn = DINOLoss(out_dim=5, student_temp=0.1, center_momentum=0.9)
    old_center = rng.normal(size=5)
    loss_fn.center.copy_(torch.tensor(old_center[None], dtype=torch.float32))
    loss = loss_fn(
        [torch.tensor(s, dtype=torch.float32) for s in student],
        [torch.tensor(t, dtype=torch.float32) for t in teacher],
        teacher_temp=0.04,
    )
    expected = naive_dino(student, teacher, old_center, 0.1, 0.04)
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    batch_mean = teacher.reshape(-1, 5).mean(axis=0)
    np.testing.assert_allclose(loss_fn.center[0].numpy(), 0.9 * old_center + 0.1 * batch_mean, rtol=1e-5, atol=1e-6)


def test_uniform_student_gives_log_k_whatever_the_teacher():
    # hand-worked: a constant student is uniform over K prototypes, so every cross-entropy is log K
    loss_fn = DINOLoss(out_dim=4)
    student = [torch.zeros(2, 4) for _ in range(3)]
    teacher = [torch.randn(2, 4), torch.randn(2, 4)]
    assert loss_fn(student, teacher, 0.04).item() == pytest.approx(math.log(4), rel=1e-6)


def test_dino_loss_under_bf16_autocast_is_fp32_and_close():
    torch.manual_seed(0)
    student = [torch.randn(4, 16) for _ in range(3)]
    teacher = [torch.randn(4, 16) for _ in range(2)]
    reference = DINOLoss(16)(student, teacher, 0.04)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = DINOLoss(16)([s.bfloat16() for s in student], [t.bfloat16() for t in teacher], 0.04)
    assert mixed.dtype == torch.float32
    assert mixed.item() == pytest.approx(reference.item(), rel=0.05)


def test_gradient_reaches_student_only():
    student = [torch.randn(2, 6, requires_grad=True) for _ in range(2)]
    teacher = [torch.randn(2, 6, requires_grad=True) for _ in range(2)]
    DINOLoss(6)(student, teacher, 0.04).backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)
    assert all(t.grad is None for t in teacher)
