"""`pathgen ablate --config configs/genaug/ablation_tiny.yaml [key=value ...]`: generative augmentations
alone and combined against a baseline, same budget and seeds, with a results table (OUT/report/ablation.md).

The shared generative stages (round 1, VAE, LDM, view banks) are made once; each family × variant ×
seed then trains one SSL encoder, and all are benchmarked together. Re-run the command to continue.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `ablate` subcommand."""
    parser = subparsers.add_parser("ablate", help="ablation of the generative augmentations (same budget and seeds)",
                                   description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML config (configs/genaug/ablation_tiny.yaml)")
    parser.add_argument("--only", help="comma-separated stages to run (default: every incomplete stage)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run, overrides=[])


def run(args: argparse.Namespace) -> int:
    """Resolve the config and run (or continue) the ablation; exit status 2 if it could not start."""
    from pathgen.config import ConfigError, load_config
    from pathgen.genaug.ablation import AblationConfig, run_ablation
    from pathgen.genaug.stages import PipelineError
    from tiling.store import StoreError

    try:
        cfg = load_config(AblationConfig, args.config, args.overrides)
        if args.no_progress:
            cfg.shared_overrides.append("progress=false")
        only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
        report = run_ablation(cfg, only, log=lambda text: print(text, flush=True))
    except (ConfigError, PipelineError, StoreError, ValueError, FileNotFoundError) as err:
        print(f"pathgen ablate: {err}", file=sys.stderr)
        return 2
    if (report / "ablation.md").is_file():
        print(f"pathgen ablate: results table in {report / 'ablation.md'}")
    return 0
