"""The teacher side shared by the DINO and iBOT losses: centring and sharpening of teacher outputs.

Caron et al. 2021 (DINO) §3.1 and Zhou et al. 2022 (iBOT): the teacher's targets are
softmax((t − c) / τ_t), with the centre c an EMA of the batch mean of teacher outputs over all ranks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pathgen.ssl.distributed import all_reduce_sum


class CenteredTeacherLoss(nn.Module):
    """Holds the centre buffer and the student temperature of a self-distillation loss."""

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9):
        super().__init__()
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    @torch.no_grad()
    def teacher_probabilities(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """softmax((t − c) / τ_t) in fp32, detached: the teacher's centred and sharpened targets."""
        return F.softmax((teacher_logits.float() - self.center) / teacher_temp, dim=-1)

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """c ← m·c + (1 − m)·(mean of `teacher_logits` (N, out_dim) over every rank's rows).

        With no row on any rank (iBOT with nothing masked) the centre stays where it is.
        """
        summed = all_reduce_sum(teacher_logits.float().sum(dim=0, keepdim=True))
        count = all_reduce_sum(torch.tensor(float(teacher_logits.shape[0]), device=teacher_logits.device))
        batch_center = torch.where(count > 0, summed / count.clamp(min=1.0), self.center)
        self.center.mul_(self.center_momentum).add_(batch_center * (1.0 - self.center_momentum))
