"""Process-group set-up for training: one process on CPU/GPU, or many under `torchrun`.

`torchrun` sets WORLD_SIZE, RANK and LOCAL_RANK; with WORLD_SIZE > 1 we join the group (NCCL on
GPUs, gloo on CPUs) and each process takes the GPU of its local rank. Devices are chosen here
and passed on; nothing else in pathgen hard-codes a device.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job and the device it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs and checkpoints."""
        return self.rank == 0

    @property
    def is_main_thread(self) -> bool:
        """Signal handlers can only be installed from the main thread."""
        return threading.current_thread() is threading.main_thread()

    def barrier(self) -> None:
        """Wait for every rank (no-op on one process)."""
        if self.world_size > 1:
            dist.barrier()


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """`cpu`, `cuda` (this rank's GPU) or `auto` (CUDA when there is one)."""
    if preference not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {preference!r}")
    if preference == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but no CUDA device is visible")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def setup_distributed(preference: str = "auto") -> DistContext:
    """Join the torchrun process group if there is one; return where this process stands."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistContext(rank, world_size, local_rank, device)


def sync_batchnorm_(model: torch.nn.Module, context: DistContext) -> bool:
    """Swap every BatchNorm of `model` for SyncBatchNorm in place when training on several GPUs, so
    batch statistics cover the global batch as in DINO (`use_bn_in_head`), BYOL, SimSiam and MoCo v3.

    The parameters and buffers are the same objects afterwards (an optimizer built before stays
    valid). gloo / CPU jobs keep per-rank statistics: SyncBatchNorm runs on accelerators only.
    A model with ``sync_batchnorm = False`` keeps per-rank statistics (MoCo v2's shuffled BN needs them).
    Returns True when anything was converted.
    """
    if context.world_size <= 1 or context.device.type != "cuda" or not getattr(model, "sync_batchnorm", True):
        return False
    has_batchnorm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if not has_batchnorm:
        return False
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # children replaced in place
    if converted is not model:
        raise TypeError("sync_batchnorm_ needs a model that holds its BatchNorm layers, not a bare BatchNorm")
    return True


def any_rank(flag: bool, context: DistContext) -> bool:
    """True on every rank when `flag` is True on any (one all-reduce; the flag itself on one process)."""
    if context.world_size == 1:
        return flag
    value = torch.tensor([float(flag)], device=context.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def mean_over_ranks(metrics: dict[str, float], context: DistContext) -> dict[str, float]:
    """Scalar metrics averaged over the ranks (each rank's are means over its own samples, equal in
    number, so this is the mean over the global batch). Every rank must call it at the same point."""
    if context.world_size == 1 or not metrics:
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([metrics[key] for key in keys], dtype=torch.float64, device=context.device)
    dist.all_reduce(values)
    return dict(zip(keys, (values / context.world_size).tolist()))


def gather_objects(value: object, context: DistContext) -> list:
    """Every rank's `value` (picklable, trusted: our own processes), in rank order."""
    if context.world_size == 1:
        return [value]
    values: list = [None] * context.world_size
    dist.all_gather_object(values, value)
    return values
