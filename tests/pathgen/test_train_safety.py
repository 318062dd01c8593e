"""Safe runs of the training loop: finite checks of gradients, weights and checkpoints; the metrics log
after a resume; temp files of a killed write; the run-folder lock; SIGTERM; plain progress lines; and
exact resume on two gloo processes with per-rank random states and a SIGTERM seen by one rank only."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from test_train import NoisyRegression, Regressor, _cfg, _free_port, _losses

from pathgen.finite import nonfinite_names
from pathgen.run_folder import RunFolderError, RunLock
from pathgen.run_log import ProgressReporter, format_progress
from pathgen.train import Trainer, TrainingDiverged, load_checkpoint


class NanGradients(Regressor):
    """A finite loss (0 added) whose gradient is NaN at one step: sqrt'(0) · 0."""

    def __init__(self, bad_step: int):
        super().__init__()
        self.bad_step = bad_step

    def forward(self, batch, info):
        out = super().forward(batch, info)
        if info.step == self.bad_step:
            out["loss"] = out["loss"] + torch.sqrt(self.linear.weight.sum() * 0)
        return out


class ExplodingUpdate(Regressor):
    """Finite loss and gradients; at one step an infinite gradient slipped in after the checks
    (a hook between the check and the update), so the update itself makes the weights infinite."""

    def __init__(self, bad_step: int):
        super().__init__()
        self.bad_step = bad_step

    def before_optimizer_step(self, info):
        if info.step == self.bad_step:
            self.linear.weight.grad.fill_(float("inf"))


def test_nan_gradients_with_a_finite_loss_stop_and_name_a_finite_checkpoint(tmp_path):
    trainer = Trainer(_cfg(checkpoint_every=2, grad_accum=1), NanGradients(bad_step=5), NoisyRegression(), tmp_path)
    with pytest.raises(TrainingDiverged, match=r"non-finite gradients at step 5.*last good checkpoint: .*last.pt"):
        trainer.fit()
    state = load_checkpoint(trainer.checkpoint_path)
    assert state["step"] == 4
    assert nonfinite_names({"model": state["model"], "optimizer": state["optimizer"]["state"]}) == []


def test_skip_mode_drops_the_bad_step_and_finishes(tmp_path):
    model = NanGradients(bad_step=5)
    handler = _ListHandler()
    logging.getLogger("pathgen").addHandler(handler)
    try:
        trainer = Trainer(_cfg(on_nonfinite="skip", grad_accum=1), model, NoisyRegression(), tmp_path)
        trainer.fit()
    finally:
        logging.getLogger("pathgen").removeHandler(handler)
    assert trainer.step == 24
    assert nonfinite_names(model.state_dict()) == []
    assert any("non-finite gradients at step 5: step skipped" in line for line in handler.lines)


def test_skip_mode_stops_after_too_many_bad_steps_in_a_row(tmp_path):
    class AlwaysNan(NanGradients):
        def forward(self, batch, info):
            self.bad_step = info.step
            return super().forward(batch, info)

    trainer = Trainer(_cfg(on_nonfinite="skip", max_skipped_steps=2), AlwaysNan(0), NoisyRegression(), tmp_path)
    with pytest.raises(TrainingDiverged, match=r"non-finite gradients at step 2 \(3 steps in a row\)"):
        trainer.fit()


def test_weights_made_infinite_by_the_update_stop_and_are_never_checkpointed(tmp_path):
    trainer = Trainer(
        _cfg(checkpoint_every=2, clip_grad=None, optimizer="sgd"),
        ExplodingUpdate(bad_step=5),
        NoisyRegression(),
        tmp_path,
    )
    with pytest.raises(TrainingDiverged, match=r"non-finite weights after the optimizer step at step 5.*last.pt"):
        trainer.fit()
    state = load_checkpoint(trainer.checkpoint_path)
    assert state["step"] == 4 and nonfinite_names(state["model"]) == []


def test_save_refuses_non_finite_weights_and_keeps_the_previous_checkpoint(tmp_path):
    model = Regressor()
    trainer = Trainer(_cfg(max_steps=2), model, NoisyRegression(), tmp_path)
    trainer.fit()
    with torch.no_grad():
        model.linear.bias.fill_(float("nan"))
    with pytest.raises(
        TrainingDiverged,
        match=r"1 non-finite tensors at step 2 \(first: model.linear.bias\): "
        r"checkpoint not written",
    ):
        trainer.save()
    assert nonfinite_names(load_checkpoint(trainer.checkpoint_path)["model"]) == []


