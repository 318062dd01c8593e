"""Momentum (EMA) copies of networks: the DINO teacher, the BYOL target, the MoCo key encoder."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_momentum(progress: float, base: float, final: float = 1.0) -> float:
    """m = final − (final − base)·(cos(π·progress) + 1)/2: `base` at the start, `final` at the end.

    The cosine EMA schedule of BYOL (Grill et al. 2020, Sec. 3.2), DINO (Caron et al. 2021,
    Sec. 3.1: 0.996 → 1) and MoCo v3 (`--moco-m-cos`), stepped per iteration.

    Args:
        progress: Fraction of training done, in [0, 1] (StepInfo.progress).
        base: Momentum at progress 0.
        final: Momentum at progress 1.
    """
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


def momentum_copy(module: nn.Module) -> nn.Module:
    """A deep copy of `module` with every parameter frozen (requires_grad False).

    It is trained only by `ema_update_`, and is left out of the optimizer and of DDP's
    gradient all-reduce because none of its parameters requires a gradient.
    """
    copied = copy.deepcopy(module)
    for parameter in copied.parameters():
        parameter.requires_grad_(False)
    return copied


def disable_drop_path_(module: nn.Module) -> nn.Module:
    """Set stochastic depth to 0 in every timm DropPath of `module` (DINO's teacher has none)."""
    for submodule in module.modules():
        if type(submodule).__name__ == "DropPath" and hasattr(submodule, "drop_prob"):
            submodule.drop_prob = 0.0
    return module


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """θ_target ← m·θ_target + (1 − m)·θ_online for every parameter (buffers are left alone).

    Args:
        target: The momentum copy, updated in place.
        online: The trained network with the same parameter names.
        momentum: m in [0, 1].
    """
    online_parameters = dict(online.named_parameters())
    for name, target_parameter in target.named_parameters():
        online_parameter = online_parameters[name].detach()
        target_parameter.mul_(momentum).add_(online_parameter.to(target_parameter.dtype), alpha=1.0 - momentum)
