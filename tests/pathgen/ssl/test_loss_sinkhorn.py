"""Sinkhorn-Knopp teacher targets (DINOv2 `centering: sinkhorn_knopp`) and the BatchNorm DINO head:
the two remedies for a teacher whose outputs barely differ between images."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pathgen.ssl.heads import DINOHead
from pathgen.ssl.losses.centering import sinkhorn_knopp
from pathgen.ssl.losses.dino import DINOLoss


def _scaling_vectors_reference(scores: torch.Tensor, n_iterations: int) -> torch.Tensor:
    """Sinkhorn-Knopp written as diag(u)·exp(S)·diag(v) with alternating scaling vectors."""
    kernel = torch.exp(scores.double())  # (N, K)
    n, k = kernel.shape
    kernel = kernel / kernel.sum()
    u, v = torch.ones(n, dtype=torch.float64), torch.ones(k, dtype=torch.float64)
    for _ in range(n_iterations):
        v = (1.0 / k) / (u @ kernel)  # prototype (column of Q^T) totals 1/K
        u = (1.0 / n) / (kernel @ v)  # sample totals 1/N
    return (u[:, None] * kernel * v[None, :] * n).float()


@pytest.mark.parametrize("n_iterations", [1, 3, 10])
def test_sinkhorn_matches_scaling_vector_formulation(n_iterations):
    scores = torch.randn(12, 7, generator=torch.Generator().manual_seed(0)) * 4
    assert torch.allclose(
        sinkhorn_knopp(scores, n_iterations), _scaling_vectors_reference(scores, n_iterations), atol=1e-5
    )


def test_sinkhorn_rows_are_distributions_and_prototypes_share_the_batch():
    scores = torch.randn(64, 16, generator=torch.Generator().manual_seed(1)) / 0.5
    targets = sinkhorn_knopp(scores, n_iterations=50)
    assert torch.allclose(targets.sum(dim=1), torch.ones(64), atol=1e-5)
    assert torch.allclose(targets.sum(dim=0), torch.full((16,), 64 / 16), rtol=1e-3)
    assert torch.allclose(sinkhorn_knopp(scores + 123.0), sinkhorn_knopp(scores), atol=1e-6)  # shift-invariant


def test_sinkhorn_spreads_a_teacher_that_prefers_one_prototype_where_centring_of_one_batch_does_not():
    """Every image scores prototype 0 highest; the per-image differences are what the targets must keep."""
    generator = torch.Generator().manual_seed(2)
    logits = torch.zeros(32, 8)
    logits[:, 0] = 1.0
    logits += 0.05 * torch.randn(32, 8, generator=generator)
    softmax_targets = F.softmax(logits / 0.04, dim=-1)  # DINO's first step: the centre is still 0
    sk_targets = sinkhorn_knopp(logits / 0.04)
    assert softmax_targets.argmax(dim=1).unique().tolist() == [0]
    assert len(sk_targets.argmax(dim=1).unique()) >= 6


def test_dino_loss_with_sinkhorn_leaves_the_centre_and_matches_hand_computation():
    generator = torch.Generator().manual_seed(3)
    teacher = [torch.randn(4, 6, generator=generator) for _ in range(2)]
    student = [torch.randn(4, 6, generator=generator) for _ in range(3)]
    loss_fn = DINOLoss(6, centering="sinkhorn_knopp")
    loss = loss_fn(student, teacher, 0.04)
    targets = sinkhorn_knopp(torch.cat(teacher) / 0.04).chunk(2)
    expected = []
    for a in range(2):
        for b in range(3):
            if a != b:
                expected.append(torch.sum(-targets[a] * F.log_softmax(student[b] / 0.1, dim=-1), dim=-1).mean())
    assert torch.allclose(loss, torch.stack(expected).mean(), atol=1e-6)
    assert torch.count_nonzero(loss_fn.center) == 0


def test_unknown_centering_is_refused():
    with pytest.raises(ValueError, match="centering"):
        DINOLoss(6, centering="mean")


def test_bn_head_separates_images_whose_features_barely_differ():
    """Features = a shared vector + 1 % per-image variation, as a random tiny ViT gives: without BatchNorm
    every image lands on the same bottleneck direction; with it the directions differ."""
    torch.manual_seed(0)
    features = torch.randn(1, 64).expand(32, 64) + 0.01 * torch.randn(32, 64)

    def mean_pairwise_cosine(head: DINOHead) -> float:
        bottleneck = F.normalize(head.mlp(features), dim=-1)
        cosine = bottleneck @ bottleneck.T
        return cosine[~torch.eye(32, dtype=torch.bool)].mean().item()

    plain, with_bn = DINOHead(64, 128, 256, 32), DINOHead(64, 128, 256, 32, use_bn=True)
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in with_bn.mlp) == 2
    assert mean_pairwise_cosine(plain) > 0.99
    assert mean_pairwise_cosine(with_bn) < 0.5
