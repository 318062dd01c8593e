"""`pathgen tile` end to end: stores, pixels, resume, kills, locks, shards and bad inputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tiling.config import TilingConfig
from tiling.manifest import read_manifest, slide_lock
from tiling.pipeline import EXIT_LOCKED, OutputError, prepare_output, run_tiling
from tiling.reader import open_slide
from tiling.store import is_complete, open_store, open_tile_folder
from tiling.synthetic import SyntheticSlideSpec, write_synthetic_slide

REPO = Path(__file__).resolve().parents[2]


def _run(inputs, out, **overrides) -> tuple:
    cfg = TilingConfig(**overrides)
    summary = run_tiling([str(p) for p in inputs], out, cfg, progress=False)
    return summary, read_manifest(Path(out))


def test_folder_is_tiled_into_complete_stores(synthetic_dir, tmp_path):
    summary, manifest = _run([synthetic_dir], tmp_path / "out", workers=2)
    assert summary.exit_code == 0
    assert {row["status"] for row in manifest.values()} == {"done"}
    folder = open_tile_folder(tmp_path / "out")
    assert len(folder.stores) == 2 and len(folder) > 0
    for store in folder.stores:
        assert int(manifest[store.slide_id]["tiles"]) == len(store)
        assert store.attrs["complete"] is True and store.attrs["n_tiles"] == len(store)
        assert (store.array("tissue_fraction") >= 0.25).all()
        assert (tmp_path / "out" / "qc" / f"{store.slide_id}.png").is_file()
    assert (tmp_path / "out" / "qc" / "index.html").is_file()


def test_tiles_equal_the_slide_pixels_at_an_exact_level(synthetic_dir, tmp_path):
    _run([synthetic_dir / "normal_b.tif"], tmp_path / "out")
    store = open_store(tmp_path / "out" / "tiles.zarr" / "normal_b")
    slide = open_slide(synthetic_dir / "normal_b.tif")
    assert store.attrs["tiling"]["read_level"] == 1  # 0.25 µm/px level 1 is exactly 0.5 µm/px
    for index in [0, len(store) // 2, len(store) - 1]:
        x, y = store.coords[index]
        np.testing.assert_array_equal(store[index], slide.read_rgb((int(x), int(y)), 1, (224, 224)))


def test_real_slide_is_resampled_to_the_target_mpp(cmu_small, tmp_path):
    _run([cmu_small], tmp_path / "out")
    store = open_store(tmp_path / "out" / "tiles.zarr" / "CMU-1-Small-Region")
    slide = open_slide(cmu_small)
    size0 = store.attrs["tiling"]["tile_size_level0"]
    assert size0 == pytest.approx(224 * 0.5 / 0.499)
    assert store.attrs["tiling"]["resampler"].startswith("Pillow Lanczos (a=3)")  # what the reference below uses
    x, y = store.coords[len(store) // 2]
    reference = slide.read_rgb((int(x) - 8, int(y) - 8), 0, (int(size0) + 17, int(size0) + 17))
    reference = np.asarray(
        Image.fromarray(reference).resize((224, 224), Image.Resampling.LANCZOS, box=(8, 8, 8 + size0, 8 + size0))
    )
    # the exact fractional level-0 box (tests/tiling/test_geometry.py): a 1-px shift costs ~10 grey levels
    assert np.abs(store[len(store) // 2].astype(int) - reference).mean() < 1
    assert len(store) > 20


def test_rerun_skips_complete_slides(synthetic_dir, tmp_path):
    _run([synthetic_dir], tmp_path / "out")
    summary, manifest = _run([synthetic_dir], tmp_path / "out")
    assert summary.count("skipped") == 2 and summary.exit_code == 0
    assert all(row.reason == "already complete" and row.tiles > 0 for row in summary.rows)
    assert all(row["status"] == "done" for row in manifest.values())  # the record of the run that tiled them


def test_rerun_with_other_parameters_is_refused_and_keeps_the_record(synthetic_dir, tmp_path):
    first, before = _run([synthetic_dir / "normal_b.tif"], tmp_path / "out")
    summary, manifest = _run([synthetic_dir / "normal_b.tif"], tmp_path / "out", target_mpp=1.0)
    assert summary.exit_code == 1
    assert "target_mpp=0.5 (this run: 1.0)" in summary.rows[0].reason
    assert manifest == before and manifest["normal_b"]["status"] == "done"  # the run that did the work
    assert manifest["normal_b"]["run"] == first.run_id
    runs = tmp_path / "out" / "runs"
    configs = {path.stem: yaml.safe_load(path.read_text()) for path in runs.glob("*.yaml")}
    assert configs[first.run_id]["target_mpp"] == 0.5 and configs[summary.run_id]["target_mpp"] == 1.0
    refused = read_csv_rows(runs / f"{summary.run_id}.csv")
    assert refused[0]["status"] == "failed" and "use another --out" in refused[0]["reason"]


def read_csv_rows(path: Path) -> list[dict]:
    import csv

    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_interrupted_run_resumes_to_identical_stores(synthetic_dir, tmp_path, monkeypatch):
    _run([synthetic_dir / "tumor_a.tif"], tmp_path / "clean", store=_small_shards())
    import tiling.tile_slide as tile_slide  # what the pool's entry point calls, in this process (workers 0)

    calls = {"n": 0}
    real_fill = tile_slide.fill_shard

    def dying_fill(task):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the run is killed after one shard was written
        return real_fill(task)

    monkeypatch.setattr(tile_slide, "fill_shard", dying_fill)
    with pytest.raises(KeyboardInterrupt):
        _run([synthetic_dir / "tumor_a.tif"], tmp_path / "killed", workers=0, store=_small_shards())
    group = tmp_path / "killed" / "tiles.zarr" / "tumor_a"
    assert group.exists() and not is_complete(group)
    monkeypatch.setattr(tile_slide, "fill_shard", real_fill)
    summary, _ = _run([synthetic_dir / "tumor_a.tif"], tmp_path / "killed", store=_small_shards())
    assert summary.count("done") == 1
    clean = open_store(tmp_path / "clean" / "tiles.zarr" / "tumor_a")
    resumed = open_store(group)
    np.testing.assert_array_equal(resumed.read(np.arange(len(resumed))), clean.read(np.arange(len(clean))))


def _small_shards():
    from tiling.config import StoreConfig

    return StoreConfig(tiles_per_shard=4)


def test_sigkill_never_leaves_a_complete_looking_partial_store(tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    write_synthetic_slide(slides / "big.tif", SyntheticSlideSpec(12288, 9216, seed=5, tissue_regions=4))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "pathgen.cli",
        "tile",
        str(slides),
        "--out",
        str(out),
        "--no-progress",
        "store.tiles_per_shard=8",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shard_dir = out / "tiles.zarr" / "big" / "tiles" / "c"
    deadline = time.monotonic() + 60
    while not (shard_dir.exists() and any(shard_dir.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not is_complete(out / "tiles.zarr" / "big")
    assert subprocess.run(cmd, cwd=REPO).returncode == 0
    store = open_store(out / "tiles.zarr" / "big")
    assert store.attrs["n_tiles"] == len(store) > 100
    assert store.read([len(store) - 1]).std() > 0  # the last shard was written, not left as fill


def test_bad_inputs_fail_one_by_one_with_one_line_reasons(synthetic_dir, tmp_path, capsys):
    folder = tmp_path / "slides"
    folder.mkdir()
    (folder / "good.tif").symlink_to(synthetic_dir / "normal_b.tif")
    (folder / "fake.svs").write_text("this is not a slide")
    write_synthetic_slide(folder / "tiny.tif", SyntheticSlideSpec(300, 300, seed=1))
    write_synthetic_slide(folder / "nompp.tif", SyntheticSlideSpec(1024, 768, write_mpp=False))
    write_synthetic_slide(folder / "blank.tif", SyntheticSlideSpec(2048, 2048, tissue_regions=0))
    write_synthetic_slide(folder / "coarse.tif", SyntheticSlideSpec(1024, 768, mpp=2.0))
    _corrupt_level_tiles(synthetic_dir / "tumor_a.tif", folder / "corrupt.tif", level=1)
    summary, manifest = _run([folder], tmp_path / "out")
    assert summary.exit_code == 1
    assert manifest["good"]["status"] == "done"
    expected = {
        "fake": "not a slide",
        "tiny": "smaller than one",
        "nompp": "--mpp-override",
        "blank": "no tissue",
        "coarse": "coarser than the target",
        "corrupt": "cannot decode",
    }
    for slide_id, problem in expected.items():
        assert manifest[slide_id]["status"] == "failed", slide_id
        assert problem in manifest[slide_id]["reason"], (slide_id, manifest[slide_id]["reason"])
        assert "\n" not in manifest[slide_id]["reason"]
        assert not (tmp_path / "out" / "tiles.zarr" / slide_id).exists()  # no partial store left
    stderr = capsys.readouterr().err
    assert stderr.count("FAILED") == len(expected)
    assert str(folder / "fake.svs") in stderr


def _corrupt_level_tiles(source: Path, target: Path, level: int) -> None:
    """Copy a slide, overwriting the JPEG data of one level's tiles: opens fine, fails mid-slide."""
    import tifffile

    data = bytearray(source.read_bytes())
    with tifffile.TiffFile(source) as tif:
        page = tif.pages[level]
        spans = list(zip(page.dataoffsets, page.databytecounts))
    rng = np.random.default_rng(0)
    for offset, count in spans:
        data[offset : offset + count] = rng.integers(0, 256, count, dtype=np.uint8).tobytes()
    target.write_bytes(bytes(data))


