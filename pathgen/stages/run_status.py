"""The status file of a multi-stage run: `OUT/status.json`, one entry per stage.

Each entry records the stage's folder, its status in the latest invocation (pending, running, done,
skipped = complete from an earlier invocation, failed with the error), the wall seconds of the run
that produced its output, and a fingerprint of the settings that output was made with. The
fingerprint chains through a stage's inputs, so changing round 1 of Gen-SIS marks every later
stage as made with other settings, and a re-run refuses to mix them (see `stale_stages`).
The file is rewritten after every change, so a killed run leaves an accurate record.

Each entry also keeps the settings themselves, so that a pathgen which has since gained a setting
(a new config field, at a default that does what the code did before) still recognises the outputs
it made: `settings_compatible` accepts them when every recorded setting is unchanged and every new
one is at its default.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pathgen.atomic import read_json, write_json_atomic

STATUS_FILE = "status.json"
IGNORED_KEYS = ("progress",)  # settings that do not change outputs


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in IGNORED_KEYS}
    if isinstance(value, (list, tuple)):
        return [_strip(v) for v in value]
    return value


def fingerprint(settings: Any, inputs: Iterable[str] = ()) -> str:
    """A short hash of a stage's resolved settings and its inputs' fingerprints."""
    text = json.dumps({"settings": _strip(settings), "inputs": list(inputs)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plain(value: Any) -> Any:
    """Settings as JSON would give them back (tuples as lists, paths as strings), for recording and comparing."""
    return json.loads(json.dumps(_strip(value), sort_keys=True, default=str))


def _flatten(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    if isinstance(value, dict) and value:
        flat: dict[tuple[str, ...], Any] = {}
        for key, item in value.items():
            flat.update(_flatten(item, (*prefix, str(key))))
        return flat
    return {prefix: value}


def settings_compatible(recorded: Any, current: Any, defaults: Any = None) -> bool:
    """Whether outputs made with the `recorded` settings are what the `current` ones would make: every
    recorded setting has its value still, and each setting the record lacks (one added to pathgen since)
    is at its value in `defaults` (the config class's defaults). A setting that is gone counts as a change."""
    old, new = _flatten(plain(recorded)), _flatten(plain(current))
    default = _flatten(plain(defaults)) if defaults is not None else {}
    if set(old) - set(new):
        return False
    return all(old[key] == value if key in old else default.get(key, object()) == value for key, value in new.items())


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class Manifest:
    """Read-modify-write access to `status.json` (written only by the main process)."""

    def __init__(self, path: str | Path, write: bool = True):
        self.path, self.write = Path(path), write
        self.stages: dict[str, dict] = {}
        if self.path.is_file():
            try:
                self.stages = json.loads(self.path.read_text()).get("stages", {})
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{self.path}: unreadable status file ({err}); delete it to start the record "
                    "afresh (finished stage outputs are kept and skipped)"
                ) from err

    def recorded_fingerprint(self, stage: str) -> str | None:
        """The fingerprint the stage's existing output was made with, if one was recorded."""
        return self.stages.get(stage, {}).get("fingerprint")

    def recorded_settings(self, stage: str) -> Any:
        """The settings the stage's existing output was made with, if recorded (records from before the
        field have only the fingerprint)."""
        return self.stages.get(stage, {}).get("settings")

    def update(self, stage: str, **fields: Any) -> None:
        """Merge `fields` into the stage's entry and rewrite the file."""
        self.stages.setdefault(stage, {}).update(fields, updated=_now())
        if self.write:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, {"stages": self.stages}, indent=1)

    def seconds(self) -> dict[str, float]:
        """{stage: wall seconds of the run that produced its output} for the stages that have one."""
        return {name: entry["seconds"] for name, entry in self.stages.items() if entry.get("seconds") is not None}


def read_status(out_dir: str | Path) -> dict[str, dict]:
    """The stages of `OUT/status.json` ({} when there is none)."""
    path = Path(out_dir) / STATUS_FILE
    return read_json(path, "status file").get("stages", {}) if path.is_file() else {}
