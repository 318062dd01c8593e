"""torch.distributed helpers the SSL losses share: world size / rank, gather and reduce.

Every helper reads the live `torch.distributed` state and falls back to the single-process answer
when no process group is initialised, so the same loss code runs on a CPU laptop and under
torchrun. The collectives are differentiable with the gradient of the *sum* of every rank's loss;
DDP then averages parameter gradients over ranks, which makes a distributed step equal to one
step on the concatenated global batch (checked in tests/pathgen/ssl/test_ssl_distributed_ddp.py).
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a torch.distributed process group is available and initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in the default group (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


class _AllGather(torch.autograd.Function):
    """all_gather whose backward hands each rank the summed gradient of its own slice."""

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> tuple[torch.Tensor, ...]:
        gathered = [torch.empty_like(local) for _ in range(world_size())]
        dist.all_gather(gathered, local.contiguous())
        return tuple(gathered)

    @staticmethod
    def backward(ctx, *grads_per_rank: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack([g.contiguous() for g in grads_per_rank])
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return stacked[rank()]


class _AllReduceMean(torch.autograd.Function):
    """Out-of-place all_reduce mean; its gradient is again the mean over ranks."""

    @staticmethod
    def forward(ctx, local: torch.Tensor) -> torch.Tensor:
        reduced = local.clone()
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
        return reduced / world_size()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        reduced = grad.clone()
        dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
        return reduced / world_size()


def all_gather_cat(local: torch.Tensor) -> torch.Tensor:
    """Concatenate `local` from every rank along dim 0, rank 0 first, keeping gradients.

    Gradients flow back to this rank's slice (the sum over ranks of each loss's gradient for it),
    as contrastive losses need when negatives come from other GPUs (SimCLR, Chen et al. 2020).
    Every rank must pass a tensor of the same shape.
    """
    if world_size() == 1:
        return local
    return torch.cat(_AllGather.apply(local), dim=0)


def all_reduce_mean(local: torch.Tensor) -> torch.Tensor:
    """Mean of `local` over ranks (a new tensor; differentiable). Identity when not distributed."""
    if world_size() == 1:
        return local
    return _AllReduceMean.apply(local)


@torch.no_grad()
def _all_reduce_copy(local: torch.Tensor, op: dist.ReduceOp) -> torch.Tensor:
    """`local` reduced with `op` over ranks as a new tensor, without gradient."""
    reduced = local.clone()
    if world_size() > 1:
        dist.all_reduce(reduced, op=op)
    return reduced


def all_reduce_sum(local: torch.Tensor) -> torch.Tensor:
    """Sum of `local` over ranks as a new tensor, without gradient (for statistics like centres)."""
    return _all_reduce_copy(local, dist.ReduceOp.SUM)


def all_reduce_max(local: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum of `local` over ranks as a new tensor, without gradient."""
    return _all_reduce_copy(local, dist.ReduceOp.MAX)


@torch.no_grad()
def shuffled_bn_forward(module: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """`module(images)` with the global batch randomly re-split across ranks (MoCo's shuffling BN).

    He et al. 2020 (Sec. 3.3; facebookresearch/moco builder._batch_shuffle_ddp): the key encoder's
    BatchNorm statistics then come from other images than the query's, so the model cannot cheat
    through intra-batch statistics. Outputs come back in this rank's order. Without gradient; one
    process has nothing to shuffle across and runs the module as is.
    """
    if world_size() == 1:
        return module(images)
    gathered = all_gather_cat(images.contiguous())
    order = torch.randperm(gathered.shape[0], device=images.device)
    dist.broadcast(order, src=0)
    local = images.shape[0]
    outputs = all_gather_cat(module(gathered[order[rank() * local : (rank() + 1) * local]]))
    return outputs[torch.argsort(order)][rank() * local : (rank() + 1) * local]
