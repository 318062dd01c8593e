"""`pathgen gensis --config configs/genaug/gensis_demo.yaml [key=value ...]`: the whole Gen-SIS recipe.

SSL round 1 → embeddings → VAE → LDM → view banks → eval-gen → SSL round 2 with generated views →
benchmark of both encoders → OUT/report/report.md. Every stage is skipped when its output is
complete, so re-running the same command continues a killed run. `--only a,b` runs just those
stages (e.g. the training stages under torchrun; see configs/genaug/gensis_vits16.yaml).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `gensis` subcommand."""
    parser = subparsers.add_parser("gensis", description=__doc__,
                                   help="run the Gen-SIS loop (SSL → LDM → views → SSL → bench → report)")
    parser.add_argument("--config", type=Path, help="YAML config (configs/genaug/*.yaml)")
    parser.add_argument("--only", help="comma-separated stages to run (default: every incomplete stage)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run, overrides=[])


def run(args: argparse.Namespace) -> int:
    """Resolve the config and run (or continue) the loop; exit status 2 if it could not start."""
    from pathgen.config import ConfigError, load_config
    from pathgen.genaug.pipeline import GenSISConfig, run_gensis
    from pathgen.genaug.stages import PipelineError
    from tiling.store import StoreError

    try:
        cfg = load_config(GenSISConfig, args.config, args.overrides + (["progress=false"] if args.no_progress else []))
        only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
        report = run_gensis(cfg, only, log=lambda text: print(text, flush=True))
    except (ConfigError, PipelineError, StoreError, ValueError, FileNotFoundError) as err:
        print(f"pathgen gensis: {err}", file=sys.stderr)
        return 2
    if (report / "report.md").is_file():
        print(f"pathgen gensis: report in {report / 'report.md'}")
    return 0
