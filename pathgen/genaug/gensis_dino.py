"""Gen-DINO: DINO with generated views and Gen-SIS's disentanglement task (docs/methods/gensis.md).

The generative augmentation itself lives in the data (a view provider swaps real views for bank
views); this module adds the second term. A batch is either DINO's list of crops, or a dict from
`pathgen.genaug.sources.InterpolationViews`:

- ``views``: DINO's crops of the primary tile (global crops first);
- ``interp``: (B, 3, G, G) a global-crop augmentation of the image generated from
  SLERP(e_primary, e_secondary, α);
- ``secondary``: (B, 3, G, G) a global-crop augmentation of the secondary tile;
- ``alpha``: (B,) the interpolation weight on the primary; ``has_interp``: (B,) bool.

The teacher's output on view(I1) is its output on the primary's first global crop, which is a
vanilla DINO augmentation of I1 — the page's "apply vanilla DINO augmentation to I1" — so no extra
teacher pass is spent on it; view(I2) costs one teacher pass, view(I_int) one student pass — run
only on the samples of the batch that have an interpolation (`has_interp`): a sample without one
costs nothing, and with a BatchNorm head the batch statistics of those passes come from valid
samples only, so invalid (blank) images cannot shift the valid targets. `disentangle_share` (logged
per step) is the share of the batch that paid for the two extra passes: the task's cost per step is
that share × (one student + one teacher forward of a global crop). With one valid sample and a
BatchNorm layer the task is skipped for that step (BatchNorm cannot normalise one sample).
"""

from __future__ import annotations

import torch
from torch import nn

from pathgen.genaug.disentangle import disentangle_loss
from pathgen.ssl.base import StepInfo
from pathgen.ssl.dino import DINO, DINOConfig


class GenSISDINO(DINO):
    """DINO plus `disentangle_weight` × L_dis on batches that carry interpolated views.

    Args:
        backbone: Maps (B, 3, H, W) → (B, embed_dim).
        embed_dim: Backbone feature size.
        cfg: DINO hyper-parameters.
        disentangle_weight: Weight of L_dis against the DINO loss (the page does not give it; 1.0
            treats both pretext tasks alike).
    """

    def __init__(
        self, backbone: nn.Module, embed_dim: int, cfg: DINOConfig | None = None, disentangle_weight: float = 1.0
    ):
        super().__init__(backbone, embed_dim, cfg)
        self.disentangle_weight = disentangle_weight

    def forward(self, batch, info: StepInfo) -> dict[str, torch.Tensor]:  # noqa: ANN001 -- list or dict
        """DINO on the crops; plus the weighted disentanglement loss on the samples that have interpolations."""
        if not isinstance(batch, dict):
            return super().forward(batch, info)
        outputs, teacher_logits, temp = self.distillation_terms(batch["views"], info)
        if self.disentangle_weight <= 0:
            return outputs
        valid = batch["has_interp"].to(device=teacher_logits[0].device, dtype=torch.bool)
        n_valid = int(valid.sum())
        outputs["disentangle_share"] = torch.tensor(n_valid / max(len(valid), 1))
        if n_valid == 0 or (n_valid == 1 and self._batchnorm):  # BatchNorm cannot train on one sample
            outputs["disentangle_loss"] = torch.zeros((), device=valid.device)
            return outputs
        with torch.no_grad():
            teacher_secondary = self.teacher_head(self.teacher_backbone(batch["secondary"][valid]))
        student_interp = self.head(self.backbone(batch["interp"][valid]))
        loss = disentangle_loss(
            student_interp,
            teacher_logits[0][valid],
            teacher_secondary,
            batch["alpha"].to(valid.device)[valid],
            self.dino_loss,
            temp,
        )
        outputs["loss"] = outputs["loss"] + self.disentangle_weight * loss
        outputs["disentangle_loss"] = loss.detach()
        return outputs

    @property
    def _batchnorm(self) -> bool:
        """Whether the student has BatchNorm layers (their batch statistics need two samples or more)."""
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.modules())
