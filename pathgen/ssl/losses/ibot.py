"""iBOT masked-patch self-distillation loss, in the form DINOv2 uses.

Zhou et al., "iBOT: Image BERT Pre-Training with Online Tokenizer", ICLR 2022 (arXiv 2111.07832),
Eq. 2; Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision", TMLR 2024
(arXiv 2304.07193), Sec. 4 ("Patch-level objective").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pathgen.ssl.losses.centering import CenteredTeacherLoss


class IBOTPatchLoss(CenteredTeacherLoss):
    """Cross-entropy between teacher and student patch tokens at the positions masked for the student.

    The student sees a global crop with some patches replaced by a mask token; the teacher sees
    the clean crop. At each masked patch the teacher's head output is centred and sharpened
    (softmax((t − c) / τ_t)), the student's softmax'd with τ_s, and the cross-entropy is averaged
    over the masked patches of each image, then over images (images with no masked patch count
    as zero), as in DINOv2's `iBOTPatchLoss.forward_masked`. The patch centre c has its own EMA,
    updated after the loss from every rank's masked teacher tokens.

    Args:
        patch_out_dim: Number of prototypes of the patch head.
        student_temp: Student temperature τ_s (iBOT / DINOv2 0.1).
        center_momentum: Centre momentum m (0.9).
        centering: `centering` (iBOT) or `sinkhorn_knopp` (DINOv2; over every masked patch of the batch).
        sinkhorn_iterations: Sinkhorn-Knopp iterations (DINOv2 3).
    """

    def __init__(
        self,
        patch_out_dim: int,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
        centering: str = "centering",
        sinkhorn_iterations: int = 3,
    ):
        super().__init__(patch_out_dim, student_temp, center_momentum, centering, sinkhorn_iterations)

    def forward(
        self,
        student_masked_logits: torch.Tensor,
        teacher_masked_logits: torch.Tensor,
        masks: torch.Tensor,
        teacher_temp: float,
    ) -> torch.Tensor:
        """Loss for one batch, then a centre update.

        Args:
            student_masked_logits: (M, K) student head outputs at the masked patches, in the order
                of `masks.nonzero()` (image-major), M = masks.sum().
            teacher_masked_logits: (M, K) teacher head outputs at the same patches.
            masks: (B, N) bool, True where the student's patch was masked.
            teacher_temp: Teacher temperature τ_t for this step.

        Returns:
            The scalar loss (fp32).
        """
        teacher_probs = self.teacher_probabilities(teacher_masked_logits, teacher_temp)
        student_log_probs = F.log_softmax(student_masked_logits.float() / self.student_temp, dim=-1)
        per_patch = torch.sum(-teacher_probs * student_log_probs, dim=-1)
        masks = masks.flatten(1)
        patches_per_image = masks.sum(dim=1, keepdim=True).clamp(min=1).float()
        weight = (1.0 / patches_per_image).expand_as(masks)[masks]
        self.update_center(teacher_masked_logits)
        return torch.sum(per_patch * weight) / masks.shape[0]
