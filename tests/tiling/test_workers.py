"""The tiling process pool: results, errors and crashes each reach the task they belong to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tiling.reader import SlideError
from tiling.workers import (
    TILING_PRELOAD,
    ProcessPool,
    TaskError,
    WorkerCrashed,
    exit_description,
    portable_error,
)

REPO = Path(__file__).resolve().parents[2]
PRELOAD = TILING_PRELOAD  # what the tiling pipeline preloads: workers start in milliseconds


def square(x: int) -> int:
    return x * x


def fail_as_slide(name: str) -> None:
    raise SlideError(f"/slides/{name}.svs", "no resolution (µm/px) in the file")


def exit_hard(code: int) -> None:
    os._exit(code)


def sleep_then(value: int) -> int:
    time.sleep(value / 10)
    return value


def report_pid(_: object) -> int:
    return os.getpid()


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def pid_after_go(args: tuple[str, str, float]) -> int:
    """Create the file `ready`, wait for the file `go`, then as pid_after(seconds)."""
    ready, go, seconds = args
    Path(ready).touch()
    while not os.path.exists(go):
        time.sleep(0.005)
    return pid_after(seconds)


def parent_and_preloaded(_: object) -> tuple[int, bool]:
    return os.getppid(), "tiling.tile_slide" in sys.modules


class _Unpicklable(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def raise_unpicklable(_: object) -> None:
    raise _Unpicklable(1, 2)


def _drain(pool: ProcessPool, futures: list) -> None:
    deadline = time.monotonic() + 60
    while not all(f.done() for f in futures):
        assert time.monotonic() < deadline, "pool did not finish"
        pool.wait_any(timeout=1.0)


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_results_and_errors_reach_their_own_tasks(workers):
    pool = ProcessPool(workers, preload=PRELOAD)
    try:
        futures = [pool.submit(square, i) if i % 3 else pool.submit(fail_as_slide, f"s{i}") for i in range(12)]
        _drain(pool, futures)
    finally:
        pool.shutdown()
    for i, future in enumerate(futures):
        if i % 3:
            assert future.result() == i * i
        else:
            err = future.exception()
            assert isinstance(err, SlideError) and err.path == f"/slides/s{i}.svs"
            assert str(err) == f"/slides/s{i}.svs: no resolution (µm/px) in the file"


def test_a_task_that_follows_another_runs_on_that_tasks_worker(tmp_path):
    """A slow and a fast chain queued interleaved: in first-come order the fast worker, free first,
    would take the slow chain's next task and the slow worker then the fast chain's; each keeps
    to its own chain instead. The chains' first tasks start together once both workers hold one and
    every task is queued, so neither how fast this process submits nor how fast a worker starts (on a
    loaded machine) can decide it; the slow chain's first task ends well before the fast chain's last
    (0.4 s against 0.8 s)."""
    go = tmp_path / "go"
    pool = ProcessPool(2, preload=PRELOAD)
    try:
        chains = {"slow": [0.4, 0.4], "fast": [0.1] * 8}
        futures = {name: [] for name in chains}
        for step in range(8):
            for name, seconds in chains.items():
                if step < len(seconds):
                    follows = (name, step - 1) if step else None
                    first = (str(tmp_path / name), str(go), seconds[step])
                    fn, arg = (pid_after, seconds[step]) if step else (pid_after_go, first)
                    futures[name].append(pool.submit(fn, arg, key=(name, step), follows=follows))
        deadline = time.monotonic() + 60
        while not all((tmp_path / name).exists() for name in chains):
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.005)
        go.touch()
        _drain(pool, [f for chain in futures.values() for f in chain])
    finally:
        pool.shutdown()
    fast, slow = ({f.result() for f in futures[name]} for name in ("fast", "slow"))
    assert len(fast) == 1 and len(slow) == 1 and fast != slow


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_a_worker_exit_fails_only_its_task_and_the_pool_goes_on(workers):
    pool = ProcessPool(workers, preload=PRELOAD)
    try:
        futures = [pool.submit(sleep_then, 1) for _ in range(workers)]
        crash = pool.submit(exit_hard, 7)
        futures += [pool.submit(square, i) for i in range(2 * workers)]
        _drain(pool, futures + [crash])
        assert [f.result() for f in futures] == [1] * workers + [i * i for i in range(2 * workers)]
        assert isinstance(crash.exception(), WorkerCrashed)
        assert "exit status 7" in str(crash.exception())
        after = pool.submit(square, 9)
        _drain(pool, [after])
        assert after.result() == 81 and len(pool.pids) == workers
    finally:
        pool.shutdown()


@pytest.mark.parametrize("workers", [2, 4])
def test_sigkill_of_a_busy_worker_fails_only_its_task(workers):
    pool = ProcessPool(workers, preload=PRELOAD)
    try:
        slow = [pool.submit(sleep_then, 12) for _ in range(workers)]  # 1.2 s each: every worker is busy
        others = [pool.submit(square, i) for i in range(4)]
        victim = pool.pids[0]
        time.sleep(0.3)
        os.kill(victim, signal.SIGKILL)
        _drain(pool, slow + others)
    finally:
        pool.shutdown()
    assert isinstance(slow[0].exception(), WorkerCrashed) and "killed by SIGKILL" in str(slow[0].exception())
    assert [f.result() for f in slow[1:]] == [12] * (workers - 1)
    assert [f.result() for f in others] == [0, 1, 4, 9]


def test_an_error_that_cannot_cross_processes_still_names_itself():
    pool = ProcessPool(2, preload=PRELOAD)
    try:
        future = pool.submit(raise_unpicklable, None)
        _drain(pool, [future])
    finally:
        pool.shutdown()
    assert isinstance(future.exception(), TaskError) and str(future.exception()) == "_Unpicklable: 1/2"
    assert portable_error(ValueError("x")).args == ("x",)


def test_exit_description():
    assert exit_description(-9) == "killed by SIGKILL"
    assert exit_description(3) == "exit status 3"
    assert exit_description(None) == "still running"


def test_workers_are_not_forked_with_the_parents_open_files(tmp_path):
    held = os.open(tmp_path / "lock", os.O_RDWR | os.O_CREAT)
    pool = ProcessPool(2, preload=PRELOAD)
    try:
        futures = [pool.submit(report_pid, None) for _ in range(2)]
        _drain(pool, futures)
        for future in futures:
            links = [
                os.readlink(f"/proc/{future.result()}/fd/{fd}") for fd in os.listdir(f"/proc/{future.result()}/fd")
            ]
            assert str(tmp_path / "lock") not in links
    finally:
        pool.shutdown()
        os.close(held)


_ORPHAN_SCRIPT = """
import sys, time
from tests.tiling.test_workers import sleep_then
from tiling.workers import ProcessPool
pool = ProcessPool(2, preload=("tiling.tile_slide",))
for _ in range(2):
    pool.submit(sleep_then, 600)
