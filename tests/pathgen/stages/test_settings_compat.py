"""Outputs made before pathgen gained a setting are still recognised: a stage whose recorded settings
equal today's, apart from new settings at their defaults, is skipped, not refused as stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pathgen.stages.run_status import STATUS_FILE, read_status, settings_compatible
from pathgen.stages.steps import PipelineError, Stage, run_stages

DEFAULTS = {"lr": 0.001, "train": {"steps": 10, "cache": False}, "progress": True}


@pytest.mark.parametrize(
    ("recorded", "current", "compatible"),
    [
        ({"lr": 0.001, "train": {"steps": 10}}, {"lr": 0.001, "train": {"steps": 10}}, True),
        ({"lr": 0.001, "train": {"steps": 10}}, {"lr": 0.002, "train": {"steps": 10}}, False),
        ({"lr": 0.001, "train": {"steps": 10}}, {"lr": 0.001, "train": {"steps": 10, "cache": False}}, True),
        ({"lr": 0.001, "train": {"steps": 10}}, {"lr": 0.001, "train": {"steps": 10, "cache": True}}, False),
        ({"lr": 0.001, "train": {"steps": 10}}, {"lr": 0.001, "train": {"steps": 10, "unknown": 1}}, False),
        ({"lr": 0.001, "gone": 3, "train": {"steps": 10}}, {"lr": 0.001, "train": {"steps": 10}}, False),
        ({"lr": 0.001, "progress": False}, {"lr": 0.001, "progress": True}, True),  # progress changes no output
        ({"paths": ["a", "b"], "lr": 1}, {"paths": ("a", Path("b")), "lr": 1.0}, True),  # as JSON / YAML give them
    ],
)
def test_settings_compatible(recorded, current, compatible) -> None:
    assert settings_compatible(recorded, current, DEFAULTS) is compatible


def _stages(folder: Path, settings: dict, log: list[str]) -> list[Stage]:
    """Two stages, B reading A; each writes its config.yaml (as pathgen's runs do) and a marker."""

    def make(name: str, inputs: tuple[str, ...]) -> Stage:
        out = folder / name

        def run() -> None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.yaml").write_text(yaml.safe_dump(settings))
            (out / "done").touch()
            log.append(name)

        return Stage(name, out, settings, (out / "done").is_file, run, inputs, defaults=DEFAULTS)

    return [make("a", ()), make("b", ("a",))]


OLD = {"lr": 0.001, "train": {"steps": 10}}  # what an older pathgen resolved: no `cache` setting yet


@pytest.mark.parametrize("record", ["status", "folder config.yaml"])
def test_a_new_setting_at_its_default_keeps_earlier_outputs(tmp_path, record) -> None:
    log: list[str] = []
    run_stages(_stages(tmp_path, OLD, log), tmp_path)
    if record == "folder config.yaml":  # a status file from before settings were recorded
        status = json.loads((tmp_path / STATUS_FILE).read_text())
        for entry in status["stages"].values():
            del entry["settings"]
        (tmp_path / STATUS_FILE).write_text(json.dumps(status))
    new = {"lr": 0.001, "train": {"steps": 10, "cache": False}}
    run_stages(_stages(tmp_path, new, log), tmp_path)
    assert log == ["a", "b"]  # nothing ran again
    after = read_status(tmp_path)
    assert all(entry["status"] == "skipped" and entry["settings"] == new for entry in after.values())
    run_stages(_stages(tmp_path, new, log), tmp_path)  # and the record now matches exactly
    assert log == ["a", "b"]


@pytest.mark.parametrize(
    "changed",
    [
        {"lr": 0.001, "train": {"steps": 10, "cache": True}},  # a new setting away from its default
        {"lr": 0.002, "train": {"steps": 10, "cache": False}},  # a recorded setting changed
    ],
)
def test_a_real_change_is_still_refused(tmp_path, changed) -> None:
    run_stages(_stages(tmp_path, OLD, []), tmp_path)
    with pytest.raises(PipelineError, match="other settings"):
        run_stages(_stages(tmp_path, changed, []), tmp_path)


def test_without_any_record_of_the_settings_a_changed_fingerprint_is_refused(tmp_path) -> None:
    run_stages(_stages(tmp_path, OLD, []), tmp_path)
    status = json.loads((tmp_path / STATUS_FILE).read_text())
    for entry in status["stages"].values():
        del entry["settings"]
    (tmp_path / STATUS_FILE).write_text(json.dumps(status))
    for name in ("a", "b"):
        (tmp_path / name / "config.yaml").unlink()
    with pytest.raises(PipelineError, match="other settings"):
        run_stages(_stages(tmp_path, {"lr": 0.001, "train": {"steps": 10, "cache": False}}, []), tmp_path)
