"""The teacher side shared by the DINO and iBOT losses: centring and sharpening of teacher outputs.

Two ways to keep the teacher from collapsing, as in DINOv2 (`train.centering`):
* `centering` — Caron et al. 2021 (DINO) §3.1 and Zhou et al. 2022 (iBOT): targets are
  softmax((t − c) / τ_t), with the centre c an EMA of the batch mean of teacher outputs over all ranks.
* `sinkhorn_knopp` — Oquab et al. 2024 (DINOv2) §4, after SwAV (Caron et al. 2020): targets are the
  Sinkhorn-Knopp normalisation of exp(t / τ_t) over the batch (3 iterations), so every prototype gets
  an equal share of the batch while each sample keeps a sharp assignment. Mean-centring a batch of
  near-identical teacher outputs (a small model early in training) leaves near-uniform targets the
  student learns to copy; the equipartition constraint cannot be met that way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pathgen.ssl.collectives import all_reduce_max, all_reduce_sum

CENTERING = ("centering", "sinkhorn_knopp")


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, n_iterations: int = 3) -> torch.Tensor:
    """(N, K) teacher scores t / τ_t → (N, K) soft assignments whose rows sum to 1 and whose columns,
    summed over every rank's rows, are equal (DINOv2 `sinkhorn_knopp_teacher`).

    The scores are shifted by their maximum over all ranks before exp(), which the first
    normalisation cancels exactly.
    """
    n_rows = all_reduce_sum(torch.tensor(float(scores.shape[0]), device=scores.device))
    if n_rows.item() == 0:
        return scores.float().softmax(dim=-1)
    local_max = scores.max() if scores.numel() else scores.new_tensor(float("-inf"))
    q = torch.exp(scores.float() - all_reduce_max(local_max.float())).t()  # (K, N)
    n_prototypes = q.shape[0]
    q /= all_reduce_sum(q.sum())
    for _ in range(n_iterations):
        q /= all_reduce_sum(q.sum(dim=1, keepdim=True))  # each prototype: total 1/K
        q /= n_prototypes
        q /= q.sum(dim=0, keepdim=True)  # each sample: total 1/N
        q /= n_rows
    return (q * n_rows).t()


class CenteredTeacherLoss(nn.Module):
    """Holds the centre buffer, the centring mode and the student temperature of a self-distillation loss.

    Args:
        out_dim: Number of prototypes.
        student_temp: Student temperature τ_s.
        center_momentum: Centre momentum m (`centering` mode).
        centering: `centering` (DINO / iBOT) or `sinkhorn_knopp` (DINOv2).
        sinkhorn_iterations: Sinkhorn-Knopp iterations (DINOv2 3).
    """

    def __init__(
        self,
        out_dim: int,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        centering: str = "centering",
        sinkhorn_iterations: int = 3,
    ):
        super().__init__()
        if centering not in CENTERING:
            raise ValueError(f"centering must be one of {', '.join(CENTERING)}, got {centering!r}")
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.centering = centering
        self.sinkhorn_iterations = sinkhorn_iterations
        self.register_buffer("center", torch.zeros(1, out_dim))

    @torch.no_grad()
    def teacher_probabilities(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """The teacher's (N, K) targets in fp32, detached: softmax((t − c) / τ_t), or the Sinkhorn-Knopp
        assignments of t / τ_t over the N rows (and every rank's) in `sinkhorn_knopp` mode."""
        if self.centering == "sinkhorn_knopp":
            return sinkhorn_knopp(teacher_logits.float() / teacher_temp, self.sinkhorn_iterations)
        return F.softmax((teacher_logits.float() - self.center) / teacher_temp, dim=-1)

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """c ← m·c + (1 − m)·(mean of `teacher_logits` (N, out_dim) over every rank's rows).

        With no row on any rank (iBOT with nothing masked) the centre stays where it is. In
        `sinkhorn_knopp` mode there is no centre to move (DINOv2 updates it only when centring).
        """
        if self.centering == "sinkhorn_knopp":
            return
        summed = all_reduce_sum(teacher_logits.float().sum(dim=0, keepdim=True))
        count = all_reduce_sum(torch.tensor(float(teacher_logits.shape[0]), device=teacher_logits.device))
        batch_center = torch.where(count > 0, summed / count.clamp(min=1.0), self.center)
        self.center.mul_(self.center_momentum).add_(batch_center * (1.0 - self.center_momentum))
