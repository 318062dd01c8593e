"""What the training commands share: `--config` / `--resume` flags, config resolution (a resumed run
reads its own saved config) and one-line errors (exit 2; 1 when the loss diverged)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable

from pathgen.errors import report_failure


def add_training_arguments(parser: argparse.ArgumentParser, config_glob: str, run: Callable) -> None:
    """--config and --resume, and trailing key=value overrides collected into args.overrides."""
    parser.add_argument("--config", type=Path, help=f"YAML config ({config_glob})")
    parser.add_argument("--resume", action="store_true",
                        help="continue from out/checkpoints/last.pt (without --config, out's saved config)")
    parser.set_defaults(run=run, overrides=[])


def run_training(command: str, args: argparse.Namespace, config_class: type, train: Callable[[Any, bool], Path],
                 what: str) -> int:
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
        result = train(cfg, args.resume)
    except (ConfigError, ValueError, FileNotFoundError, StoreError, TrainingDiverged) as err:
        return report_failure(command, err, 1 if isinstance(err, TrainingDiverged) else 2)
    print(f"pathgen {command}: {what} saved in {result}")
    return 0
