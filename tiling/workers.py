"""A small process pool that knows which task each worker holds, so a crash fails only that task.

Why not `concurrent.futures.ProcessPoolExecutor`: when one of its workers dies (a segfault in a
slide decoder, the kernel's OOM killer, SIGKILL), the whole executor is broken and every task in
flight fails with it, without saying which task the dead worker held. Here the parent hands each
task to one idle worker over that worker's own pipe, so it always knows what a worker held when
its process sentinel fires: that task alone gets a `WorkerCrashed` error, and a new worker takes
the dead one's place.

Workers are started from a fork server (`multiprocessing` "forkserver"), never forked from the
parent: a forked child would inherit the parent's open slide-lock files and keep the locks held
after the parent was killed. Measured here (2 workers, tiling modules preloaded): fork 0.01 s,
forkserver 0.74 s for the first start in a process and 0.02 s after, spawn 1.4 s every time.
Workers die with the parent: each blocks a thread on a pipe only the parent writes to and exits
when it reads end-of-file, and on Linux also asks the kernel for SIGKILL when its parent dies.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait

_PR_SET_PDEATHSIG = 1
_JOIN_TIMEOUT_S = 5.0
TILING_PRELOAD = ("tiling.tile_slide", "tiling.pipeline")  # what tiling workers import: once, in the fork server


class WorkerCrashed(RuntimeError):
    """The worker process running a task died before it answered; `how` says how it ended."""

    def __init__(self, how: str):
        self.how = how
        super().__init__(f"the worker process died while running this task ({how})")

    def __reduce__(self) -> tuple:
        """Rebuild from `how` (the constructor takes it, not the message)."""
        return type(self), (self.how,)


class TaskError(RuntimeError):
    """A task raised an exception that could not cross the process boundary as itself."""


def exit_description(exitcode: int | None) -> str:
    """How a process ended, in words: "killed by SIGKILL" or "exit status 3"."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


@dataclass(eq=False)  # a queued task is itself, however alike its fields (the queue removes by identity)
class _Queued:
    future: Future
    fn: Callable
    arg: object
    key: object = None  # names this task, for a later task that `follows` it
    follows: object = None  # key of the task whose worker should run this one, if that worker is free


@dataclass
class _Worker:
    process: mp.process.BaseProcess
    tasks: Connection  # parent's end of the duplex task pipe
    alive: Connection  # parent's write end of the pipe whose EOF tells the worker to exit
    task: _Queued | None = None
    last_key: object = None  # key of the last task it was given


def start_fork_server(preload: Iterable[str]) -> None:
    """Start the fork server now, importing `preload` in it, and return without waiting for it.

    A `ProcessPool` created later in this process uses this same server, so its workers start in
    milliseconds. The tile command calls it first thing, so that the server's imports (~0.6 s)
    run on another core while this process imports the same modules for itself.
    """
    mp.get_context("forkserver").set_forkserver_preload(list(preload))
    forkserver.ensure_running()


