"""`pathgen gensis --config configs/genaug/gensis_demo.yaml [key=value ...]`: the whole Gen-SIS recipe.

SSL round 1 → embeddings → VAE → LDM → view banks → eval-gen → SSL round 2 with generated views →
benchmark of both encoders → OUT/report/report.md. Every stage is skipped when its output is
complete, so re-running the same command with `--resume` continues a killed run. `--only a,b` runs just those
stages (e.g. the training stages under torchrun; see configs/genaug/gensis_vits16.yaml).
"""

from __future__ import annotations

import argparse

from pathgen.commands.staged_run import add_pipeline_arguments, run_pipeline, stage_list
from pathgen.commands.training import add_overwrite_argument, guarded_run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `gensis` subcommand."""
    parser = subparsers.add_parser(
        "gensis", description=__doc__, help="run the Gen-SIS loop (SSL → LDM → views → SSL → bench → report)"
    )
    add_pipeline_arguments(parser, "configs/genaug/*.yaml", run)
    parser.add_argument("--resume", action="store_true", help="continue the run in out= (complete stages are skipped)")
    add_overwrite_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Resolve the config and run (or continue) the loop; exit status 2 if it could not start."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from pathgen.config import load_config
    from pathgen.resources import optional_packaged_file
    from pathgen.stages.gensis import GenSISConfig, run_gensis

    def start():  # noqa: ANN202
        overrides = args.overrides + (["progress=false"] if args.no_progress else [])
        cfg = load_config(GenSISConfig, optional_packaged_file(args.config), overrides)
        with guarded_run(cfg.out, args):
            return run_gensis(cfg, stage_list(args.only), log=lambda text: print(text, flush=True))

    return run_pipeline("gensis", start, "report.md", "report")
