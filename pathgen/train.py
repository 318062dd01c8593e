"""The one training loop: SSL, VAE and diffusion training all run through `Trainer.fit`.

It runs on CPU, one GPU, or many GPUs/nodes under `torchrun` (DDP), with bf16/fp16 autocast on
GPU, gradient accumulation, per-step cosine LR with warm-up and a cosine weight-decay schedule,
gradient clipping, checkpoints every N steps and at exit, exact resume (model, optimizer,
scaler, RNG and data position), a stop with a clear message on a non-finite loss (the last good
checkpoint is kept), a progress bar and a JSONL metrics log.

The model is any nn.Module whose ``forward(batch, info)`` returns ``{"loss": ..., <scalars>}``;
it may define ``param_groups()``, ``before_optimizer_step(info)`` (called between backward and
the step) and ``after_step(info)`` (momentum/EMA updates), as pathgen.ssl.base.SSLMethod does.
"""

from __future__ import annotations

import json
import math
import signal
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pathgen.config import check, one_of
from pathgen.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from pathgen.data.tiles import ResumableSampler
from pathgen.distributed import DistContext, setup_distributed, sync_batchnorm_
from pathgen.optim import OPTIMIZERS, build_optimizer, model_param_groups
from pathgen.schedules import StepInfo, warmup_cosine

CHECKPOINT = "checkpoints/last.pt"
METRICS = "metrics.jsonl"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says where the last good checkpoint is."""


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping of one training run (per-process batch size)."""

    epochs: float = 100.0
    max_steps: int | None = None  # stop here even if epochs are left (smoke runs, budgets)
    batch_size: int = 64
    grad_accum: int = 1
    optimizer: str = "adamw"  # adamw | sgd | lars
    lr: float = 5e-4  # peak LR for a total batch of 256 when lr_scaling is "linear"
    lr_scaling: str = "linear"  # linear | none
    min_lr: float = 1e-6
    warmup_epochs: float = 10.0
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    lars_eta: float = 0.02  # LARS trust coefficient (SimCLR 0.02; BYOL / Barlow Twins 0.001)
    clip_grad: float | None = 3.0
    clip_mode: str = "per_param"  # per_param (DINO: each tensor's norm) | global
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    compile: bool = False
    device: str = "auto"  # auto | cpu | cuda
    num_workers: int = 2
    seed: int = 0
    checkpoint_every: int = 500
    log_every: int = 10
    tensorboard: bool = False  # also write TensorBoard events to <run>/tensorboard (needs `tensorboard`)
    progress: bool = True

    def __post_init__(self) -> None:
        """Refuse values that would only fail mid-run (a zero batch, a zero checkpoint interval …)."""
        for name in ("batch_size", "grad_accum", "checkpoint_every", "log_every"):
            check(getattr(self, name) >= 1, name, f"must be at least 1, got {getattr(self, name)}")
        check(self.max_steps is None or self.max_steps >= 1, "max_steps", f"must be at least 1, got {self.max_steps}")
        check(self.epochs > 0, "epochs", f"must be positive, got {self.epochs}")
        check(self.lr >= 0, "lr", f"must not be negative, got {self.lr}")  # 0: a run that only records step 0
        check(self.min_lr >= 0 and self.warmup_epochs >= 0, "min_lr / warmup_epochs", "must not be negative")
        check(self.num_workers >= 0, "num_workers", f"must not be negative, got {self.num_workers}")
        check(self.clip_grad is None or self.clip_grad > 0, "clip_grad",
              f"must be positive or null, got {self.clip_grad}")
        one_of(self.optimizer, OPTIMIZERS, "optimizer")
        one_of(self.lr_scaling, ("linear", "none"), "lr_scaling")
        one_of(self.clip_mode, ("per_param", "global"), "clip_mode")
        one_of(self.precision, ("auto", "fp32", "bf16", "fp16"), "precision")
        one_of(self.device, ("auto", "cpu", "cuda"), "device")


def steps_per_epoch(n_items: int, cfg: TrainConfig, world_size: int) -> int:
    """Optimizer steps in one pass over the data (last partial batch dropped)."""
    per_rank = math.ceil(n_items / world_size)
    steps = per_rank // cfg.batch_size // cfg.grad_accum
    if steps == 0:
        raise ValueError(f"{n_items} items are fewer than one step of {cfg.batch_size} × {cfg.grad_accum} "
                         f"× {world_size} processes; lower train.batch_size")
    return steps


