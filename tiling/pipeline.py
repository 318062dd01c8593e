"""Tile a folder of slides: a process pool over plan and shard tasks, resumable, with a manifest.

Work is split finer than a slide: after a slide is planned, each of its shards is a task, so two
workers speed up one large slide as well as many small ones. Slides are finished roughly in
order (shards first, a new slide only when a worker would otherwise wait), which keeps the
number of half-written stores small when a run is killed. Each slide is tiled under a file lock,
so two runs sharing an output folder never write the same store.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from tiling.config import TilingConfig
from tiling.discover import discover_slides, override_for, read_mpp_overrides, select_shard, slide_ids
from tiling.manifest import FileLock, ManifestRow, read_manifest, slide_lock, update_manifest
from tiling.qc import write_summary_html
from tiling.reader import SlideError
from tiling.store import TILES_DIR, ensure_root, is_complete, mark_complete, read_attrs
from tiling.tile_slide import ShardTask, SlideJob, SlidePlan, elapsed, fill_shard, now_iso, plan_slide

QC_DIR = "qc"
_MANIFEST_EVERY_S = 5.0


class OutputError(Exception):
    """The output folder cannot be used; the message names it."""


@dataclass
class RunSummary:
    """What one `pathgen tile` run did, slide by slide."""

    out_dir: Path
    rows: list[ManifestRow] = field(default_factory=list)

    def count(self, status: str) -> int:
        """Slides of this run with the given status."""
        return sum(row.status == status for row in self.rows)

    @property
    def exit_code(self) -> int:
        """0 when no slide failed, 1 otherwise."""
        return 1 if self.count("failed") else 0


class InlineExecutor(Executor):
    """Runs each task at submission in this process: `--workers 1` without a pool."""

    def submit(self, fn, /, *args, **kwargs) -> Future:  # noqa: ANN001 (Executor's signature)
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:  # noqa: BLE001 -- delivered to the caller through the future
            future.set_exception(err)
        return future


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


def make_jobs(inputs: list[str | Path], out_dir: Path, cfg: TilingConfig) -> tuple[list[SlideJob], int]:
    """One job per slide of this machine's shard; also how many folder files were ignored."""
    slides, ignored = discover_slides(inputs)
    if not slides:
        raise ValueError(f"no slides found in {', '.join(map(str, inputs)) or 'the inputs'}")
    ids = slide_ids(slides)  # over the whole list, so every shard names slides alike
    overrides = read_mpp_overrides(cfg.mpp_override) if cfg.mpp_override else {}
    jobs = [SlideJob(path, ids[path], out_dir / TILES_DIR / ids[path],
                     out_dir / QC_DIR / f"{ids[path]}.png" if cfg.qc else None, override_for(path, overrides))
            for path in select_shard(slides, cfg.shard)]
    return jobs, len(ignored)


