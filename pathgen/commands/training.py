"""What the training commands share: `--config` / `--resume` / `--overwrite` flags, config resolution
(a resumed run reads its own saved config), the run-folder guard and lock (pathgen.run_folder) and
one-line errors (exit 2; 1 when a started run diverged)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from pathgen.errors import report_failure
from pathgen.run_folder import RunLock, is_main_process, prepare_run_folder


def add_training_arguments(parser: argparse.ArgumentParser, config_glob: str, run: Callable) -> None:
    """--config and --resume, and trailing key=value overrides collected into args.overrides."""
    parser.add_argument("--config", type=Path, help=f"YAML config ({config_glob})")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from out/checkpoints/last.pt (without --config, out's saved config)",
    )
    add_overwrite_argument(parser)
    parser.set_defaults(run=run, overrides=[])


def add_overwrite_argument(parser: argparse.ArgumentParser) -> None:
    """--overwrite: replace an existing run folder (without it, or --resume, an existing one is refused)."""
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the pathgen outputs already in the output folder and start afresh",
    )


def guarded_run(out: str | Path, args: argparse.Namespace):  # noqa: ANN201 -- a context manager
    """Refuse an existing `out` unless --resume / --overwrite, then hold its lock for the run (rank 0 only:
    under torchrun the other ranks leave the folder to it)."""
    if not is_main_process():
        return nullcontext()
    prepare_run_folder(out, getattr(args, "resume", False), getattr(args, "overwrite", False))
    return RunLock(out)


def run_training(
    command: str, args: argparse.Namespace, config_class: type, train: Callable[[Any, bool], Path], what: str
) -> int:
    """Resolve the config of `command` and train; print where the result went, or one line of error."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from pathgen.config import ConfigError, is_override, load_config, parse_override
    from pathgen.train import TrainingDiverged
    from tiling.store import StoreError

    config_path = args.config
    if args.resume and config_path is None:
        out = dict(parse_override(o) for o in args.overrides if is_override(o)).get("out")
        config_path = Path(out) / "config.yaml" if out else None
    try:
        cfg = load_config(config_class, config_path, args.overrides)
        with guarded_run(cfg.out, args):
            result = train(cfg, args.resume)
    except (ConfigError, ValueError, FileNotFoundError, StoreError, TrainingDiverged) as err:
        return report_failure(command, err, 1 if isinstance(err, TrainingDiverged) else 2)
    if is_main_process():
        print(f"pathgen {command}: {what} saved in {result}")
    return 0
