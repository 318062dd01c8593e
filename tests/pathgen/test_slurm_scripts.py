"""The shipped Slurm scripts: bash syntax, and the requeue path of the training script run for real on
CPU with stand-ins for srun / torchrun / scontrol / scancel: the time-limit signal → SIGTERM →
checkpoint → requeue → the requeued job resumes with --resume, each step logged once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pathgen.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((REPO / "scripts" / "slurm").glob("*.sbatch"))
FAKES = {
    "srun": 'while [ "${1#--}" != "$1" ]; do shift; done\nexec "$@"\n',  # drop srun's options, run the task
    "torchrun": 'while [ "$1" != "-m" ]; do shift; done\nshift\necho $$ > "$FAKE_DIR/train.pid"\n'
    'exec "$PYTHON" -m "$@"\n',
    "scontrol": 'if [ "$1" = show ]; then echo localhost; else echo "$*" >> "$FAKE_DIR/scontrol.log"; fi\n',
    "scancel": 'kill -TERM "$(cat "$FAKE_DIR/train.pid")"\n',
}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_slurm_scripts_parse_as_bash(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert script.read_text().startswith("#!/bin/bash\n") and "#SBATCH" in script.read_text()


def _fake_slurm(where: Path) -> dict[str, str]:
    bin_dir = where / "bin"
    bin_dir.mkdir(parents=True)
    for name, body in FAKES.items():
        (bin_dir / name).write_text("#!/bin/bash\n" + body)
        (bin_dir / name).chmod(0o755)
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_DIR": str(where),
        "PYTHON": sys.executable,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NUM_NODES": "1",
        "SLURM_JOB_NODELIST": "localhost",
        "GPUS_PER_NODE": "1",
    }


def _steps(run: Path) -> list[int]:
    path = run / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.mark.slow  # two real pathgen processes (~100 s on a loaded 2-core machine); test_train_safety covers SIGTERM
def test_time_limit_checkpoints_requeues_and_the_requeued_job_resumes(tiny_tiles, tmp_path):
    env = {
        **os.environ,
        **_fake_slurm(tmp_path / "slurm"),
        "OUT": str(tmp_path / "run"),
        "DATA": str(tiny_tiles),
        "CONFIG": str(REPO / "configs/ssl/simclr_tiny.yaml"),
        "COMMAND": "train-ssl",
    }
    tiny = [
        "backbone.img_size=32",
        "augment.global_size=32",
        "augment.local_size=16",
        "train.batch_size=8",
        "train.num_workers=0",
        "train.log_every=1",
        "train.checkpoint_every=100000",
        "train.device=cpu",
    ]
    script = str(REPO / "scripts/slurm/train_multinode.sbatch")
    job = subprocess.Popen(
        ["bash", script, *tiny, "train.epochs=100000", "train.max_steps=100000"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run = tmp_path / "run"
    deadline = time.monotonic() + 240
    while len(_steps(run)) < 3:
        assert job.poll() is None and time.monotonic() < deadline, job.communicate()[0] if job.poll() else "slow"
        time.sleep(0.2)
    job.send_signal(signal.SIGUSR1)  # what `#SBATCH --signal=B:USR1@300` sends before the time limit
    output = job.communicate(timeout=240)[0]
    assert job.returncode == 0, output
    assert (tmp_path / "slurm" / "scontrol.log").read_text() == "requeue 4242\n"
    stopped_at = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    assert 3 <= stopped_at < 100000 and _steps(run) == list(range(1, stopped_at + 1))
    (tmp_path / "slurm" / "scontrol.log").unlink()

    requeued = subprocess.run(
        ["bash", script, f"train.max_steps={stopped_at + 2}"],
        env=env,
        cwd=tmp_path / "slurm",
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert requeued.returncode == 0, requeued.stdout + requeued.stderr
    assert _steps(run) == list(range(1, stopped_at + 3))  # continued, each step once
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == stopped_at + 2
    assert not (tmp_path / "slurm" / "scontrol.log").exists()  # finished: not requeued
    assert (run / "model" / "model.safetensors").is_file()
