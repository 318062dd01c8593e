"""Finite-value checks of a training run: gradients before each optimizer step, parameters after it,
and every tensor of a checkpoint before it is written.

A loss can stay finite while one exploding layer already holds inf or NaN weights (at a far too high
learning rate, 136 tensors of a ViT did); checking the loss only, a "last good checkpoint" could
hold those weights. So the training loop checks the tensors themselves, on every rank.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch


def nonfinite_names(tree: object, prefix: str = "") -> list[str]:
    """Dotted names of the floating-point tensors in a nested state (dicts, lists, tensors) that
    hold a NaN or an infinity."""
    if isinstance(tree, torch.Tensor):
        return [prefix or "tensor"] if tree.is_floating_point() and not bool(torch.isfinite(tree).all()) else []
    items = tree.items() if isinstance(tree, Mapping) else enumerate(tree) if isinstance(tree, (list, tuple)) else ()
    return [name for key, value in items for name in nonfinite_names(value, f"{prefix}.{key}" if prefix else str(key))]


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """True when every tensor holds only finite values (one device sync for all of them)."""
    flags = [torch.isfinite(t.detach()).all() for t in tensors]
    return bool(torch.stack(flags).all()) if flags else True


def grads_finite(model: torch.nn.Module) -> bool:
    """True when every gradient of `model` is finite (parameters without a gradient count as finite)."""
    return all_finite(p.grad for p in model.parameters() if p.grad is not None)


def params_finite(model: torch.nn.Module) -> bool:
    """True when every parameter of `model` is finite."""
    return all_finite(model.parameters())
