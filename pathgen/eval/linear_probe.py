"""eva's linear probe on frozen features, with early stopping counted in validation checks.

Recipe (kaiko-ai/eva ``configs/vision/pathology/offline/classification/patch_camelyon.yaml`` at
HEAD 73b61a79, and its leaderboard conventions in ``docs/leaderboards.md``): a linear head on
frozen embeddings (no normalisation of the embeddings), AdamW lr 3e-4 (torch defaults otherwise:
weight decay 0.01, betas 0.9/0.999), batch 256, 12,500 steps, a binary head Linear(D, 1) +
BCEWithLogits, a C-way head + cross-entropy otherwise; the head with the best validation score
(`monitor`) is kept. The per-task settings (patience, schedule) live in benchmarks/suites/*.yaml.

Two eva details that the defaults here do not reproduce (the suite YAMLs set them):
- The LR schedule. A config without ``lr_scheduler`` still gets one: eva's HeadModule defaults to
  ``torch.optim.lr_scheduler.ConstantLR`` (LR × 1/3 for the first 5 scheduler steps;
  src/eva/core/models/modules/head.py, kaiko-eva 0.4.5), and Lightning steps a scheduler once
  per epoch unless told otherwise, so the CosineAnnealingLR with T_max = max_steps of the
  MHIST/BACH configs barely decays (eva PR #772 removed it elsewhere as "wrongly configured").
  `lr_schedule="eva_default"` with `lr_schedule_interval="epoch"` reproduces the first;
  "cosine" + "epoch" the second.
- The monitored metric's name. eva's ``val/MulticlassAccuracy`` is torchmetrics
  MulticlassAccuracy with eva's default average="macro", i.e. mean per-class recall: balanced
  accuracy, not plain accuracy (it differs from scikit-learn's only when a class is absent from
  the validation labels). "accuracy" is plain accuracy, e.g. eva's ``val/BinaryAccuracy``.

One deliberate change: eva validates once per epoch and counts patience (3) in epochs, which on a
small training set stops runs after a few dozen steps (eva 0.4.5 on 1,279 real tiles, measured
for this project: test balanced accuracy 0.578 ± 0.147 against 0.842 with patience off). Here
validation runs every `val_every_steps` optimiser steps whatever the set size, and after the
last step; the default 1,024 steps is one PCam epoch (262,144 / 256), so on PCam the checks fall
where eva's do, and patience counts those checks.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

from pathgen.eval.head_training import CheckpointSelector, head_loss
from pathgen.eval.metrics import METRICS, classification_metrics
from pathgen.eval.probe_result import ProbeResult, check_splits
from pathgen.threads import torch_threads


@dataclass
class LinearProbeConfig:
    """Linear-head training; defaults are eva's PCam recipe bar the LR schedule (module docstring).

    Attributes:
        lr: Learning rate.
        optimizer: "adamw" (torch.optim.AdamW, eva since Oct 2024) or "sgd" (torch.optim.SGD with
            `momentum`, eva's earlier protocol).
        weight_decay: Weight decay; None leaves torch's default for the optimizer (AdamW 0.01,
            SGD 0), which is what eva's AdamW configs do (its SGD configs set 0 explicitly).
        momentum: SGD momentum (eva 0.9); ignored by AdamW.
        batch_size: Training rows per step (the last batch of an epoch may be smaller).
        max_steps: Optimiser steps at most.
        lr_schedule: "constant" (the LR never changes), "cosine" (CosineAnnealingLR, T_max =
            `max_steps`, down to 0) or "eva_default" (torch ConstantLR's defaults: LR × 1/3 for
            the first 5 scheduler steps, then the full LR; what eva's HeadModule uses when a
            config names no scheduler).
        lr_schedule_interval: When the scheduler steps: "step" (after every optimiser step) or
            "epoch" (after every pass over the training rows, ceil(N / batch_size) steps, as
            Lightning does for eva). T_max stays `max_steps` either way, as in eva's configs.
        val_every_steps: Validate every this many steps (and after the last step).
        monitor: The validation metric that selects the checkpoint and drives early stopping,
            a key of `pathgen.eval.metrics.METRICS` (higher is better): "balanced_accuracy" (eva's
            val/BinaryBalancedAccuracy, and its val/MulticlassAccuracy, which is macro-averaged)
            or "accuracy" (eva's val/BinaryAccuracy of the older protocol).
        patience: Stop after this many validation checks without a strict improvement of the
            best `monitor` value; None trains all `max_steps`.
        standardize: Z-score every feature with the training split's mean and sd before training
            (what the logistic probe does by default). Off by default: eva trains on the raw
            embeddings. A small encoder's embeddings can share one dominant direction (norm ~8,
            per-dimension sd ~0.13 for the demo's tiny DINO), which leaves a few thousand AdamW
            steps on the raw features near chance; the synthetic suites turn it on.
        cpu_threads: torch threads while training on CPU (restored afterwards); None leaves them.
            A linear head's steps are tiny, so one thread avoids thread-sync overhead: on the
            2-core dev machine under load, 0.44 ms/step with 1 thread against 8.9 ms with 2.
    """

    lr: float = 3e-4
    optimizer: str = "adamw"
    weight_decay: float | None = None
    momentum: float = 0.9
    batch_size: int = 256
    max_steps: int = 12_500
    lr_schedule: str = "constant"
    lr_schedule_interval: str = "step"
    val_every_steps: int = 1024
    monitor: str = "balanced_accuracy"
    patience: int | None = 3
    standardize: bool = False
    cpu_threads: int | None = 1


OPTIMIZERS = ("adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine", "eva_default")
LR_SCHEDULE_INTERVALS = ("step", "epoch")


def check_config(cfg: LinearProbeConfig) -> None:
    """Raise ValueError naming the first field of `cfg` that cannot run."""
    if cfg.val_every_steps < 1 or cfg.max_steps < 1 or cfg.batch_size < 1:
        raise ValueError(f"LinearProbeConfig: steps, val_every_steps and batch_size must be ≥ 1, got {cfg}")
    for name, allowed in (
        ("optimizer", OPTIMIZERS),
        ("lr_schedule", LR_SCHEDULES),
        ("lr_schedule_interval", LR_SCHEDULE_INTERVALS),
        ("monitor", tuple(METRICS)),
    ):
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"LinearProbeConfig.{name} must be one of {allowed}, got {getattr(cfg, name)!r}")


def shuffled_batches(n_rows: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless row-index batches: a fresh permutation per epoch, the last batch may be short."""
    while True:
        order = torch.randperm(n_rows, generator=generator)
        yield from order.split(batch_size)


def init_head(in_features: int, n_classes: int, generator: torch.Generator) -> torch.nn.Linear:
    """Linear(D, 1) for two classes (eva's binary head), Linear(D, C) otherwise.

    Weights and bias are drawn U(−1/√D, 1/√D) — what nn.Linear's default init gives — from
    `generator`, so the global torch RNG is neither used nor changed.
    """
    head = torch.nn.utils.skip_init(torch.nn.Linear, in_features, 1 if n_classes == 2 else n_classes)
    bound = 1.0 / math.sqrt(in_features)
    with torch.no_grad():
        for param in head.parameters():
            param.copy_(torch.rand(param.shape, generator=generator) * 2 * bound - bound)
    return head


@torch.no_grad()
def head_probabilities(head: torch.nn.Module, features: torch.Tensor) -> np.ndarray:
    """(N, C) class probabilities; a one-logit head gives [1 − σ(z), σ(z)]."""
    logits = head(features).double()
    if logits.shape[1] == 1:
        positive = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - positive, positive], dim=1).cpu().numpy()
    return torch.softmax(logits, dim=1).cpu().numpy()


