"""Test-only fault injection: make a tiling worker crash or stall on a chosen slide.

The robustness tests need real worker deaths (`os._exit`, SIGKILL) and workers that are busy
when the main process is killed. They set the environment variable `PATHGEN_TILING_FAULT` to
`ACTION:STAGE:NAME`, for example `sigkill:shard1:crashme`:

* ACTION: `exit` (`os._exit(3)`), `sigkill` (the worker sends itself SIGKILL) or `sleep` (60 s);
* STAGE: `plan`, `overview` (thumbnail arrays and QC picture), `shard` (any shard of the slide)
  or `shardK` (its shard with index K);
* NAME: a substring of the slide's file name.

The variable is read once by the main process and handed to its workers; it acts only inside a
worker process, so at worst it stops the tiling run of whoever set it. Unset, nothing happens.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

FAULT_ENV = "PATHGEN_TILING_FAULT"
_ACTIONS = ("exit", "sigkill", "sleep")
_SLEEP_S = 60.0
_active: Fault | None = None


@dataclass(frozen=True)
class Fault:
    """One injected fault: what to do, at which stage, on slides whose file name contains `name`."""

    action: str
    stage: str
    name: str

    def matches(self, stage: str, shard_index: int | None, slide_path: Path) -> bool:
        """Whether this fault fires for `stage` (and shard) of the slide at `slide_path`."""
        if self.name not in slide_path.name:
            return False
        if self.stage == stage:
            return True
        return stage == "shard" and self.stage == f"shard{shard_index}"


def parse_fault(spec: str | None) -> Fault | None:
    """The fault a `PATHGEN_TILING_FAULT` value asks for; None when unset or empty."""
    if not spec:
        return None
    parts = spec.split(":", 2)
    if (
        len(parts) != 3
        or parts[0] not in _ACTIONS
        or not parts[1].startswith(("plan", "overview", "shard"))
        or not parts[2]
    ):
        raise ValueError(
            f"{FAULT_ENV}={spec!r}: expected ACTION:STAGE:NAME with ACTION one of "
            f"{', '.join(_ACTIONS)} and STAGE plan, overview, shard or shardK"
        )
    return Fault(*parts)


def fault_from_environment() -> str | None:
    """The raw fault spec of this process's environment (read in the main process)."""
    return os.environ.get(FAULT_ENV) or None


def install_fault(spec: str | None) -> None:
    """Worker initializer: arm the fault `spec` (a `PATHGEN_TILING_FAULT` value) in this worker."""
    global _active
    _active = parse_fault(spec)


def fault_point(stage: str, slide_path: Path, shard_index: int | None = None) -> None:
    """Crash or stall here if the armed fault names this stage of this slide; otherwise nothing."""
    if _active is None or not _active.matches(stage, shard_index, slide_path):
        return
    if _active.action == "exit":
        os._exit(3)
    if _active.action == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(_SLEEP_S)
