"""A cohort with bad slides, crashing workers and killed runs: every slide gets its own true outcome.

Small synthetic slides and 64-px tiles at 1 µm/px keep each run under a second or two; faults
are injected through tiling.faults (PATHGEN_TILING_FAULT).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tiling.config import StoreConfig, TilingConfig
from tiling.faults import FAULT_ENV, parse_fault
from tiling.manifest import read_manifest
from tiling.pipeline import run_tiling
from tiling.store import is_complete, open_store
from tiling.synthetic import SyntheticSlideSpec, write_synthetic_slide

REPO = Path(__file__).resolve().parents[2]
SMALL = {"target_mpp": 1.0, "tile_size_px": 64}  # 256 level-0 px per tile on 0.25 µm/px slides
GOOD = ["good_1", "good_2", "good_3"]


def _cfg(workers: int, **overrides) -> TilingConfig:
    return TilingConfig(**SMALL, workers=workers, store=StoreConfig(tiles_per_shard=4), **overrides)


def _run(inputs, out: Path, workers: int, **overrides):
    summary = run_tiling([str(p) for p in inputs], out, _cfg(workers, **overrides), progress=False)
    return summary, read_manifest(out)


def _outcomes(manifest: dict) -> dict[str, tuple[str, str]]:
    """(status, reason) per slide, with this run's temp folder taken out of the reasons."""
    return {
        slide_id: (row["status"], row["reason"].replace(str(Path(row["path"]).parent), "DIR"))
        for slide_id, row in manifest.items()
    }


@pytest.fixture(scope="module")
def good_slides(tmp_path_factory) -> Path:
    """Three small, good slides (2048×1536 at 0.25 µm/px: 7-12 tiles of 64 px each, in 2-3 shards)."""
    folder = tmp_path_factory.mktemp("good")
    for seed, name in enumerate(GOOD, start=11):
        write_synthetic_slide(folder / f"{name}.tif", SyntheticSlideSpec(2048, 1536, seed=seed, tile_px=128))
    return folder


