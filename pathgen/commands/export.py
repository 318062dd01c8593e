"""`pathgen export RUN --out MODEL`: a run's encoder as model.safetensors + config.json (pathgen and timm load it)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pathgen.errors import report_failure


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export` subcommand."""
    parser = subparsers.add_parser("export", help="export a trained encoder", description=__doc__)
    parser.add_argument("run_dir", type=Path, help="a `pathgen train-ssl` run folder")
    parser.add_argument("--out", required=True, type=Path, help="model folder to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export the backbone of the run's last checkpoint."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from pathgen.config import ConfigError
    from pathgen.stages.train_ssl import export_run

    try:
        out = export_run(args.run_dir, args.out)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        return report_failure("export", err, 2)
    print(
        f"pathgen export: encoder saved in {out} (load with pathgen.models.load_encoder, or "
        f"timm.create_model('local-dir:{out}', pretrained=True))"
    )
    return 0