def move_to(batch, device: torch.device):  # noqa: ANN001, ANN201 -- nested tensors
    """The batch (tensors, or lists / tuples / dicts of them) on `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: move_to(value, device) for key, value in batch.items()}
    return batch


class Trainer:
    """Fits a model on a dataset and keeps a run folder (config, metrics, checkpoints)."""

    def __init__(self, cfg: TrainConfig, model: nn.Module, dataset: Dataset, run_dir: str | Path,
                 sampler_weights=None, collate_fn=None):  # noqa: ANN001
        self.cfg, self.dataset, self.run_dir = cfg, dataset, Path(run_dir)
        self.dist: DistContext = setup_distributed(cfg.device)
        torch.manual_seed(cfg.seed + self.dist.rank)
        self.model = model.to(self.dist.device)
        self.sampler = ResumableSampler(len(dataset), cfg.seed, self.dist.rank, self.dist.world_size, sampler_weights)
        self.collate_fn = collate_fn
        self.steps_per_epoch = steps_per_epoch(len(dataset), cfg, self.dist.world_size)
        self.total_steps = max(1, round(cfg.epochs * self.steps_per_epoch))
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        total_batch = cfg.batch_size * cfg.grad_accum * self.dist.world_size
        self.peak_lr = cfg.lr * (total_batch / 256 if cfg.lr_scaling == "linear" else 1.0)
        self.optimizer = build_optimizer(cfg.optimizer, model_param_groups(model), self.peak_lr, cfg.weight_decay,
                                         tuple(cfg.betas), cfg.momentum, cfg.lars_eta)
        self.dtype = _autocast_dtype(cfg.precision, self.dist.device)
        self.scaler = torch.amp.GradScaler(enabled=self.dtype == torch.float16)
        self.engine = self._wrap(model)
        self.step = 0
        self._stop_requested = False
        self._writer = _tensorboard_writer(self.run_dir) if cfg.tensorboard and self.dist.is_main else None

    def _wrap(self, model: nn.Module) -> nn.Module:
        engine = model
        if sync_batchnorm_(model, self.dist) and self.dist.is_main:
            print("pathgen: BatchNorm layers synchronised across ranks (SyncBatchNorm)", flush=True)
        if self.dist.world_size > 1:
            device_ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            engine = DistributedDataParallel(model, device_ids=device_ids)
        if self.cfg.compile:
            engine = torch.compile(engine)
        return engine

    @property
    def checkpoint_path(self) -> Path:
        """Where the last checkpoint of this run lives."""
        return self.run_dir / CHECKPOINT

    def fit(self, resume: bool = False) -> dict:
        """Train to `total_steps` (continuing from the last checkpoint when `resume`); returns the last metrics."""
        if resume:
            self.load(self.checkpoint_path)
        previous = signal.signal(signal.SIGTERM, self._on_sigterm) if self.dist.is_main_thread else None
        bar = tqdm(total=self.total_steps, initial=self.step, disable=not (self.cfg.progress and self.dist.is_main),
                   unit="step", dynamic_ncols=True)
        last: dict = {}
        try:
            while self.step < self.total_steps and not self._stop_requested:
                last = self._run_epoch(bar) or last
            self.save()
        except KeyboardInterrupt:
            self.save()
            raise
        finally:
            bar.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return last

    def _on_sigterm(self, signum, frame) -> None:  # noqa: ANN001
        self._stop_requested = True  # finish the current step, checkpoint, and return

    def _loader(self, epoch: int, start_batch: int) -> DataLoader:
        self.sampler.set_epoch(epoch, start=start_batch * self.cfg.batch_size)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return DataLoader(self.dataset, batch_size=self.cfg.batch_size, sampler=self.sampler, drop_last=True,
                          num_workers=self.cfg.num_workers, pin_memory=self.dist.device.type == "cuda",
                          persistent_workers=False, collate_fn=self.collate_fn,
                          generator=torch.Generator().manual_seed(self.cfg.seed))

    def _run_epoch(self, bar: tqdm) -> dict:
        epoch, done_in_epoch = divmod(self.step, self.steps_per_epoch)
        loader = iter(self._loader(epoch, done_in_epoch * self.cfg.grad_accum))
        metrics: dict = {}
        while done_in_epoch < self.steps_per_epoch and self.step < self.total_steps and not self._stop_requested:
            started = time.perf_counter()
            metrics = self._train_step([next(loader) for _ in range(self.cfg.grad_accum)])
            done_in_epoch += 1
            bar.update(1)
            self._log(metrics, time.perf_counter() - started, bar)
            if self.step % self.cfg.checkpoint_every == 0:
                self.save()
        return metrics

    def _info(self) -> StepInfo:
        return StepInfo(self.step, self.total_steps, self.step / self.steps_per_epoch)

    def _train_step(self, micro_batches: list) -> dict:
        info = self._info()
        self._apply_schedules()
        totals: dict[str, float] = {}
        for index, batch in enumerate(micro_batches):
            sync = index == len(micro_batches) - 1 or self.dist.world_size == 1
            with (nullcontext() if sync else self.engine.no_sync()), self._autocast():
                outputs = self.engine(move_to(batch, self.dist.device), info)
            self._check_finite(outputs["loss"])
            self.scaler.scale(outputs["loss"] / len(micro_batches)).backward()
            for key, value in outputs.items():
                totals[key] = totals.get(key, 0.0) + float(value.detach()) / len(micro_batches)
        self._optimizer_step(info)
        self.step += 1
        if hasattr(self.model, "after_step"):
            self.model.after_step(self._info())
        return totals

    def _autocast(self):  # noqa: ANN202
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.dist.device.type, dtype=self.dtype)

    def _optimizer_step(self, info: StepInfo) -> None:
        self.scaler.unscale_(self.optimizer)
        if self.cfg.clip_grad:
            _clip_gradients(self.model, self.cfg.clip_grad, self.cfg.clip_mode)
        if hasattr(self.model, "before_optimizer_step"):
            self.model.before_optimizer_step(info)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)

    def _apply_schedules(self) -> None:
        warmup = round(self.cfg.warmup_epochs * self.steps_per_epoch)
        lr = warmup_cosine(self.step, self.total_steps, self.peak_lr, self.cfg.min_lr, warmup)
        wd = warmup_cosine(self.step, self.total_steps, self.cfg.weight_decay, self.cfg.weight_decay_end)
        for group in self.optimizer.param_groups:
            group["lr"] = (self.peak_lr if group.get("fixed_lr") else lr) * group.get("lr_scale", 1.0)
            if group.get("apply_wd_schedule", True):
                group["weight_decay"] = wd

    def _check_finite(self, loss: torch.Tensor) -> None:
        finite = torch.isfinite(loss.detach()).float()
        if self.dist.world_size > 1:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if finite.item() < 1:
            where = self.checkpoint_path if self.checkpoint_path.exists() else "none written yet"
            raise TrainingDiverged(f"loss is {loss.item()} at step {self.step}: training stopped; last good "
                                   f"checkpoint: {where} (lower the LR or use fp32 and resume from it)")

    def _log(self, metrics: dict, seconds: float, bar: tqdm) -> None:
        if not self.dist.is_main or (self.step % self.cfg.log_every and self.step != self.total_steps):
            return
        images = self.cfg.batch_size * self.cfg.grad_accum * self.dist.world_size
        record = {"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 4),
                  "lr": self.optimizer.param_groups[0]["lr"], "wd": self.optimizer.param_groups[0]["weight_decay"],
                  **{k: round(v, 6) for k, v in metrics.items()}, "images_per_s": round(images / seconds, 2)}
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / METRICS).open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in record.items():
                self._writer.add_scalar(key, value, self.step)
        bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{record['lr']:.2e}")

    def save(self) -> None:
        """Checkpoint everything needed to continue exactly (rank 0 writes; all ranks wait)."""
        if self.dist.is_main:
            save_checkpoint(self.checkpoint_path, {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step, "rng": rng_state(),
                "config": asdict(self.cfg)})
        self.dist.barrier()

    def load(self, path: Path) -> None:
        """Continue from a checkpoint: weights, optimizer, scaler, step and random states."""
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        set_rng_state(state["rng"])


def _tensorboard_writer(run_dir: Path):  # noqa: ANN202 -- SummaryWriter, imported lazily
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ValueError("train.tensorboard=true needs the tensorboard package (pip install tensorboard)") from err
    return SummaryWriter(str(run_dir / "tensorboard"))


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"train.precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return dtypes[precision]


def _clip_gradients(model: nn.Module, max_norm: float, mode: str) -> None:
    params = [p for p in model.parameters() if p.grad is not None]
    if mode == "global":
        torch.nn.utils.clip_grad_norm_(params, max_norm)
    elif mode == "per_param":
        for param in params:
            torch.nn.utils.clip_grad_norm_([param], max_norm)
    else:
        raise ValueError(f"train.clip_mode must be per_param or global, got {mode!r}")