class _HardKill(Exception):
    """Stands for SIGKILL: no handler runs, so nothing is saved."""


def test_metrics_hold_each_step_once_after_a_hard_kill_and_resume(tmp_path):
    torch.manual_seed(0)
    Trainer(_cfg(), Regressor(), NoisyRegression(), tmp_path / "straight").fit()
    reference = _losses(tmp_path / "straight")
    torch.manual_seed(0)
    trainer = Trainer(_cfg(checkpoint_every=4), Regressor(), NoisyRegression(), tmp_path / "killed")
    real_step = trainer._train_step

    def killed_at_step_6(batches):
        if trainer.step == 6:
            raise _HardKill
        return real_step(batches)

    trainer._train_step = killed_at_step_6
    with pytest.raises(_HardKill):
        trainer.fit()
    assert load_checkpoint(trainer.checkpoint_path)["step"] == 4  # steps 5 and 6 were logged, not checkpointed
    with (tmp_path / "killed" / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 7, "lo')  # the kill cut a line short
    stale = tmp_path / "killed" / "checkpoints" / ".last.pt.4242.tmp"
    stale.write_bytes(b"half a checkpoint")
    Trainer(_cfg(checkpoint_every=4), Regressor(), NoisyRegression(), tmp_path / "killed").fit(resume=True)
    steps = [json.loads(line)["step"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))
    resumed = _losses(tmp_path / "killed")
    for step in range(1, 13):
        assert resumed[step] == pytest.approx(reference[step], rel=1e-6, abs=1e-7), step
    assert not stale.exists()


def test_sigterm_mid_run_checkpoints_that_step_and_resumes_exactly(tmp_path):
    torch.manual_seed(0)
    Trainer(_cfg(), Regressor(), NoisyRegression(), tmp_path / "straight").fit()
    reference = _losses(tmp_path / "straight")
    torch.manual_seed(0)
    trainer = Trainer(_cfg(), Regressor(), NoisyRegression(), tmp_path / "stopped")
    real_step = trainer._train_step

    def preempted_in_step_7(batches):
        if trainer.step == 6:
            os.kill(os.getpid(), signal.SIGTERM)  # what Slurm sends before a preemption
        return real_step(batches)

    trainer._train_step = preempted_in_step_7
    trainer.fit()  # returns: the stop is not an error
    assert load_checkpoint(trainer.checkpoint_path)["step"] == 7
    Trainer(_cfg(), Regressor(), NoisyRegression(), tmp_path / "stopped").fit(resume=True)
    resumed = _losses(tmp_path / "stopped")
    assert sorted(resumed) == list(range(1, 13))
    for step in range(1, 13):
        assert resumed[step] == pytest.approx(reference[step], rel=1e-6, abs=1e-7), step


def test_a_second_run_into_a_locked_folder_fails_naming_it(tmp_path):
    run_dir = tmp_path / "run"
    with RunLock(run_dir):
        os_pid = os.getpid()
        # another open file description of the lock file conflicts, as a second process would
        handle = (run_dir / ".pathgen.lock").open("a+")
        import fcntl

        with pytest.raises(BlockingIOError):
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.close()
    assert (run_dir / ".pathgen.lock").read_text().startswith(f"pid {os_pid}")
    other = _hold_lock_in_another_process(run_dir, tmp_path / "ready")
    try:
        with pytest.raises(RunFolderError, match=rf"{run_dir}: in use by another run \(pid {other.pid} on"):
            Trainer(_cfg(max_steps=1), Regressor(), NoisyRegression(), run_dir).fit()
    finally:
        other.kill()  # a killed holder: the kernel drops its lock
        other.wait()
    Trainer(_cfg(max_steps=1), Regressor(), NoisyRegression(), run_dir).fit()


def _hold_lock_in_another_process(run_dir: Path, ready: Path) -> subprocess.Popen:
    """A process (importing no torch, so it starts fast) that holds the run folder's lock."""
    code = (
        "import sys, time, pathlib; from pathgen.run_folder import RunLock\n"
        "with RunLock(sys.argv[1]):\n    pathlib.Path(sys.argv[2]).write_text('locked'); time.sleep(120)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code, str(run_dir), str(ready)])
    _wait_for(ready)
    return process


def _wait_for(path: Path, seconds: float = 60.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.05)


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_progress_off_a_terminal_is_one_plain_line_per_log_every(tmp_path):
    handler = _ListHandler()
    logger = logging.getLogger("pathgen")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        Trainer(_cfg(progress=True, log_every=4), Regressor(), NoisyRegression(), tmp_path).fit()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    lines = [line for line in handler.lines if line.startswith("step ")]
    assert [line.split()[1] for line in lines] == ["4/12", "8/12", "12/12"]
    assert all("\r" not in line and " loss " in line and " lr " in line and " img/s ETA " in line for line in lines)
    assert lines[-1].endswith("ETA 0:00:00")


def test_progress_line_format_and_bar_only_when_asked():
    line = format_progress({"step": 20, "loss": 1.23456, "lr": 1e-4, "images_per_s": 512.04}, 300, 312.4)
    assert line == "step 20/300 loss 1.2346 lr 1.00e-04 512.0 img/s ETA 0:05:12"
    assert ProgressReporter(10, 0, enabled=True, use_bar=False).bar is None
    with_bar = ProgressReporter(10, 0, enabled=True, use_bar=True)
    assert with_bar.bar is not None
    with_bar.close()
    assert ProgressReporter(10, 0, enabled=False, use_bar=True).bar is None


# ---- two gloo processes: exact resume with per-rank randomness, SIGTERM on one rank, global mean loss


def _ddp_resume_worker(rank: int, port: int, root: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank)
    )
    root_dir = Path(root)
    cfg = _cfg(grad_accum=1, clip_grad=None, epochs=3)  # 64 samples / (2 × 8): 4 steps per epoch, 12 in all

    def model() -> Regressor:
        torch.manual_seed(0)
        regressor = Regressor()
        regressor.dropout.p = 0.3  # per-rank randomness, as drop-path draws per rank
        return regressor

    straight = model()
    trainer = Trainer(cfg, straight, NoisyRegression(), root_dir / "straight")
    local_losses = _record_local_losses(trainer)
    trainer.fit()
    torch.save({"weights": straight.state_dict(), "local": local_losses}, root_dir / f"straight{rank}.pt")

    trainer = Trainer(cfg, model(), NoisyRegression(), root_dir / "stopped")
    real_step = trainer._train_step

    def sigterm_on_rank_1_in_step_6(batches):
        if rank == 1 and trainer.step == 5:
            trainer._on_sigterm(signal.SIGTERM, None)  # Slurm signalled this rank only
        return real_step(batches)

    trainer._train_step = sigterm_on_rank_1_in_step_6
    trainer.fit()
    stopped_at = trainer.step
    resumed = model()
    trainer = Trainer(cfg, resumed, NoisyRegression(), root_dir / "stopped")
    trainer.fit(resume=True)
    torch.save({"weights": resumed.state_dict(), "stopped_at": stopped_at}, root_dir / f"resumed{rank}.pt")
    torch.distributed.destroy_process_group()


def _record_local_losses(trainer: Trainer) -> dict:
    losses: dict = {}
    real_step = trainer._train_step

    def step(batches):
        metrics = real_step(batches)
        losses[trainer.step] = metrics["loss"]
        return metrics

    trainer._train_step = step
    return losses


def test_exact_resume_on_two_gloo_processes_with_per_rank_dropout(tmp_path):
    mp.spawn(_ddp_resume_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    straight = [torch.load(tmp_path / f"straight{r}.pt", weights_only=True) for r in (0, 1)]
    resumed = [torch.load(tmp_path / f"resumed{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["stopped_at"] for r in resumed] == [6, 6]  # both ranks stopped after the same step
    assert load_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.pt")["step"] == 12
    for key, value in straight[0]["weights"].items():
        torch.testing.assert_close(resumed[0]["weights"][key], value, rtol=0, atol=0)
        torch.testing.assert_close(resumed[1]["weights"][key], value, rtol=0, atol=0)
    logged = _losses(tmp_path / "straight")
    local0, local1 = straight[0]["local"], straight[1]["local"]
    assert local0[3] != pytest.approx(local1[3])  # the ranks saw different samples
    for step in range(1, 13):
        assert logged[step] == pytest.approx((local0[step] + local1[step]) / 2, rel=1e-5), step
    steps = [json.loads(line)["step"] for line in (tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))
