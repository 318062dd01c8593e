"""What the multi-stage commands (`gensis`, `ablate`) share: `--config` / `--only` / `--no-progress`,
the stage list parsed from `--only`, and one-line errors (exit 2) for a run that could not start."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from pathgen.errors import report_failure


def add_pipeline_arguments(parser: argparse.ArgumentParser, config_example: str, run: Callable) -> None:
    """--config, --only and --no-progress, and trailing key=value overrides collected into args.overrides."""
    parser.add_argument("--config", type=Path, help=f"YAML config ({config_example})")
    parser.add_argument("--only", help="comma-separated stages to run (default: every incomplete stage)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run, overrides=[])


def stage_list(only: str | None) -> list[str] | None:
    """The stage names of `--only a,b` (None: every stage)."""
    return [name.strip() for name in only.split(",") if name.strip()] if only else None


def run_pipeline(command: str, start: Callable[[], Path], result_file: str, what: str) -> int:
    """Run `start()` (resolve the config, run the stages; returns the report folder) and say where
    `result_file` went, or print one line of error and return 2."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from pathgen.config import ConfigError
    from pathgen.stages.steps import PipelineError
    from tiling.store import StoreError

    try:
        report = start()
    except (ConfigError, PipelineError, StoreError, ValueError, FileNotFoundError) as err:
        return report_failure(command, err, 2)
    if (report / result_file).is_file():
        print(f"pathgen {command}: {what} in {report / result_file}")
    return 0