def run_tiling(inputs: list[str | Path], out_dir: str | Path, cfg: TilingConfig, progress: bool = True) -> RunSummary:
    """Tile every slide in `inputs` into `out_dir`; one bad slide never stops the others."""
    out_dir = prepare_output(out_dir)
    jobs, n_ignored = make_jobs(inputs, out_dir, cfg)
    if n_ignored:
        print(f"pathgen tile: ignored {n_ignored} files without a slide suffix", file=sys.stderr)
    summary = RunSummary(out_dir)
    try:
        with tqdm(total=0, unit="tile", disable=not progress, dynamic_ncols=True) as bar:
            _Scheduler(jobs, out_dir, cfg, summary, bar).run()
    finally:  # an interrupted run still records the slides it finished
        update_manifest(out_dir, summary.rows)
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

    def __init__(self, jobs: list[SlideJob], out_dir: Path, cfg: TilingConfig, summary: RunSummary, bar: tqdm):
        self.pending = deque(jobs)
        self.shards: deque[ShardTask] = deque()
        self.in_flight: dict[Future, str] = {}
        self.active: dict[str, _ActiveSlide] = {}
        self.out_dir, self.cfg, self.summary, self.bar = out_dir, cfg, summary, bar
        self.last_manifest = time.monotonic()
        self.pool = self._new_pool()

    def _new_pool(self) -> Executor:
        return InlineExecutor() if self.cfg.workers <= 1 else ProcessPoolExecutor(self.cfg.workers)

    def run(self) -> None:
        """Process every job to a done, failed or skipped row."""
        try:
            while self.pending or self.shards or self.in_flight:
                self._fill()
                if self.in_flight:
                    done, _ = wait(list(self.in_flight), return_when=FIRST_COMPLETED)
                    for future in done:
                        if future in self.in_flight:  # a pool restart may have settled it already
                            self._handle(future, self.in_flight.pop(future))
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
            for slide in self.active.values():
                slide.lock.release()

    def _fill(self) -> None:
        max_in_flight = 2 * max(1, self.cfg.workers)
        while len(self.in_flight) < max_in_flight:
            if self.pending and (not self.shards or len(self.active) <= max(1, self.cfg.workers)):
                self._start(self.pending.popleft())
            elif self.shards:
                task = self.shards.popleft()
                self._submit(task.job.slide_id, fill_shard, task)
            else:
                return

    def _submit(self, slide_id: str, fn, arg) -> None:  # noqa: ANN001
        self.active[slide_id].in_flight += 1
        self.in_flight[self.pool.submit(fn, arg)] = slide_id

    def _start(self, job: SlideJob) -> None:
        lock = slide_lock(self.out_dir, job.slide_id)
        if not lock.acquire():
            self._record(job, "skipped", "being tiled by another run (its lock is held)")
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
            self._record(job, "skipped", "already complete", tiles=int(attrs.get("n_tiles", 0)),
                         level0_mpp=attrs.get("slide", {}).get("level0_mpp"))

    def _handle(self, future: Future, slide_id: str) -> None:
        slide = self.active[slide_id]
        slide.in_flight -= 1
        try:
            result = future.result()
        except BrokenProcessPool:
            self._fail(slide, "a worker process died while tiling this slide (out of memory or a crash in the reader)")
            self._restart_pool()
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
            slide.remaining, slide.level0_mpp = len(result.shards), result.level0_mpp
            self.shards.extend(result.shards)
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
        self.shards = deque(t for t in self.shards if t.job.slide_id != slide.job.slide_id)
        self.bar.write(f"pathgen tile: FAILED {slide.job.slide_path}: {slide.failed}", file=sys.stderr)

    def _close_failed(self, slide: _ActiveSlide) -> None:
        shutil.rmtree(slide.job.group_path, ignore_errors=True)
        del self.active[slide.job.slide_id]
        slide.lock.release()
        self._record(slide.job, "failed", slide.failed, seconds=elapsed(slide.t0))

    def _restart_pool(self) -> None:
        for future, slide_id in list(self.in_flight.items()):
            self.in_flight.pop(future)
            self.active[slide_id].in_flight -= 1
            self._fail(self.active[slide_id], "a worker process died while tiling this slide")
        for slide in [s for s in self.active.values() if s.failed and s.in_flight == 0]:
            self._close_failed(slide)
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._new_pool()

    def _record(self, job: SlideJob, status: str, reason: str, **values) -> None:
        self.summary.rows.append(ManifestRow(job.slide_id, str(job.slide_path), status, reason,
                                             finished=now_iso(), **values))
        self.bar.set_postfix_str(f"slides done {self.summary.count('done')} failed {self.summary.count('failed')}"
                                 f" skipped {self.summary.count('skipped')}")
        if time.monotonic() - self.last_manifest > _MANIFEST_EVERY_S:
            update_manifest(self.out_dir, self.summary.rows)
            self.last_manifest = time.monotonic()


def plan_slide_task(args: tuple[SlideJob, TilingConfig]) -> SlidePlan:
    """Pool entry point for planning (one picklable argument)."""
    return plan_slide(*args)


_CHECKED_PARAMETERS = ("target_mpp", "tile_size_px", "overlap_px", "min_tissue")


def _parameter_mismatch(attrs: dict, cfg: TilingConfig) -> str:
    """Describe how an existing store's tiling parameters differ from this run's, if they do."""
    stored = attrs.get("tiling", {})
    wanted = asdict(cfg)
    diffs = [f"{name}={stored.get(name)} (this run: {wanted[name]})" for name in _CHECKED_PARAMETERS
             if stored.get(name) != wanted[name]]
    return ", ".join(diffs)
