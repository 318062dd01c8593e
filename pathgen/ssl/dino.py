"""DINO: self-distillation with no labels, with optional KoLeo and iBOT terms from DINOv2.

Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021
(arXiv 2104.14294); defaults from facebookresearch/dino main_dino.py for ViT-S/16 (docs/methods/ssl_recipes.md,
DINO). KoLeo and the iBOT masked-patch loss follow DINOv2 (Oquab et al., TMLR 2024, Sec. 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from pathgen.ssl.base import SSLMethod, StepInfo
from pathgen.ssl.heads import DINOHead
from pathgen.ssl.losses.dino import DINOLoss, teacher_temperature
from pathgen.ssl.losses.ibot import IBOTPatchLoss
from pathgen.ssl.losses.koleo import koleo_loss
from pathgen.ssl.masked_vit import patch_count, random_patch_masks, supports_patch_tokens, vit_tokens
from pathgen.ssl.momentum import cosine_momentum, disable_drop_path_, ema_update_, momentum_copy
from pathgen.ssl.multicrop import check_view_count, multicrop_features


@dataclass
class DINOConfig:
    """DINO hyper-parameters; defaults are main_dino.py's for ViT-S/16 (docs/methods/ssl_recipes.md, DINO).

    `ibot_weight` > 0 adds DINOv2's masked-patch loss (needs a timm ViT backbone): the student's
    global crops are masked with probability `mask_probability` per image, a ratio of patches in
    [mask_ratio_min, mask_ratio_max] (DINOv2 0.5 and (0.1, 0.5)); the head is shared, as in iBOT.
    """

    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    head_layers: int = 3
    norm_last_layer: bool = True
    use_bn_in_head: bool = False
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: float = 0
    center_momentum: float = 0.9
    centering: str = "centering"  # centering (DINO) | sinkhorn_knopp (DINOv2): how the teacher's targets are made
    sinkhorn_iterations: int = 3
    momentum_teacher: float = 0.996
    freeze_last_layer_epochs: float = 1
    koleo_weight: float = 0.0
    ibot_weight: float = 0.0
    mask_probability: float = 0.5
    mask_ratio_min: float = 0.1
    mask_ratio_max: float = 0.5
    n_global: int = 2
    n_local: int = 8


class DINO(SSLMethod):
    """Student backbone + DINOHead trained to match an EMA teacher on multi-crop views.

    The teacher (a frozen deep copy, stochastic depth off) sees the global crops, the student every
    crop; `after_step` moves the teacher towards the student with a cosine momentum 0.996 → 1.
    The training loop must call `before_optimizer_step` between backward and the optimizer step:
    it drops the head's last-layer gradients during the first `freeze_last_layer_epochs`.

    Args:
        backbone: Maps (B, 3, H, W) → (B, embed_dim) (timm model with num_classes=0).
        embed_dim: Backbone feature size.
        cfg: Hyper-parameters (DINOConfig() when None).
    """

    def __init__(self, backbone: nn.Module, embed_dim: int, cfg: DINOConfig | None = None):
        super().__init__(backbone, embed_dim)
        self.cfg = cfg = cfg or DINOConfig()
        if cfg.n_global < 1 or cfg.n_global + cfg.n_local < 2:
            raise ValueError(f"DINO needs n_global >= 1 and at least 2 crops, got {cfg.n_global} + {cfg.n_local}")
        if cfg.ibot_weight > 0 and not supports_patch_tokens(backbone):
            raise ValueError(
                f"ibot_weight={cfg.ibot_weight} needs a timm VisionTransformer backbone, got {type(backbone).__name__}"
            )
        self.crops = (cfg.n_global, cfg.n_local)
        self.head = DINOHead(
            embed_dim,
            cfg.out_dim,
            cfg.hidden_dim,
            cfg.bottleneck_dim,
            cfg.head_layers,
            cfg.norm_last_layer,
            cfg.use_bn_in_head,
        )
        self.teacher_backbone = disable_drop_path_(momentum_copy(backbone))
        self.teacher_head = momentum_copy(self.head)
        teacher_side = (cfg.student_temp, cfg.center_momentum, cfg.centering, cfg.sinkhorn_iterations)
        self.dino_loss = DINOLoss(cfg.out_dim, *teacher_side)
        if cfg.ibot_weight > 0:
            self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
            self.ibot_loss = IBOTPatchLoss(cfg.out_dim, *teacher_side)

    def forward(self, views: list[torch.Tensor], info: StepInfo) -> dict[str, torch.Tensor]:
        """DINO loss (+ weighted KoLeo and iBOT terms) on n_global global then n_local local crops."""
        return self.distillation_terms(views, info)[0]

    def distillation_terms(
        self, views: list[torch.Tensor], info: StepInfo
    ) -> tuple[dict[str, torch.Tensor], list[torch.Tensor], float]:
        """The loss dict of `forward`, plus the teacher's raw logits per global crop and the teacher
        temperature of this step (extensions such as Gen-SIS reuse them for their own targets)."""
        check_view_count(views, self.crops, "DINO")
        cfg, n_global = self.cfg, self.cfg.n_global
        temp = self.teacher_temp(info)
        globals_batch = torch.cat(views[:n_global])
        masks = self._sample_masks(globals_batch) if cfg.ibot_weight > 0 else None
        with torch.no_grad():
            teacher_features, teacher_patches = self._backbone_outputs(self.teacher_backbone, globals_batch)
            teacher_logits = list(self.teacher_head(teacher_features).chunk(n_global))
        student_features, student_patches = self._backbone_outputs(self.backbone, globals_batch, masks)
        student_per_view = list(student_features.chunk(n_global)) + multicrop_features(self.backbone, views[n_global:])
        student_logits = self.head(torch.cat(student_per_view)).chunk(len(views))
        dino = self.dino_loss(student_logits, teacher_logits, temp)
        logs = {"dino_loss": dino.detach(), "teacher_temp": torch.tensor(temp)}
        loss = dino
        if cfg.koleo_weight > 0:
            koleo = sum(koleo_loss(features) for features in student_per_view[:n_global])
            loss = loss + cfg.koleo_weight * koleo
            logs["koleo_loss"] = koleo.detach()
        if cfg.ibot_weight > 0:
            ibot = self._ibot(student_patches, teacher_patches, masks, temp)
            loss = loss + cfg.ibot_weight * ibot
            logs["ibot_loss"] = ibot.detach()
        return {"loss": loss, **logs}, teacher_logits, temp

    def teacher_temp(self, info: StepInfo) -> float:
        """The teacher temperature at this point of training (warm-up schedule)."""
        cfg = self.cfg
        return teacher_temperature(
            info.epoch, cfg.warmup_teacher_temp, cfg.teacher_temp, cfg.warmup_teacher_temp_epochs
        )

    def _backbone_outputs(
        self, backbone: nn.Module, images: torch.Tensor, masks: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pooled features, plus patch tokens when the iBOT term is on (masked where `masks` says)."""
        if self.cfg.ibot_weight <= 0:
            return backbone(images), None
        return vit_tokens(backbone, images, masks, self.mask_token if masks is not None else None)

    def _sample_masks(self, images: torch.Tensor) -> torch.Tensor:
        """(B, N) bool patch masks for the student's global crops (DINOv2 sampling, random positions)."""
        n_patches = patch_count(self.backbone, images.shape[-2:])
        cfg = self.cfg
        return random_patch_masks(
            images.shape[0], n_patches, cfg.mask_probability, cfg.mask_ratio_min, cfg.mask_ratio_max, images.device
        )

    def _ibot(
        self, student_patches: torch.Tensor, teacher_patches: torch.Tensor, masks: torch.Tensor, teacher_temp: float
    ) -> torch.Tensor:
        """iBOT loss between student and teacher head outputs at the masked patch positions."""
        student_masked = self.head(student_patches[masks])
        with torch.no_grad():
            teacher_masked = self.teacher_head(teacher_patches[masks])
        return self.ibot_loss(student_masked, teacher_masked, masks, teacher_temp)

    def before_optimizer_step(self, info: StepInfo) -> None:
        """Drop the head's last-layer gradients while `info.epoch < freeze_last_layer_epochs`.

        Call after backward (and gradient unscaling / clipping), before `optimizer.step()`.
        Gradients are set to None, as DINO's `cancel_gradients_last_layer` does, so the optimizer
        skips those weights entirely (no update, no weight decay) — this stabilises the first epoch.
        """
        if info.epoch >= self.cfg.freeze_last_layer_epochs:
            return
        for parameter in self.head.last_layer.parameters():
            parameter.grad = None

    @torch.no_grad()
    def after_step(self, info: StepInfo) -> None:
        """EMA teacher update with momentum cosine(momentum_teacher → 1) at `info.progress`."""
        momentum = cosine_momentum(info.progress, self.cfg.momentum_teacher, 1.0)
        ema_update_(self.teacher_backbone, self.backbone, momentum)
        ema_update_(self.teacher_head, self.head, momentum)

    def export_backbone(self) -> nn.Module:
        """The teacher backbone: DINO evaluates (and ships) the teacher, which is the better one."""
        return self.teacher_backbone