class ProcessPool:
    """Runs `fn(arg)` tasks in `n_workers` processes; results and errors come back as Futures.

    Not thread-safe and without a background thread: the caller drives it with `wait_any`, which
    is also when finished tasks are collected and queued tasks handed out.
    """

    def __init__(
        self, n_workers: int, initializer: Callable | None = None, initargs: tuple = (), preload: Iterable[str] = ()
    ):
        if n_workers < 1:
            raise ValueError(f"a process pool needs at least one worker, got {n_workers}")
        self._context = mp.get_context("forkserver")
        self._context.set_forkserver_preload(list(preload))
        self._initializer, self._initargs = initializer, initargs
        self._queue: deque[_Queued] = deque()
        self._settled: list[Future] = []  # failed while being handed out; returned by the next wait_any
        self._workers = [self._start_worker() for _ in range(n_workers)]

    def _start_worker(self) -> _Worker:
        parent_tasks, child_tasks = self._context.Pipe(duplex=True)
        child_alive, parent_alive = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_worker_main,
            daemon=True,
            name="pathgen-tile-worker",
            args=(child_tasks, child_alive, self._initializer, self._initargs),
        )
        process.start()
        child_tasks.close()  # only the worker holds these ends now, so EOF means what it says
        child_alive.close()
        return _Worker(process, parent_tasks, parent_alive)

    @property
    def pids(self) -> list[int]:
        """Process ids of the current workers."""
        return [worker.process.pid for worker in self._workers]

    def submit(self, fn: Callable, arg: object, key: object = None, follows: object = None) -> Future:
        """Queue `fn(arg)`; `fn` must be importable by name and `arg` picklable.

        A task that `follows` the task named `key` goes, when both are free, to the worker that
        ran that one, which still holds what it read (a slide's decoded tiles: the next shard's
        first rows share slide tiles with the last shard's); a free worker takes the oldest task
        no other worker is due, so each worker keeps to one chain of tasks.
        """
        future: Future = Future()
        self._queue.append(_Queued(future, fn, arg, key, follows))
        self._dispatch()
        return future

    def _next_for(self, worker: _Worker) -> _Queued:
        """The queued task `worker` should run next (and take it off the queue)."""
        others = {w.last_key for w in self._workers if w is not worker and w.last_key is not None}
        chosen = next((t for t in self._queue if t.follows is not None and t.follows == worker.last_key), None)
        if chosen is None:
            chosen = next((t for t in self._queue if t.follows is None or t.follows not in others), self._queue[0])
        self._queue.remove(chosen)
        return chosen

    def _dispatch(self) -> None:
        for worker in list(self._workers):
            if not self._queue:
                return
            if worker.task is not None:
                continue
            if not worker.process.is_alive():  # died idle, e.g. right after its last reply
                worker = self._replace(worker)
            task = self._next_for(worker)
            future, fn, arg = task.future, task.fn, task.arg
            worker.last_key = task.key
            try:
                worker.tasks.send((fn, arg))
            except OSError as err:  # the worker died between the check and the send
                self._replace(worker)
                future.set_exception(WorkerCrashed(f"gone before it took the task: {err}"))
                self._settled.append(future)
            except (pickle.PicklingError, TypeError, AttributeError) as err:
                future.set_exception(TaskError(f"cannot send the task to a worker: {type(err).__name__}: {err}"))
                self._settled.append(future)
            else:
                worker.task = task

    def wait_any(self, timeout: float | None = None) -> list[Future]:
        """Block until at least one task finishes (or `timeout`); return the Futures that did."""
        if self._settled:
            settled, self._settled = self._settled, []
            return settled
        busy = {w.tasks: w for w in self._workers if w.task is not None}
        busy.update({w.process.sentinel: w for w in self._workers if w.task is not None})
        if not busy:
            return []
        finished = []
        for ready in wait(list(busy), timeout):
            worker = busy[ready]
            if worker.task is not None:
                finished.append(self._collect(worker))
        self._dispatch()
        return finished

    def _collect(self, worker: _Worker) -> Future:
        future = worker.task.future
        worker.task = None
        try:
            ok, value = worker.tasks.recv()
        except (EOFError, OSError):  # the process died (the sentinel or the pipe told us first)
            worker.process.join(_JOIN_TIMEOUT_S)
            how = exit_description(worker.process.exitcode)
            self._replace(worker)
            future.set_exception(WorkerCrashed(how))
            return future
        except Exception as err:  # noqa: BLE001 -- a reply the parent cannot unpickle fails its task only
            ok, value = False, TaskError(f"cannot read the worker's reply: {type(err).__name__}: {err}")
        (future.set_result if ok else future.set_exception)(value)
        return future

    def _replace(self, dead: _Worker) -> _Worker:
        dead.process.join(_JOIN_TIMEOUT_S)
        dead.tasks.close()
        dead.alive.close()
        fresh = self._start_worker()
        self._workers[self._workers.index(dead)] = fresh
        return fresh

    def shutdown(self, kill: bool = False) -> None:
        """Stop every worker: ask them to exit (or, with `kill`, kill them at once); queued tasks are dropped."""
        for task in self._queue:
            task.future.cancel()
        self._queue.clear()
        for worker in self._workers:
            if kill or worker.task is not None:
                worker.process.kill()
            else:
                try:
                    worker.tasks.send(None)
                except OSError:
                    pass
        for worker in self._workers:
            worker.process.join(_JOIN_TIMEOUT_S)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.tasks.close()
            worker.alive.close()
        self._workers = []


def _worker_main(tasks: Connection, alive: Connection, initializer: Callable | None, initargs: tuple) -> None:
    """A worker's life: die with the parent, then run tasks from the pipe until told to stop."""
    _exit_with_parent(alive)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    if initializer is not None:
        initializer(*initargs)
    while True:
        try:
            message = tasks.recv()
        except EOFError:
            return
        if message is None:
            return
        fn, arg = message
        try:
            reply = (True, fn(arg))
        except Exception as err:  # noqa: BLE001 -- every task error goes back to the parent
            reply = (False, portable_error(err))
        try:
            tasks.send(reply)
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            tasks.send((False, TaskError(f"the task's result cannot be sent back: {type(err).__name__}: {err}")))


def portable_error(err: BaseException) -> BaseException:
    """`err` itself if it survives a pickle round trip with the same message, else a TaskError saying it."""
    try:
        copy = pickle.loads(pickle.dumps(err))
        if type(copy) is type(err) and str(copy) == str(err):
            return err
    except Exception:  # noqa: BLE001, S110 -- any failure means: send a plain description instead
        pass
    return TaskError(f"{type(err).__name__}: {err}")


def _exit_with_parent(alive: Connection) -> None:
    """Make this process exit when the parent dies, however it dies (kill -9 included)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # our parent is the fork server
        except (OSError, AttributeError):
            pass  # the pipe watch below still covers it

    def watch() -> None:
        try:
            alive.recv()
        except (EOFError, OSError):
            pass
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