def test_mpp_override_csv_rescues_a_slide_without_mpp(tmp_path):
    write_synthetic_slide(tmp_path / "nompp.tif", SyntheticSlideSpec(4096, 3072, seed=1, write_mpp=False))
    (tmp_path / "mpp.csv").write_text("slide,mpp\nnompp.tif,0.25\n")
    summary, manifest = _run([tmp_path / "nompp.tif"], tmp_path / "out", mpp_override=str(tmp_path / "mpp.csv"))
    assert summary.exit_code == 0
    assert open_store(tmp_path / "out" / "tiles.zarr" / "nompp").attrs["slide"]["mpp_source"] == "--mpp-override"


def test_a_slide_locked_by_another_run_is_not_success(synthetic_dir, tmp_path):
    out = prepare_output(tmp_path / "out")
    lock = slide_lock(out, "normal_b")
    assert lock.acquire()
    try:
        summary, manifest = _run([synthetic_dir], out)
    finally:
        lock.release()
    assert manifest["normal_b"]["status"] == "locked" and "another live run" in manifest["normal_b"]["reason"]
    assert manifest["tumor_a"]["status"] == "done"
    assert summary.exit_code == EXIT_LOCKED == 3
    assert summary.line() == (
        "1 done, 0 failed, 0 skipped (already complete), 1 NOT tiled: locked by another "
        "live run (exit status 3; re-run when it ends)"
    )
    again, manifest = _run([synthetic_dir], out)  # the lock is free now: the slide is tiled
    assert again.exit_code == 0 and manifest["normal_b"]["status"] == "done"


