"""IBOTPatchLoss against per-image loops over masked patches (DINOv2's forward_masked)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pathgen.ssl.losses.ibot import IBOTPatchLoss


def _log_softmax(vector: np.ndarray) -> np.ndarray:
    shifted = vector - vector.max()
    return shifted - math.log(sum(math.exp(v) for v in shifted))


def naive_ibot(student, teacher, masks, center, student_temp, teacher_temp):
    """Per image: mean over its masked patches of H(teacher, student); then sum / number of images."""
    total = 0.0
    for b in range(masks.shape[0]):
        positions = [n for n in range(masks.shape[1]) if masks[b, n]]
        if not positions:
            continue
        per_patch = []
        for n in positions:
            target = np.exp(_log_softmax((teacher[b, n] - center) / teacher_temp))
            per_patch.append(-np.sum(target * _log_softmax(student[b, n] / student_temp)))
        total += np.mean(per_patch)
    return total / masks.shape[0]


def test_ibot_loss_matches_per_image_average_and_updates_centre():
    rng = np.random.default_rng(1)
    batch, n_patches, k = 3, 4, 6
    student, teacher = rng.normal(size=(batch, n_patches, k)), rng.normal(size=(batch, n_patches, k))
    masks = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=bool)  # image 1 unmasked
    center = rng.normal(size=k)
    loss_fn = IBOTPatchLoss(k, student_temp=0.1, center_momentum=0.9)
    loss_fn.center.copy_(torch.tensor(center[None], dtype=torch.float32))
    mask_tensor = torch.tensor(masks)
    loss = loss_fn(
        torch.tensor(student, dtype=torch.float32)[mask_tensor],
        torch.tensor(teacher, dtype=torch.float32)[mask_tensor],
        mask_tensor,
        teacher_temp=0.07,
    )
    assert loss.item() == pytest.approx(naive_ibot(student, teacher, masks, center, 0.1, 0.07), rel=1e-4)
    expected_center = 0.9 * center + 0.1 * teacher[masks].mean(axis=0)
    np.testing.assert_allclose(loss_fn.center[0].numpy(), expected_center, rtol=1e-5, atol=1e-6)


def test_no_masked_patch_gives_zero_loss_and_keeps_centre():
    loss_fn = IBOTPatchLoss(5)
    loss_fn.center.fill_(0.3)
    masks = torch.zeros(2, 4, dtype=torch.bool)
    loss = loss_fn(torch.zeros(0, 5), torch.zeros(0, 5), masks, 0.04)
    assert loss.item() == 0.0
    assert torch.allclose(loss_fn.center, torch.full((1, 5), 0.3))
