"""DINO self-distillation loss with teacher centring and a teacher-temperature schedule.

Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021
(arXiv 2104.14294), Sec. 3.1 and Algorithm 1; defaults from facebookresearch/dino main_dino.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from pathgen.ssl.losses.centering import CenteredTeacherLoss


def teacher_temperature(epoch: float, warmup_teacher_temp: float, teacher_temp: float, warmup_epochs: float) -> float:
    """Teacher temperature at `epoch`: linear from `warmup_teacher_temp` to `teacher_temp` over
    `warmup_epochs`, then constant (DINO: a too-sharp teacher early in training is unstable).

    Args:
        epoch: Fractional epochs done.
        warmup_teacher_temp: Temperature at epoch 0 (DINO 0.04).
        teacher_temp: Temperature after warm-up (DINO 0.04; 0.07 in the README recipe).
        warmup_epochs: Length of the linear warm-up (DINO 0; 30 in the README recipe).

    Returns:
        The temperature to sharpen the teacher with.
    """
    if epoch >= warmup_epochs:
        return teacher_temp
    return warmup_teacher_temp + (teacher_temp - warmup_teacher_temp) * epoch / warmup_epochs


class DINOLoss(CenteredTeacherLoss):
    """Cross-entropy between the centred, sharpened teacher and the student over all view pairs.

    Loss = mean over pairs (teacher global view a, student view b, b ≠ a) of
    H(softmax((t_a − c) / τ_t), softmax(s_b / τ_s)), each term averaged over the batch. After the
    loss the centre c moves towards the teacher's batch mean: c ← m·c + (1 − m)·mean(t), the mean
    taken over every rank's global crops (all_reduce), which stops the teacher collapsing to
    one dimension (Caron et al. 2021, Sec. 3.1 and Algorithm 1).

    Args:
        out_dim: Number of prototypes (head output size, DINO 65536).
        student_temp: Student temperature τ_s (DINO 0.1).
        center_momentum: Centre momentum m (DINO 0.9).
        centering: `centering` (DINO) or `sinkhorn_knopp` (DINOv2; over all global crops together).
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
        super().__init__(out_dim, student_temp, center_momentum, centering, sinkhorn_iterations)

    def forward(
        self, student_logits: Sequence[torch.Tensor], teacher_logits: Sequence[torch.Tensor], teacher_temp: float
    ) -> torch.Tensor:
        """Loss for one batch, then a centre update.

        Args:
            student_logits: One (B, out_dim) tensor per crop, the global crops first, in the same
                order as the teacher's.
            teacher_logits: One (B, out_dim) tensor per global crop (no gradient needed).
            teacher_temp: Teacher temperature τ_t for this step (see `teacher_temperature`).

        Returns:
            The scalar loss (fp32).
        """
        teacher_probs = self.teacher_probabilities(torch.cat(list(teacher_logits)), teacher_temp).chunk(
            len(teacher_logits)
        )
        student_log_probs = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student_logits]
        total, n_terms = student_log_probs[0].new_zeros(()), 0
        for a, probs in enumerate(teacher_probs):
            for b, log_probs in enumerate(student_log_probs):
                if b == a:
                    continue
                total = total + torch.sum(-probs * log_probs, dim=-1).mean()
                n_terms += 1
        self.update_center(torch.cat(list(teacher_logits)))
        return total / n_terms