print(" ".join(map(str, pool.pids)), flush=True)
time.sleep(600)
"""


def test_workers_die_when_the_parent_is_killed():
    proc = subprocess.Popen(
        [sys.executable, "-c", _ORPHAN_SCRIPT],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(pid_alive(pid) for pid in pids)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(pid) for pid in pids)


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its reaper counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


_EARLY_SERVER_SCRIPT = """
import sys
from multiprocessing import forkserver
from tests.tiling.test_workers import _drain, parent_and_preloaded
from tiling.workers import TILING_PRELOAD, ProcessPool, start_fork_server
start_fork_server(TILING_PRELOAD)
server_pid = forkserver._forkserver._forkserver_pid
assert "tiling.tile_slide" not in sys.modules  # this process has not imported them: the server does
pool = ProcessPool(2, preload=TILING_PRELOAD)
futures = [pool.submit(parent_and_preloaded, None) for _ in range(2)]
_drain(pool, futures)
pool.shutdown()
print(server_pid, *[f.result() for f in futures], flush=True)
"""


def test_a_fork_server_started_early_is_the_one_pool_workers_come_from():
    """The tile command starts the fork server before its own imports; the pool must then fork
    its workers from that server, with the tiling modules already imported there."""
    out = subprocess.run(
        [sys.executable, "-c", _EARLY_SERVER_SCRIPT],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    server_pid, workers = out.stdout.strip().split(" ", 1)
    assert server_pid.isdigit() and workers == f"({server_pid}, True) ({server_pid}, True)"
