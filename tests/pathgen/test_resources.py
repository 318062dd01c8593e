"""The default configs are found without the working directory, and the wheel ships every one of them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pathgen.resources import PACKAGE_DATA, SOURCE_ROOT, packaged_file

ROOT = Path(__file__).resolve().parents[2]


def test_a_relative_default_is_found_from_another_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = packaged_file("configs/ssl/dino_tiny.yaml")
    assert found.is_absolute() and found.read_text() == (ROOT / "configs" / "ssl" / "dino_tiny.yaml").read_text()
    assert packaged_file("benchmarks/suites/synthetic.yaml").is_file()


def test_a_file_where_the_command_runs_wins(tmp_path, monkeypatch):
    (tmp_path / "configs" / "ssl").mkdir(parents=True)
    (tmp_path / "configs" / "ssl" / "dino_tiny.yaml").write_text("method: simclr\n")
    monkeypatch.chdir(tmp_path)
    assert packaged_file("configs/ssl/dino_tiny.yaml") == Path("configs/ssl/dino_tiny.yaml")


def test_other_and_missing_paths_come_back_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert packaged_file("my.yaml") == Path("my.yaml")  # not a packaged folder: the reader names it
    assert packaged_file("configs/ssl/no_such.yaml") == Path("configs/ssl/no_such.yaml")
    assert packaged_file(tmp_path / "x.yaml") == tmp_path / "x.yaml"


def test_the_wheel_globs_cover_every_tracked_config():
    """pyproject's package-data patterns, applied to pathgen/package_data (links to the repository's
    folders), match exactly the tracked configs/ and benchmarks/suites/ YAML files."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["pathgen"]
    packaged = {
        p.relative_to(PACKAGE_DATA).as_posix() for pattern in patterns for p in (ROOT / "pathgen").glob(pattern)
    }
    tracked = subprocess.run(
        ["git", "ls-files", "configs", "benchmarks/suites"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert packaged == {t for t in tracked if t.endswith(".yaml")} and len(packaged) > 20
    assert SOURCE_ROOT == ROOT