def test_shards_split_the_folder_between_runs(synthetic_dir, tmp_path):
    first, _ = _run([synthetic_dir], tmp_path / "out", shard="1/2")
    second, manifest = _run([synthetic_dir], tmp_path / "out", shard="2/2")
    assert first.count("done") == 1 and second.count("done") == 1
    assert sorted(manifest) == ["normal_b", "tumor_a"]


def test_unwritable_output_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not writable"):
        prepare_output(tmp_path / "file" / "out")


def test_jpeg_codec_option_is_smaller(synthetic_dir, tmp_path):
    from tiling.config import StoreConfig

    _run([synthetic_dir / "tumor_a.tif"], tmp_path / "zstd")
    _run([synthetic_dir / "tumor_a.tif"], tmp_path / "jpeg", store=StoreConfig(codec="jpeg"))
    sizes = {
        name: sum(p.stat().st_size for p in (tmp_path / name / "tiles.zarr").rglob("c/**/*") if p.is_file())
        for name in ("zstd", "jpeg")
    }
    assert sizes["jpeg"] < sizes["zstd"] / 3
    lossless = open_store(tmp_path / "zstd" / "tiles.zarr" / "tumor_a")
    lossy = open_store(tmp_path / "jpeg" / "tiles.zarr" / "tumor_a")
    assert np.abs(lossy[0].astype(int) - lossless[0]).mean() < 4


def test_two_runs_on_one_output_folder_at_once(synthetic_dir, tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "pathgen.cli",
        "tile",
        str(synthetic_dir),
        "--out",
        str(out),
        "--no-progress",
        "store.tiles_per_shard=4",
    ]
    runs = [
        subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [(run.wait(), run.stdout.read()) for run in runs]
    for code, stdout in results:  # 3: it found a slide the other run was tiling, and says so
        assert code == 0 or (code == 3 and "locked by another live run" in stdout), (code, stdout)
    manifest = read_manifest(out)
    assert {row["status"] for row in manifest.values()} == {"done"}  # a skip never hides the run that tiled it
    assert sorted(manifest) == ["normal_b", "tumor_a"]
    reference, _ = _run([synthetic_dir], tmp_path / "alone", store=_small_shards())
    for slide_id in manifest:
        shared, alone = (
            open_store(out / "tiles.zarr" / slide_id),
            open_store(tmp_path / "alone" / "tiles.zarr" / slide_id),
        )
        np.testing.assert_array_equal(shared.read(np.arange(len(shared))), alone.read(np.arange(len(alone))))


def test_the_scheduling_process_does_not_import_the_workers_libraries():
    """The parent only schedules: tile_slide's libraries (~0.5 CPU-s to import) load in the fork server."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, pathgen.cli, pathgen.commands.tile, tiling.pipeline; "
        "print(sorted(m for m in ('tiling.tile_slide', 'tiling.qc', 'tiling.tissue', 'scipy.ndimage', "
        "'skimage', 'matplotlib') if m in sys.modules))"
    )
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo, env=env
    ).stdout
    assert loaded.strip() == "[]"


@pytest.mark.parametrize(
    "n_shards, n_stripes, order",
    [(5, 1, [0, 1, 2, 3, 4]), (5, 2, [0, 3, 1, 4, 2]), (7, 3, [0, 3, 5, 1, 4, 6, 2]), (2, 4, [0, 1])],
)
def test_shards_are_queued_as_interleaved_runs_of_neighbours(n_shards, n_stripes, order):
    from tiling.pipeline import striped

    assert striped(list(range(n_shards)), n_stripes) == order
