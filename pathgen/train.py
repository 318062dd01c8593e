"""The one training loop: SSL, VAE and diffusion training all run through `Trainer.fit`.

It runs on CPU, one GPU, or many GPUs/nodes under `torchrun` (DDP), with bf16/fp16 autocast on
GPU, gradient accumulation, per-step cosine LR with warm-up and a cosine weight-decay schedule,
gradient clipping, checkpoints every N steps and at exit, exact resume (model, optimizer,
scaler, every rank's RNG and the data position), gradients and parameters checked before and after
each optimizer step (skip the step or stop, `on_nonfinite`; a checkpoint with a non-finite tensor
is never written, so the one the stop message names is finite), a SIGTERM stop agreed by every rank,
a progress bar on a terminal or plain log lines, and a JSONL log of the global mean metrics.

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

from pathgen.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from pathgen.config import check, one_of
from pathgen.data.tiles import ResumableSampler
from pathgen.distributed import (
    DistContext,
    any_rank,
    gather_objects,
    mean_over_ranks,
    setup_distributed,
    sync_batchnorm_,
)
from pathgen.finite import grads_finite, nonfinite_names, params_finite
from pathgen.optim import OPTIMIZERS, build_optimizer, model_param_groups
from pathgen.run_folder import RunLock, remove_stale_temp_files
from pathgen.run_log import ProgressReporter, get_logger, truncate_metrics
from pathgen.schedules import StepInfo, warmup_cosine

CHECKPOINT = "checkpoints/last.pt"
METRICS = "metrics.jsonl"


class TrainingDiverged(RuntimeError):
    """The loss, gradients or weights became NaN or infinite; the message names the last finite checkpoint."""


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
    on_nonfinite: str = "stop"  # stop | skip: a step whose loss or gradients are not finite stops the run or is dropped
    max_skipped_steps: int = 10  # skip mode: stop after this many dropped steps in a row
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
        check(
            self.clip_grad is None or self.clip_grad > 0, "clip_grad", f"must be positive or null, got {self.clip_grad}"
        )
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
        raise ValueError(
            f"{n_items} items are fewer than one step of {cfg.batch_size} × {cfg.grad_accum} "
            f"× {world_size} processes; lower train.batch_size"
        )
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

    def __init__(
        self,
        cfg: TrainConfig,
        model: nn.Module,
        dataset: Dataset,
        run_dir: str | Path,
        sampler_weights=None,
        collate_fn=None,
    ):  # noqa: ANN001
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
        self.optimizer = build_optimizer(
            cfg.optimizer,
            model_param_groups(model),
            self.peak_lr,
            cfg.weight_decay,
            tuple(cfg.betas),
            cfg.momentum,
            cfg.lars_eta,
        )
        self.dtype = _autocast_dtype(cfg.precision, self.dist.device)
        self.scaler = torch.amp.GradScaler(enabled=self.dtype == torch.float16)
        self.engine = self._wrap(model)
        self.step = 0
        self._stop_requested = False
        self._skipped_in_a_row = 0
        if cfg.on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"train.on_nonfinite must be stop or skip, got {cfg.on_nonfinite!r}")
        self._writer = _tensorboard_writer(self.run_dir) if cfg.tensorboard and self.dist.is_main else None

    def _wrap(self, model: nn.Module) -> nn.Module:
        engine = model
        if sync_batchnorm_(model, self.dist):
            get_logger().info("BatchNorm layers synchronised across ranks (SyncBatchNorm)")
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
        """Train to `total_steps` (continuing from the last checkpoint when `resume`); returns the last metrics.

        Rank 0 holds the run folder's lock throughout and first deletes temp files a killed checkpoint
        write left behind."""
        with RunLock(self.run_dir) if self.dist.is_main else nullcontext():
            if self.dist.is_main:
                for path in remove_stale_temp_files(self.run_dir):
                    get_logger().info(f"removed {path}, left by a killed checkpoint write")
            return self._fit(resume)

    def _fit(self, resume: bool) -> dict:
        if resume:
            self.load(self.checkpoint_path)
        previous = signal.signal(signal.SIGTERM, self._on_sigterm) if self.dist.is_main_thread else None
        progress = ProgressReporter(self.total_steps, self.step, self.cfg.progress and self.dist.is_main)
        last: dict = {}
        try:
            while self.step < self.total_steps and not self._stop_requested:
                last = self._run_epoch(progress) or last
            self.save()
        except KeyboardInterrupt:
            self.save()
            raise
        finally:
            progress.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return last

    def _on_sigterm(self, signum, frame) -> None:  # noqa: ANN001
        self._stop_requested = True  # finish the current step, checkpoint, and return

    def _loader(self, epoch: int, start_batch: int) -> DataLoader:
        self.sampler.set_epoch(epoch, start=start_batch * self.cfg.batch_size)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return DataLoader(
            self.dataset,
            batch_size=self.cfg.batch_size,
            sampler=self.sampler,
            drop_last=True,
            num_workers=self.cfg.num_workers,
            pin_memory=self.dist.device.type == "cuda",
            persistent_workers=False,
            collate_fn=self.collate_fn,
            generator=torch.Generator().manual_seed(self.cfg.seed),
        )

    def _run_epoch(self, progress: ProgressReporter) -> dict:
        epoch, done_in_epoch = divmod(self.step, self.steps_per_epoch)
        loader = iter(self._loader(epoch, done_in_epoch * self.cfg.grad_accum))
        metrics: dict = {}
        while done_in_epoch < self.steps_per_epoch and self.step < self.total_steps and not self._stop_agreed():
            started = time.perf_counter()
            metrics = self._train_step([next(loader) for _ in range(self.cfg.grad_accum)])
            done_in_epoch += 1
            progress.advance()
            self._log(metrics, time.perf_counter() - started, progress)
            if self.step % self.cfg.checkpoint_every == 0:
                self.save()
        return metrics

    def _stop_agreed(self) -> bool:
        """Whether any rank got SIGTERM: every rank then stops after the same step (and checkpoints it)."""
        self._stop_requested = self._any_rank(self._stop_requested)
        return self._stop_requested

    def _any_rank(self, flag: bool) -> bool:
        return any_rank(flag, self.dist)

    def _info(self) -> StepInfo:
        return StepInfo(self.step, self.total_steps, self.step / self.steps_per_epoch)

    def _train_step(self, micro_batches: list) -> dict:
        info = self._info()
        self._apply_schedules()
        totals: dict[str, float] = {}
        for index, batch in enumerate(micro_batches):
            sync = index == len(micro_batches) - 1 or self.dist.world_size == 1
            with nullcontext() if sync else self.engine.no_sync(), self._autocast():
                outputs = self.engine(move_to(batch, self.dist.device), info)
            if self.cfg.on_nonfinite == "stop":
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
        # fp16's GradScaler skips steps with inf gradients itself (that is how it calibrates its scale)
        if not self.scaler.is_enabled() and self._any_rank(not grads_finite(self.model)):
            self.optimizer.zero_grad(set_to_none=True)
            self._drop_step()
            return
        self._skipped_in_a_row = 0
        if self.cfg.clip_grad:
            _clip_gradients(self.model, self.cfg.clip_grad, self.cfg.clip_mode)
        if hasattr(self.model, "before_optimizer_step"):
            self.model.before_optimizer_step(info)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self._any_rank(not params_finite(self.model)):
            raise TrainingDiverged(
                f"non-finite weights after the optimizer step at step {self.step}: training "
                f"stopped; {self._last_good()}"
            )

    def _drop_step(self) -> None:
        """Non-finite gradients: stop, or (on_nonfinite=skip) leave the weights as they are this step."""
        self._skipped_in_a_row += 1
        if self.cfg.on_nonfinite == "stop" or self._skipped_in_a_row > self.cfg.max_skipped_steps:
            reason = "" if self.cfg.on_nonfinite == "stop" else f" ({self._skipped_in_a_row} steps in a row)"
            raise TrainingDiverged(
                f"non-finite gradients at step {self.step}{reason}: training stopped; {self._last_good()}"
            )
        get_logger().warning(f"non-finite gradients at step {self.step}: step skipped (train.on_nonfinite=skip)")

    def _last_good(self) -> str:
        where = self.checkpoint_path if self.checkpoint_path.exists() else "none written yet"
        return f"last good checkpoint: {where} (all its tensors finite; lower the LR or use fp32 and resume from it)"

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
            raise TrainingDiverged(f"loss is {loss.item()} at step {self.step}: training stopped; {self._last_good()}")

    def _log(self, metrics: dict, seconds: float, progress: ProgressReporter) -> None:
        if self.step % self.cfg.log_every and self.step != self.total_steps:
            return
        metrics = mean_over_ranks(metrics, self.dist)  # every rank reaches this at the same steps
        if not self.dist.is_main:
            return
        images = self.cfg.batch_size * self.cfg.grad_accum * self.dist.world_size
        record = {
            "step": self.step,
            "epoch": round(self.step / self.steps_per_epoch, 4),
            "lr": self.optimizer.param_groups[0]["lr"],
            "wd": self.optimizer.param_groups[0]["weight_decay"],
            **{k: round(v, 6) for k, v in metrics.items()},
            "images_per_s": round(images / seconds, 2),
        }
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / METRICS).open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in record.items():
                self._writer.add_scalar(key, value, self.step)
        progress.report(record)

    def save(self) -> None:
        """Checkpoint everything needed to continue exactly (rank 0 writes; all ranks wait).

        Refuses (TrainingDiverged) to write weights or optimizer states holding NaN or inf, so the
        checkpoint on disk is always one a run can continue from."""
        rng_states = gather_objects(rng_state(), self.dist)  # each rank draws its own drop-path / dropout masks
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "rng": rng_states[0],
            "rng_per_rank": rng_states,
            "world_size": self.dist.world_size,
            "config": asdict(self.cfg),
        }
        bad = (
            nonfinite_names({"model": state["model"], "optimizer": state["optimizer"]["state"]})
            if self.dist.is_main
            else []
        )
        if self._any_rank(bool(bad)):
            first = f" (first: {bad[0]})" if bad else ""
            raise TrainingDiverged(
                f"{len(bad) or 'some'} non-finite tensors at step {self.step}{first}: "
                f"checkpoint not written; {self._last_good()}"
            )
        if self.dist.is_main:
            save_checkpoint(self.checkpoint_path, state)
        self.dist.barrier()

    def load(self, path: Path) -> None:
        """Continue from a checkpoint: weights, optimizer, scaler, step and this rank's random states;
        metrics logged after the checkpoint's step (by the run that was killed) are dropped."""
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        per_rank = state.get("rng_per_rank") or [state["rng"]]
        if len(per_rank) != self.dist.world_size:
            get_logger().warning(
                f"{path} was written by {len(per_rank)} processes, resumed on "
                f"{self.dist.world_size}: random draws differ from an uninterrupted run"
            )
        set_rng_state(per_rank[self.dist.rank % len(per_rank)])
        if self.dist.is_main:
            truncate_metrics(self.run_dir / METRICS, self.step)


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