@pytest.fixture(scope="module")
def cohort(good_slides, tmp_path_factory) -> Path:
    """The good slides plus one of every kind of bad input."""
    folder = tmp_path_factory.mktemp("cohort")
    for name in GOOD:
        (folder / f"{name}.tif").symlink_to(good_slides / f"{name}.tif")
    data = (good_slides / "good_1.tif").read_bytes()
    (folder / "fake.svs").write_text("this is not a slide")
    (folder / "empty.svs").write_bytes(b"")
    (folder / "truncated.tif").write_bytes(data[: len(data) // 2])
    write_synthetic_slide(folder / "tiny.tif", SyntheticSlideSpec(200, 200, seed=1, tile_px=128))
    write_synthetic_slide(folder / "nompp.tif", SyntheticSlideSpec(1024, 768, write_mpp=False, tile_px=128))
    write_synthetic_slide(folder / "blank.tif", SyntheticSlideSpec(1024, 768, tissue_regions=0, tile_px=128))
    write_synthetic_slide(folder / "coarse.tif", SyntheticSlideSpec(1024, 768, mpp=4.0, tile_px=128))
    _corrupt_level(good_slides / "good_2.tif", folder / "corrupt.tif", level=2)  # the level 1 µm/px tiles read
    (folder / "notes.txt").write_text("a README beside the slides")
    return folder


def _corrupt_level(source: Path, target: Path, level: int) -> None:
    """Copy a slide with random bytes over one level's JPEG tiles: it opens and plans, then fails mid-slide."""
    import tifffile

    data = bytearray(source.read_bytes())
    with tifffile.TiffFile(source) as tif:
        spans = list(zip(tif.pages[level].dataoffsets, tif.pages[level].databytecounts))
    rng = np.random.default_rng(0)
    for offset, count in spans:
        data[offset : offset + count] = rng.integers(0, 256, count, dtype=np.uint8).tobytes()
    target.write_bytes(bytes(data))


EXPECTED_PROBLEMS = {
    "fake": "not a slide",
    "empty": "not a slide",
    "truncated": "not a slide",
    "tiny": "smaller than one",
    "nompp": "--mpp-override",
    "blank": "no tissue",
    "coarse": "coarser than the target",
    "corrupt": "cannot decode",
}


def test_bad_inputs_give_identical_rows_at_any_worker_count(cohort, tmp_path, capsys):
    outcomes = {}
    for workers in (0, 1, 2, 4):
        summary, manifest = _run([cohort], tmp_path / f"w{workers}", workers)
        assert summary.exit_code == 1
        assert (summary.count("done"), summary.count("failed")) == (len(GOOD), len(EXPECTED_PROBLEMS))
        outcomes[workers] = _outcomes(manifest)
        for slide_id in EXPECTED_PROBLEMS:
            assert not (tmp_path / f"w{workers}" / "tiles.zarr" / slide_id).exists()  # no partial store
        for slide_id in GOOD:
            store = open_store(tmp_path / f"w{workers}" / "tiles.zarr" / slide_id)
            assert int(manifest[slide_id]["tiles"]) == len(store) > 0
    assert outcomes[1] == outcomes[0] and outcomes[2] == outcomes[0] and outcomes[4] == outcomes[0]
    for slide_id, problem in EXPECTED_PROBLEMS.items():
        status, reason = outcomes[0][slide_id]
        assert status == "failed" and problem in reason and reason and "\n" not in reason, (slide_id, reason)
        assert "worker process" not in reason  # a real reason, not a casualty of someone else's error
    assert {outcomes[0][slide_id] for slide_id in GOOD} == {("done", "")}
    err = capsys.readouterr().err
    assert "ignored 1 file without a slide suffix: " in err and "notes.txt" in err


_RUN_DEPENDENT_ATTRS = ("created", "completed", "seconds")


def _store_contents(group: Path) -> dict:
    """Everything a store holds, less the attrs that differ from run to run (times)."""
    store = open_store(group)
    attrs = {k: v for k, v in store.attrs.items() if k not in _RUN_DEPENDENT_ATTRS}
    arrays = {name: store.array(name) for name in ("coords", "tissue_fraction", "thumbnail", "tissue_mask")}
    return {"attrs": attrs, "tiles": store.read(np.arange(len(store))), **arrays}


def test_stores_qc_pictures_and_manifest_are_identical_at_any_worker_count(good_slides, tmp_path):
    """Overviews and shards run in any order on any worker; what a run leaves must not depend on it."""
    results = {}
    for workers in (0, 1, 2, 4):
        out = tmp_path / f"w{workers}"
        _, manifest = _run([good_slides], out, workers)
        results[workers] = (
            {name: _store_contents(out / "tiles.zarr" / name) for name in GOOD},
            {name: (out / "qc" / f"{name}.png").read_bytes() for name in GOOD},
            [(slide_id, row["status"], row["tiles"]) for slide_id, row in manifest.items()],
        )
    stores0, pictures0, rows0 = results[0]
    assert [slide_id for slide_id, _, _ in rows0] == GOOD and {status for _, status, _ in rows0} == {"done"}
    for workers in (1, 2, 4):
        stores, pictures, rows = results[workers]
        assert rows == rows0 and pictures == pictures0, workers
        for name in GOOD:
            assert stores[name]["attrs"] == stores0[name]["attrs"], (workers, name)
            for key in ("tiles", "coords", "tissue_fraction", "thumbnail", "tissue_mask"):
                np.testing.assert_array_equal(stores[name][key], stores0[name][key], err_msg=f"{workers} {name} {key}")


@pytest.mark.parametrize(
    ("workers", "fault", "how"),
    [
        (1, "exit:plan:good_2", "exit status 3"),
        (1, "sigkill:shard1:good_2", "killed by SIGKILL"),
        (2, "sigkill:shard1:good_2", "killed by SIGKILL"),
        (2, "exit:shard0:good_2", "exit status 3"),
        (4, "sigkill:shard1:good_2", "killed by SIGKILL"),
        (4, "exit:plan:good_2", "exit status 3"),
        (2, "sigkill:overview:good_2", "killed by SIGKILL"),
        (1, "exit:overview:good_2", "exit status 3"),
    ],
)
def test_a_worker_crash_fails_only_the_slide_it_held(good_slides, tmp_path, monkeypatch, workers, fault, how):
    out = tmp_path / "out"
    monkeypatch.setenv(FAULT_ENV, fault)
    summary, manifest = _run([good_slides], out, workers)
    assert summary.exit_code == 1
    assert manifest["good_2"]["status"] == "failed"
    assert f"the worker process tiling this slide died ({how})" in manifest["good_2"]["reason"]
    assert not (out / "tiles.zarr" / "good_2").exists()
    assert [manifest[s]["status"] for s in ("good_1", "good_3")] == ["done", "done"]
    monkeypatch.delenv(FAULT_ENV)
    again, manifest = _run([good_slides], out, workers)  # the re-run completes the crashed slide
    assert again.exit_code == 0 and {row["status"] for row in manifest.values()} == {"done"}
    assert [row.status for row in again.rows if row.slide_id != "good_2"] == ["skipped", "skipped"]
    assert is_complete(out / "tiles.zarr" / "good_2")


def test_a_malformed_fault_spec_is_refused():
    with pytest.raises(ValueError, match=FAULT_ENV):
        parse_fault("explode:plan:x")
    assert parse_fault("") is None and parse_fault("sleep:shard2:a").stage == "shard2"


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children, grandchildren, ...), from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _tile_cmd(slides: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pathgen.cli",
        "tile",
        str(slides),
        "--out",
        str(out),
        "--no-progress",
        "--mpp",
        "1.0",
        "--tile-size",
        "64",
        "store.tiles_per_shard=4",
        *extra,
    ]


def test_kill_9_leaves_no_worker_and_a_live_lock_is_its_own_exit_status(good_slides, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), FAULT_ENV: "sleep:shard:good_"}  # every worker stalls in a shard
    first = subprocess.Popen(
        _tile_cmd(good_slides, out, "--workers", "2"),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not all((out / "tiles.zarr" / s / "zarr.json").is_file() for s in GOOD):  # planned; now in shards
            assert time.monotonic() < deadline and first.poll() is None, "the first run never got going"
            time.sleep(0.05)
        time.sleep(0.5)
        workers = _descendants(first.pid)
        assert len(workers) >= 3  # the fork server and two workers (and the resource tracker)
        env.pop(FAULT_ENV)
        second = subprocess.run(
            _tile_cmd(good_slides, out), cwd=REPO, env=env, capture_output=True, text=True, check=False
        )
        assert second.returncode == 3, second.stderr
        assert "3 NOT tiled: locked by another live run (exit status 3" in second.stdout
        assert {row["status"] for row in read_manifest(out).values()} == {"locked"}
        first.send_signal(signal.SIGKILL)
        first.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _alive(pid)], "a worker outlived the killed run"
    finally:
        first.kill()
    third = subprocess.run(
        _tile_cmd(good_slides, out, "--workers", "2"), cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert third.returncode == 0, third.stderr
    assert "3 done, 0 failed, 0 skipped" in third.stdout
    assert all(is_complete(out / "tiles.zarr" / s) for s in GOOD)
    assert {row["status"] for row in read_manifest(out).values()} == {"done"}


def test_a_rerun_with_nothing_to_do_starts_no_worker(good_slides, tmp_path, monkeypatch):
    _run([good_slides], tmp_path / "out", 2)
    from tiling import pipeline

    def no_pool(*args, **kwargs):
        raise AssertionError("a worker pool was started for a run with nothing to tile")

    monkeypatch.setattr(pipeline, "ProcessPool", no_pool)
    summary, _ = _run([good_slides], tmp_path / "out", 2)
    assert [row.status for row in summary.rows] == ["skipped"] * 3 and summary.exit_code == 0


def test_plans_and_shard_tasks_pickle_round_trip(good_slides, tmp_path):
    """What crosses the process boundary (a plan coming back, its shard tasks going out) survives pickling."""
    import pickle

    from tiling.tile_slide import SlideJob, plan_slide

    job = SlideJob(good_slides / "good_1.tif", "good_1", tmp_path / "tiles.zarr" / "good_1", None)
    plan = plan_slide(job, _cfg(0))
    copy = pickle.loads(pickle.dumps(plan))
    assert copy.job == plan.job and copy.level0_mpp == plan.level0_mpp and copy.n_tiles == plan.n_tiles > 0
    for name in ("thumbnail", "tissue_mask", "ink_mask", "boxes_thumb"):
        np.testing.assert_array_equal(getattr(copy.overview, name), getattr(plan.overview, name))
    assert (copy.overview.title, copy.overview.mpp_note) == (plan.overview.title, plan.overview.mpp_note)
    for task, task_copy in zip(plan.shards, copy.shards, strict=True):
        np.testing.assert_array_equal(task_copy.level0_xy, task.level0_xy)
        np.testing.assert_array_equal(task_copy.row_col, task.row_col)
        assert (task_copy.layout, task_copy.grid, task_copy.shard_index) == (task.layout, task.grid, task.shard_index)
