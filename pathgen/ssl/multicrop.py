"""Run a backbone over multi-crop views, batching crops of the same resolution together."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def same_resolution_runs(views: Sequence[torch.Tensor]) -> list[tuple[int, int]]:
    """[start, end) index ranges of consecutive views that share their (H, W)."""
    runs: list[tuple[int, int]] = []
    start = 0
    for index in range(1, len(views) + 1):
        if index == len(views) or views[index].shape[-2:] != views[start].shape[-2:]:
            runs.append((start, index))
            start = index
    return runs


def multicrop_features(backbone: nn.Module, views: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Backbone features for each view, one forward per run of equal-resolution views.

    Concatenating the 2 global crops into one batch and the local crops into another (DINO's
    MultiCropWrapper, Caron et al. 2021) gives fewer, larger forwards than one per view; batch
    norm statistics are then shared by crops of the same size, as in DINO.

    Args:
        backbone: Maps (N, 3, H, W) to (N, D).
        views: (B, 3, H_v, W_v) tensors, crops of equal size consecutive (globals then locals).

    Returns:
        One (B, D) feature tensor per view, in the order of `views`.
    """
    features: list[torch.Tensor] = []
    for start, end in same_resolution_runs(views):
        batch = torch.cat(list(views[start:end]))
        features.extend(backbone(batch).chunk(end - start))
    return features


def check_view_count(views: Sequence[torch.Tensor], crops: tuple[int, int], method_name: str) -> None:
    """Raise a ValueError naming the method when `views` is not n_global + n_local tensors."""
    n_global, n_local = crops
    if len(views) != n_global + n_local:
        raise ValueError(
            f"{method_name} expects {n_global} global + {n_local} local = {n_global + n_local} views, "
            f"got {len(views)}; make the data pipeline's crops match the method's `crops`"
        )
