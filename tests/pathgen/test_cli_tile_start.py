"""`pathgen tile` start-up: bad inputs are refused before anything is written; the shard may come from Slurm."""

from __future__ import annotations

import pytest
import yaml

from pathgen.cli import main
from tiling.manifest import read_manifest

FAST = ["--no-progress", "--mpp", "1.0", "--tile-size", "64"]
SLURM = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_STEP")


@pytest.fixture(autouse=True)
def _no_slurm(monkeypatch):
    for name in SLURM:  # the tests may themselves run inside a Slurm job array
        monkeypatch.delenv(name, raising=False)


def test_a_missing_input_is_a_start_up_error_that_writes_nothing(synthetic_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["tile", str(synthetic_dir), str(tmp_path / "typo"), "--out", str(out), *FAST]) == 2
    assert f"{tmp_path / 'typo'}: no such file or folder" in capsys.readouterr().err
    assert not out.exists()


def test_a_folder_without_slides_writes_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["tile", str(tmp_path / "empty"), "--out", str(tmp_path / "out"), *FAST]) == 2
    assert "no slides found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _runs(out) -> list[dict]:
    return [yaml.safe_load(path.read_text()) for path in sorted((out / "runs").glob("*.yaml"))]


def test_the_shard_comes_from_a_slurm_job_array(synthetic_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")  # --array=0-1: the second of two tasks
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "0")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    out = tmp_path / "out"
    assert main(["tile", str(synthetic_dir), "--out", str(out), *FAST]) == 0
    assert "shard 2/2 from SLURM_ARRAY_TASK_ID=1" in capsys.readouterr().err
    assert sorted(read_manifest(out)) == ["tumor_a"]  # sorted slides: normal_b is 1/2, tumor_a 2/2
    assert _runs(out)[0]["shard"] == "2/2"
    assert main(["tile", str(synthetic_dir), "--out", str(out), "--shard", "1/2", *FAST]) == 0  # the flag wins
    assert sorted(read_manifest(out)) == ["normal_b", "tumor_a"]
    assert [run["shard"] for run in _runs(out)] == ["2/2", "1/2"]  # one config per run, in run order


def test_an_unmappable_slurm_array_is_a_start_up_error(synthetic_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "9")  # --array=1,4,9
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert main(["tile", str(synthetic_dir), "--out", str(tmp_path / "out"), *FAST]) == 2
    assert "give --shard K/N" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
