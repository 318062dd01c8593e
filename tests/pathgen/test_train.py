"""The shared training loop: exact resume, non-finite loss handling, DDP gradient sync, schedules."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.utils.data import Dataset

from pathgen.schedules import warmup_cosine
from pathgen.train import TrainConfig, Trainer, TrainingDiverged, load_checkpoint


class NoisyRegression(Dataset):
    """y = x·w + noise, where each sample's noise is drawn from (epoch, index): augmentation-like."""

    def __init__(self, n: int = 64, dim: int = 8):
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, dim, generator=generator)
        self.w = torch.randn(dim, 1, generator=generator)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        noise = torch.randn(1, generator=torch.Generator().manual_seed(self.epoch * 10_000 + index))
        return self.x[index], self.x[index] @ self.w + 0.1 * noise


class Regressor(nn.Module):
    def __init__(self, dim: int = 8, nan_at_step: int | None = None):
        super().__init__()
        self.linear = nn.Linear(dim, 1)
        self.dropout = nn.Dropout(0.1)  # model-side randomness, restored from the checkpoint's RNG
        self.nan_at_step = nan_at_step

    def forward(self, batch, info):
        x, y = batch
        loss = ((self.linear(self.dropout(x)) - y) ** 2).mean()
        if info.step == self.nan_at_step:
            loss = loss * float("nan")
        return {"loss": loss}


def _cfg(**overrides) -> TrainConfig:
    values = {
        "epochs": 3,
        "batch_size": 8,
        "grad_accum": 2,
        "lr": 0.05,
        "lr_scaling": "none",
        "warmup_epochs": 0.5,
        "weight_decay": 0.01,
        "weight_decay_end": 0.1,
        "clip_grad": 1.0,
        "clip_mode": "global",
        "num_workers": 0,
        "checkpoint_every": 1000,
        "log_every": 1,
        "progress": False,
        "device": "cpu",
    }
    values.update(overrides)
    return TrainConfig(**values)


def _losses(run_dir: Path) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {record["step"]: record["loss"] for record in map(json.loads, lines)}


def test_resume_after_a_kill_continues_the_same_loss_curve(tmp_path):
    torch.manual_seed(0)
    Trainer(_cfg(), Regressor(), NoisyRegression(), tmp_path / "straight").fit()
    reference = _losses(tmp_path / "straight")
    assert len(reference) == 12  # 64 samples / (8 × 2) = 4 steps per epoch, 3 epochs

    torch.manual_seed(0)
    trainer = Trainer(_cfg(), Regressor(), NoisyRegression(), tmp_path / "killed")
    real_step = trainer._train_step

    def killed_at_step_6(batches):
        if trainer.step == 6:
            raise KeyboardInterrupt
        return real_step(batches)

    trainer._train_step = killed_at_step_6
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")["step"] == 6
    Trainer(_cfg(), Regressor(), NoisyRegression(), tmp_path / "killed").fit(resume=True)
    resumed = _losses(tmp_path / "killed")
    assert sorted(resumed) == list(range(1, 13))
    for step in range(1, 13):
        assert resumed[step] == pytest.approx(reference[step], rel=1e-6, abs=1e-7), step


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(_cfg(checkpoint_every=2), Regressor(nan_at_step=5), NoisyRegression(), tmp_path)
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 5.*last good checkpoint: .*last.pt"):
        trainer.fit()
    assert load_checkpoint(trainer.checkpoint_path)["step"] == 4


def test_schedules_and_linear_lr_scaling(tmp_path):
    assert warmup_cosine(0, 100, 1.0, 0.0, warmup_steps=10) == 0.0
    assert warmup_cosine(5, 100, 1.0, 0.0, warmup_steps=10) == 0.5
    assert warmup_cosine(10, 100, 1.0, 0.0, warmup_steps=10) == 1.0
    assert warmup_cosine(55, 100, 1.0, 0.0, warmup_steps=10) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 1.0, 0.1) == pytest.approx(0.1)
    trainer = Trainer(
        _cfg(lr=0.1, lr_scaling="linear", batch_size=16, grad_accum=4), Regressor(), NoisyRegression(), tmp_path
    )
    assert trainer.peak_lr == pytest.approx(0.1 * 64 / 256)


def test_too_little_data_for_one_step_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="fewer than one step"):
        Trainer(_cfg(batch_size=128), Regressor(), NoisyRegression(), tmp_path)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.manual_seed(0)
    model = Regressor()
    model.dropout.p = 0.0
    trainer = Trainer(_cfg(epochs=1, grad_accum=1, clip_grad=None), model, NoisyRegression(), out_dir)
    trainer.fit()
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, Path(out_dir) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_ddp_on_two_cpu_processes_synchronises_gradients(tmp_path):
    mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "ddp" / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "ddp" / "rank1.pt", weights_only=True)
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0)  # in lock-step
    # rank r takes samples r, r+2, … of the epoch order, so a DDP step of 2 × 8 sees the same 16 samples as one
    # process accumulating two micro-batches of 8: averaged gradients make them land on the same weights
    torch.manual_seed(0)
    single = Regressor()
    single.dropout.p = 0.0
    initial = {k: v.clone() for k, v in single.state_dict().items()}
    Trainer(_cfg(epochs=1, grad_accum=2, clip_grad=None), single, NoisyRegression(), tmp_path / "single").fit()
    assert _ddp_steps(tmp_path / "ddp") == _ddp_steps(tmp_path / "single") == 4
    for key, value in single.state_dict().items():
        torch.testing.assert_close(rank0[key], value, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(value, initial[key])  # training moved the weights


def _ddp_steps(run_dir: Path) -> int:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"]
