"""`pathgen ablate --config configs/genaug/ablation_tiny.yaml [key=value ...]`: generative augmentations
alone and combined against a baseline, same budget and seeds, with a results table (OUT/report/ablation.md).

The shared generative stages (round 1, VAE, LDM, view banks) are made once; each family × variant ×
seed then trains one SSL encoder, and all are benchmarked together. Re-run the command to continue.
"""

from __future__ import annotations

import argparse

from pathgen.commands.staged_run import add_pipeline_arguments, run_pipeline, stage_list


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `ablate` subcommand."""
    parser = subparsers.add_parser(
        "ablate", help="ablation of the generative augmentations (same budget and seeds)", description=__doc__
    )
    add_pipeline_arguments(parser, "configs/genaug/ablation_tiny.yaml", run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config and run (or continue) the ablation; exit status 2 if it could not start."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from pathgen.config import load_config
    from pathgen.resources import optional_packaged_file
    from pathgen.stages.ablate import AblationConfig, run_ablation

    def start():  # noqa: ANN202
        cfg = load_config(AblationConfig, optional_packaged_file(args.config), args.overrides)
        if args.no_progress:
            cfg.shared_overrides.append("progress=false")
        return run_ablation(cfg, stage_list(args.only), log=lambda text: print(text, flush=True))

    return run_pipeline("ablate", start, "ablation.md", "results table")
