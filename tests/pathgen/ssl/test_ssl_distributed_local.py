"""Distributed helpers without a process group: they fall back to the single-process answer."""

from __future__ import annotations

import torch

from pathgen.ssl.collectives import all_gather_cat, all_reduce_mean, all_reduce_sum, is_distributed, rank, world_size


def test_single_process_fallbacks():
    assert not is_distributed() and world_size() == 1 and rank() == 0
    local = torch.randn(3, 2, requires_grad=True)
    assert all_gather_cat(local) is local
    assert all_reduce_mean(local) is local
    summed = all_reduce_sum(local)
    assert torch.equal(summed, local) and summed is not local and not summed.requires_grad