def make_optimizer(params, cfg: LinearProbeConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (with `momentum`); weight decay None = torch's default for that optimizer."""
    decay = {} if cfg.weight_decay is None else {"weight_decay": cfg.weight_decay}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, **decay)
    return torch.optim.AdamW(params, lr=cfg.lr, **decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: LinearProbeConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Constant LR, cosine annealing to 0 with T_max = `max_steps`, or torch ConstantLR's defaults."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.max_steps)
    if cfg.lr_schedule == "eva_default":
        return torch.optim.lr_scheduler.ConstantLR(optimizer)
    if cfg.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ValueError(f"LinearProbeConfig.lr_schedule must be one of {LR_SCHEDULES}, got {cfg.lr_schedule!r}")


def train_head(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, np.ndarray],
    n_classes: int,
    cfg: LinearProbeConfig,
    generator: torch.Generator,
) -> tuple[torch.nn.Module, CheckpointSelector, list[float]]:
    """Train the head with periodic validation; returns it loaded with the selected weights.

    Also returns, per validation check, the learning rate of the step just taken.
    """
    check_config(cfg)
    (x, y), (val_x, val_y) = train, val
    head = init_head(x.shape[1], n_classes, generator).to(x.device)
    optimizer = make_optimizer(head.parameters(), cfg)
    scheduler = make_scheduler(optimizer, cfg)
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)  # what shuffled_batches yields per pass
    selector, check_lrs = CheckpointSelector(cfg.patience), []
    batches = shuffled_batches(len(x), cfg.batch_size, generator)
    for step in range(1, cfg.max_steps + 1):
        idx = next(batches).to(x.device)
        loss = head_loss(head(x[idx]), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        if cfg.lr_schedule_interval == "step" or step % steps_per_epoch == 0:
            scheduler.step()
        if step % cfg.val_every_steps == 0 or step == cfg.max_steps:
            check_lrs.append(lr)
            if selector.update(step, METRICS[cfg.monitor](val_y, head_probabilities(head, val_x)), head):
                break
    head.load_state_dict(selector.best_state)
    return head, selector, check_lrs


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    cfg: LinearProbeConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> ProbeResult:
    """eva's linear probe: train a head on frozen features, keep the best validation checkpoint.

    Features stay in memory as tensors on `device` (no DataLoader). The seed fixes the head's
    initialisation and the batch order through a private torch.Generator, so two calls with
    the same seed give the same result on the same device and thread count.

    Returns:
        A ProbeResult with val/test metrics of the selected head, `selected["step"]`, the test
        probabilities, and in `extra` the validation history (per check: the step, the monitored
        value as ``val_<monitor>`` and the learning rate of that step) and the step training
        stopped at.
    """
    cfg = cfg or LinearProbeConfig()
    (tx, ty), (vx, vy), (sx, sy), n_classes = check_splits((train_x, train_y), (val_x, val_y), (test_x, test_y))
    generator = torch.Generator().manual_seed(seed)
    if cfg.standardize:  # as the logistic probe does (pathgen.eval.probes)
        scaler = StandardScaler().fit(tx)
        tx, vx, sx = (scaler.transform(a).astype(tx.dtype) for a in (tx, vx, sx))
    to_tensor = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    train = (to_tensor(tx), to_tensor(ty))
    with torch_threads(cfg.cpu_threads if torch.device(device).type == "cpu" else None):
        head, selector, check_lrs = train_head(train, (to_tensor(vx), vy), n_classes, cfg, generator)
    test_scores = head_probabilities(head, to_tensor(sx))
    return ProbeResult(
        name="linear",
        metrics={
            "val": classification_metrics(vy, head_probabilities(head, to_tensor(vx))),
            "test": classification_metrics(sy, test_scores),
        },
        selected={"step": selector.best_step},
        test_scores=test_scores,
        extra={
            "val_history": [
                {"step": s, f"val_{cfg.monitor}": v, "lr": lr}
                for (s, v), lr in zip(selector.history, check_lrs, strict=True)
            ],
            "stopped_step": selector.history[-1][0],
            "seed": seed,
        },
    )
