"""Tile a folder of slides: a process pool over plan and shard tasks, resumable, with a manifest.

Work is split finer than a slide: after a slide is planned, each of its shards is a task, and so
is its overview (thumbnail, tissue mask, QC picture), so two workers speed up one large slide as
well as many small ones, and no worker waits while another draws a picture. Slides are finished roughly in
order (shards first, a new slide only when a worker would otherwise wait), which keeps the
number of half-written stores small when a run is killed. Each slide is tiled under a file lock,
so two runs sharing an output folder never write the same store.

Failure isolation: every error a task raises comes back to this process as itself (the project's
exception types pickle) and fails only the slide it belongs to; a worker that dies (a crash in a
decoder, the OOM killer) fails only the slide whose task it held (tiling.workers). Workers exit
with the main process, so a killed run leaves no process holding a slide's lock.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from tiling.config import TilingConfig
from tiling.discover import describe_ignored, discover_slides, override_for, read_mpp_overrides, select_shard, slide_ids
from tiling.faults import fault_from_environment, fault_point, install_fault, parse_fault
from tiling.manifest import (
    STATUSES,
    FileLock,
    ManifestRow,
    elapsed,
    new_run_id,
    now_iso,
    read_manifest,
    slide_lock,
    update_manifest,
    write_run_config,
    write_run_rows,
)
from tiling.reader import SlideError
from tiling.slide_tasks import OverviewTask, ShardTask, SlideJob, SlidePlan
from tiling.store import TILES_DIR, ensure_root, is_complete, mark_complete, read_attrs
from tiling.summary_page import write_summary_html
from tiling.workers import TILING_PRELOAD, ProcessPool, WorkerCrashed

QC_DIR = "qc"
EXIT_FAILED = 1  # at least one slide failed
EXIT_START_ERROR = 2  # the run could not start (bad input path, option or output folder)
EXIT_LOCKED = 3  # nothing failed, but some slides were left to another live run holding their locks
_MANIFEST_EVERY_S = 5.0


class OutputError(Exception):
    """The output folder cannot be used; the message names it."""


@dataclass
class RunSummary:
    """What one `pathgen tile` run did, slide by slide."""

    out_dir: Path
    run_id: str = ""
    rows: list[ManifestRow] = field(default_factory=list)

    def count(self, status: str) -> int:
        """Slides of this run with the given status."""
        return sum(row.status == status for row in self.rows)

    @property
    def exit_code(self) -> int:
        """1 when a slide failed; else 3 when a slide was left to another live run; else 0."""
        if self.count("failed"):
            return EXIT_FAILED
        return EXIT_LOCKED if self.count("locked") else 0

    def line(self) -> str:
        """The one-line account of the run: counts per status, locked slides called out."""
        text = (
            f"{self.count('done')} done, {self.count('failed')} failed, "
            f"{self.count('skipped')} skipped (already complete)"
        )
        if self.count("locked"):
            text += (
                f", {self.count('locked')} NOT tiled: locked by another live run (exit status {EXIT_LOCKED};"
                " re-run when it ends)"
            )
        return text


class InlinePool:
    """Runs each task at submission in this process (`workers: 0`, for debugging: no crash isolation)."""

    def __init__(self) -> None:
        self._finished: list[Future] = []

    def submit(self, fn: Callable, arg: object, key: object = None, follows: object = None) -> Future:
        """Run `fn(arg)` now (one process: `key` and `follows` change nothing); its Future comes back
        from the next `wait_any`."""
        future: Future = Future()
        try:
            future.set_result(fn(arg))
        except Exception as err:  # noqa: BLE001 -- delivered to the caller through the future
            future.set_exception(err)
        self._finished.append(future)
        return future

    def wait_any(self, timeout: float | None = None) -> list[Future]:
        """The Futures finished since the last call."""
        finished, self._finished = self._finished, []
        return finished

    def shutdown(self, kill: bool = False) -> None:
        """Nothing to stop."""


def prepare_output(out_dir: str | Path) -> Path:
    """Create the output folder and prove it is writable, or raise OutputError naming it."""
    out_dir = Path(out_dir).resolve()
    try:
        (out_dir / QC_DIR).mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{time.time_ns()}"
        probe.write_bytes(b"ok")
        probe.unlink()
        ensure_root(out_dir / TILES_DIR)
    except OSError as err:
        raise OutputError(f"{out_dir}: output folder is not writable ({err.strerror})") from err
    return out_dir


def make_jobs(inputs: list[str | Path], out_dir: Path, cfg: TilingConfig) -> tuple[list[SlideJob], list[Path]]:
    """One job per slide of this machine's shard, and the folder files ignored; writes nothing.

    Raises ValueError for a missing input, no slides, a bad shard or override file.
    """
    if cfg.workers < 0:
        raise ValueError(f"workers must be 0 (tile in this process) or more, got {cfg.workers}")
    slides, ignored = discover_slides(inputs)
    if not slides:
        raise ValueError(f"no slides found in {', '.join(map(str, inputs)) or 'the inputs'}")
    ids = slide_ids(slides)  # over the whole list, so every shard names slides alike
    overrides = read_mpp_overrides(cfg.mpp_override) if cfg.mpp_override else {}
    jobs = [
        SlideJob(
            path,
            ids[path],
            out_dir / TILES_DIR / ids[path],
            out_dir / QC_DIR / f"{ids[path]}.png" if cfg.qc else None,
            override_for(path, overrides),
        )
        for path in select_shard(slides, cfg.shard)
    ]
    return jobs, ignored


def run_tiling(inputs: list[str | Path], out_dir: str | Path, cfg: TilingConfig, progress: bool = True) -> RunSummary:
    """Tile every slide in `inputs` into `out_dir`; one bad slide never stops the others.

    Inputs are checked before anything is written (ValueError, OutputError); the resolved config
    is saved as `runs/<run id>.yaml` and this run's rows as `runs/<run id>.csv` beside the manifest.
    """
    out_dir = Path(out_dir).resolve()
    jobs, ignored = make_jobs(inputs, out_dir, cfg)
    fault = fault_from_environment()
    parse_fault(fault)  # a malformed test hook is a start-up error, not a crash in every worker
    out_dir = prepare_output(out_dir)
    summary = RunSummary(out_dir, new_run_id())
    write_run_config(out_dir, summary.run_id, asdict(cfg))
    if ignored:
        print(f"pathgen tile: {describe_ignored(ignored)}", file=sys.stderr)
    try:
        with tqdm(total=0, unit="tile", disable=not progress, dynamic_ncols=True) as bar:
            _Scheduler(jobs, out_dir, cfg, summary, bar, fault).run()
    finally:  # an interrupted run still records the slides it finished
        update_manifest(out_dir, summary.rows)
        write_run_rows(out_dir, summary.run_id, summary.rows)
    write_summary_html(out_dir / QC_DIR / "index.html", list(read_manifest(out_dir).values()), ".")
    return summary


@dataclass
class _ActiveSlide:
    job: SlideJob
    lock: FileLock
    t0: float
    remaining: int = -1
    tiles: int = 0
    in_flight: int = 0
    level0_mpp: float | None = None
    failed: str = ""


class _Scheduler:
    """Keeps the pool busy with plan and shard tasks and turns their results into manifest rows."""

    def __init__(
        self,
        jobs: list[SlideJob],
        out_dir: Path,
        cfg: TilingConfig,
        summary: RunSummary,
        bar: tqdm,
        fault: str | None = None,
    ):
        self.pending = deque(jobs)
        self.tasks: deque[OverviewTask | ShardTask] = deque()  # of planned slides, in slide order
        self.in_flight: dict[Future, str] = {}
        self.active: dict[str, _ActiveSlide] = {}
        self.out_dir, self.cfg, self.summary, self.bar = out_dir, cfg, summary, bar
        self.last_manifest = time.monotonic()
        self.fault = fault
        self._pool: ProcessPool | InlinePool | None = None  # started on the first task: a re-run that
        # only skips complete slides starts no process

    @property
    def pool(self) -> ProcessPool | InlinePool:
        """The workers, started when first needed."""
        if self._pool is None:
            self._pool = (
                InlinePool()
                if self.cfg.workers == 0
                else ProcessPool(self.cfg.workers, install_fault, (self.fault,), preload=TILING_PRELOAD)
            )
        return self._pool

    def run(self) -> None:
        """Process every job to a done, failed, skipped or locked row."""
        finished = False
        try:
            while self.pending or self.tasks or self.in_flight:
                self._fill()
                for future in self.pool.wait_any() if self.in_flight else []:
                    self._handle(future, self.in_flight.pop(future))
            finished = True
        finally:  # interrupted: kill the workers, their results are not wanted
            if self._pool is not None:
                self._pool.shutdown(kill=not finished)
            for slide in self.active.values():
                slide.lock.release()

    def _fill(self) -> None:
        max_in_flight = 2 * max(1, self.cfg.workers)
        while len(self.in_flight) < max_in_flight:
            if self.pending and (not self.tasks or len(self.active) <= max(1, self.cfg.workers)):
                self._start(self.pending.popleft())
            elif self.tasks:
                task = self.tasks.popleft()
                if isinstance(task, ShardTask):
                    key, follows = (task.job.slide_id, task.shard_index), (task.job.slide_id, task.shard_index - 1)
                    self._submit(task.job.slide_id, fill_shard_task, task, key, follows)
                else:
                    self._submit(task.job.slide_id, overview_task, task)
            else:
                return

    def _submit(self, slide_id: str, fn: Callable, arg: object, key: object = None, follows: object = None) -> None:
        self.active[slide_id].in_flight += 1
        self.in_flight[self.pool.submit(fn, arg, key, follows)] = slide_id

    def _start(self, job: SlideJob) -> None:
        lock = slide_lock(self.out_dir, job.slide_id)
        if not lock.acquire():
            self._record(job, "locked", "NOT tiled: another live run holds this slide's lock; re-run when it ends")
            return
        if is_complete(job.group_path):
            lock.release()
            self._record_existing(job)
            return
        self.active[job.slide_id] = _ActiveSlide(job, lock, time.perf_counter())
        self._submit(job.slide_id, plan_slide_task, (job, self.cfg))

    def _record_existing(self, job: SlideJob) -> None:
        attrs = read_attrs(job.group_path) or {}
        mismatch = _parameter_mismatch(attrs, self.cfg)
        if mismatch:
            self._record(job, "failed", f"an existing store was tiled with {mismatch}; use another --out")
        else:
            self._record(
                job,
                "skipped",
                "already complete",
                tiles=int(attrs.get("n_tiles", 0)),
                level0_mpp=attrs.get("slide", {}).get("level0_mpp"),
            )

    def _handle(self, future: Future, slide_id: str) -> None:
        slide = self.active[slide_id]
        slide.in_flight -= 1
        try:
            result = future.result()
        except WorkerCrashed as err:
            self._fail(
                slide,
                f"the worker process tiling this slide died ({err.how}): out of memory, or a crash "
                "in the slide reader; a re-run retries it",
            )
        except Exception as err:  # noqa: BLE001 -- one bad slide must never stop the folder
            self._fail(slide, err.problem if isinstance(err, SlideError) else f"{type(err).__name__}: {err}")
        else:
            self._on_result(slide, result)
        if slide.failed and slide.in_flight == 0 and slide.job.slide_id in self.active:
            self._close_failed(slide)

    def _on_result(self, slide: _ActiveSlide, result: SlidePlan | int) -> None:
        if slide.failed:
            return
        if isinstance(result, SlidePlan):
            slide.remaining, slide.level0_mpp = len(result.shards) + 1, result.level0_mpp
            # the overview first: it must not be last
            self.tasks.extend([result.overview, *striped(result.shards, max(1, self.cfg.workers))])
            self.bar.total += result.n_tiles
            self.bar.refresh()
            return
        slide.remaining -= 1
        slide.tiles += result
        self.bar.update(result)
        if slide.remaining == 0:
            self._finish(slide)

    def _finish(self, slide: _ActiveSlide) -> None:
        seconds = elapsed(slide.t0)
        mark_complete(slide.job.group_path, {"n_tiles": slide.tiles, "seconds": seconds, "completed": now_iso()})
        del self.active[slide.job.slide_id]
        slide.lock.release()
        self._record(slide.job, "done", "", tiles=slide.tiles, seconds=seconds, level0_mpp=slide.level0_mpp)

    def _fail(self, slide: _ActiveSlide, reason: str) -> None:
        if slide.failed:
            return
        slide.failed = reason.replace("\n", " ")
        self.tasks = deque(t for t in self.tasks if t.job.slide_id != slide.job.slide_id)
        self.bar.write(f"pathgen tile: FAILED {slide.job.slide_path}: {slide.failed}", file=sys.stderr)

    def _close_failed(self, slide: _ActiveSlide) -> None:
        shutil.rmtree(slide.job.group_path, ignore_errors=True)
        del self.active[slide.job.slide_id]
        slide.lock.release()
        self._record(slide.job, "failed", slide.failed, seconds=elapsed(slide.t0))

    def _record(self, job: SlideJob, status: str, reason: str, **values) -> None:
        self.summary.rows.append(
            ManifestRow(
                job.slide_id, str(job.slide_path), status, reason, finished=now_iso(), run=self.summary.run_id, **values
            )
        )
        self.bar.set_postfix_str(", ".join(f"{status} {self.summary.count(status)}" for status in STATUSES))
        if time.monotonic() - self.last_manifest > _MANIFEST_EVERY_S:
            update_manifest(self.out_dir, self.summary.rows)
            self.last_manifest = time.monotonic()


def striped(shards: list[ShardTask], n_stripes: int) -> list[ShardTask]:
    """The shards in `n_stripes` runs of neighbours, interleaved: [0, h, 1, h + 1, …] for two.

    Submitted in this order, each following its predecessor (ProcessPool.submit's `follows`),
    every worker fills one run of neighbouring shards. Neighbouring shards share slide tiles
    (where a shard's last tile row ends and the next one's begins), which a worker then decodes
    once: filled in turn by two workers, a 40,000 × 30,000 px slide resampled 0.4 → 0.5 µm/px
    decodes 1.24× its file tiles, in two runs 1.01× (benchmarks/perf/tile_throughput.py's slide).
    """
    stripes = [list(part) for part in _split_evenly(shards, n_stripes)]
    return [stripe[i] for i in range(max(map(len, stripes), default=0)) for stripe in stripes if i < len(stripe)]


def _split_evenly(items: list, n_parts: int) -> list[list]:
    """`items` cut into `n_parts` consecutive parts whose lengths differ by at most one."""
    size, extra = divmod(len(items), n_parts)
    bounds = [i * size + min(i, extra) for i in range(n_parts + 1)]
    return [items[start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]


# The pool's entry points import tiling.tile_slide when they run, not at the top: this process only
# schedules them, and tile_slide's libraries (scipy.ndimage, scikit-image, matplotlib) cost ~0.5
# CPU-s to import; the workers come from a fork server that has imported it (TILING_PRELOAD), so
# there the import is a lookup. With workers: 0 (InlinePool) this process imports it on the first task.


def plan_slide_task(args: tuple[SlideJob, TilingConfig]) -> SlidePlan:
    """Pool entry point for planning (one picklable argument)."""
    from tiling.tile_slide import plan_slide  # lazy: the scheduler never loads tile_slide (comment above)

    fault_point("plan", args[0].slide_path)
    return plan_slide(*args)


def fill_shard_task(task: ShardTask) -> int:
    """Pool entry point for filling one shard."""
    from tiling.tile_slide import fill_shard  # lazy: the scheduler never loads tile_slide (comment above)

    fault_point("shard", task.job.slide_path, task.shard_index)
    return fill_shard(task)


def overview_task(task: OverviewTask) -> int:
    """Pool entry point for a slide's overview arrays and QC picture."""
    from tiling.tile_slide import write_overview  # lazy: the scheduler never loads tile_slide (comment above)

    fault_point("overview", task.job.slide_path)
    return write_overview(task)


_CHECKED_PARAMETERS = ("target_mpp", "tile_size_px", "overlap_px", "min_tissue")


def _parameter_mismatch(attrs: dict, cfg: TilingConfig) -> str:
    """Describe how an existing store's tiling parameters differ from this run's, if they do."""
    stored = attrs.get("tiling", {})
    wanted = asdict(cfg)
    diffs = [
        f"{name}={stored.get(name)} (this run: {wanted[name]})"
        for name in _CHECKED_PARAMETERS
        if stored.get(name) != wanted[name]
    ]
    return ", ".join(diffs)
