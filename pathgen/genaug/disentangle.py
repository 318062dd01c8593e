"""Gen-SIS's disentanglement pretext task: from an image generated out of an interpolated
embedding, the student must predict the mixture of the teacher's outputs for the two sources.

Belagali, Yellapragada et al., "Gen-SIS: Generative Self-augmentation Improves Self-supervised
Learning", arXiv 2412.01672 (project page pseudo-code; docs/methods/gensis.md). With e_int = SLERP(e1, e2, α)
(α the weight on the primary image), the student sees a view of I_int = LDM(e_int) and its target
is the entangled teacher t_ent = α·t1 + (1 − α)·t2, mixed on the raw teacher logits, then centred
with the DINO centre and sharpened: P_t = softmax((t_ent − c) / τ_t). L_dis = −mean Σ P_t log P_s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pathgen.ssl.losses.centering import CenteredTeacherLoss


def entangled_logits(teacher_1: torch.Tensor, teacher_2: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """α·t1 + (1 − α)·t2 per sample: (B, K) logits of the two sources, α of shape (B,)."""
    alpha = alpha.to(teacher_1.dtype).view(-1, 1)
    return alpha * teacher_1 + (1.0 - alpha) * teacher_2


def disentangle_loss(
    student_logits: torch.Tensor,
    teacher_1: torch.Tensor,
    teacher_2: torch.Tensor,
    alpha: torch.Tensor,
    teacher: CenteredTeacherLoss,
    teacher_temp: float,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy between the centred, sharpened entangled teacher target and the student.

    Args:
        student_logits: (B, K) student head outputs on views of the interpolated images.
        teacher_1: (B, K) teacher head outputs on a view of the primary image (no gradient).
        teacher_2: (B, K) teacher head outputs on a view of the secondary image (no gradient).
        alpha: (B,) interpolation weights on the primary image.
        teacher: The DINO loss whose centre and student temperature are shared (the centre is not
            updated here: it tracks the plain teacher outputs only).
        teacher_temp: Teacher temperature of this step.
        valid: (B,) bool, samples that have an interpolated image; others do not count.

    Returns:
        The mean loss over valid samples (a zero that keeps the graph when none is valid).
    """
    with torch.no_grad():
        targets = teacher.teacher_probabilities(
            entangled_logits(teacher_1.float(), teacher_2.float(), alpha), teacher_temp
        )
    log_probs = F.log_softmax(student_logits.float() / teacher.student_temp, dim=-1)
    per_sample = torch.sum(-targets * log_probs, dim=-1)
    if valid is None:
        return per_sample.mean()
    weights = valid.to(per_sample.dtype)
    return (per_sample * weights).sum() / weights.sum().clamp(min=1.0)
