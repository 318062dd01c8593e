"""`pathgen bench TASK_OR_SUITE.yaml --encoder DIR [...] [key=value ...]`: benchmark frozen encoders.

Writes config.yaml (the resolved tasks), results.json, results.md and plots to --out, and prints
the Markdown table. `--encoder` takes a pathgen or timm model folder, a published-encoder recipe
(`uni:/models/UNI`), an existing CLAM / TRIDENT feature folder (`features:DIR`, slide tasks) or
random:<timm name> (a random-init baseline).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pathgen.commands.training import add_overwrite_argument, guarded_run
from pathgen.errors import report_failure


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `bench` subcommand."""
    parser = subparsers.add_parser(
        "bench", help="benchmark frozen encoders on patch and slide tasks", description=__doc__
    )
    parser.add_argument("config", type=Path, help="a task or suite YAML (benchmarks/suites/)")
    parser.add_argument(
        "--encoder",
        action="append",
        required=True,
        help="pathgen or timm model folder, <recipe>:<weights> (uni, uni2-h, virchow2, h-optimus-0, "
        "h-optimus-1, prov-gigapath), features:<CLAM/TRIDENT folder> (slide tasks) or "
        "random:<timm name>; NAME=… names its table row; repeat for several",
    )
    parser.add_argument("--out", type=Path, default=Path("bench_out"), help="results folder (default bench_out)")
    parser.add_argument(
        "--cache", type=Path, default=None, help="feature and tile cache (default: <out>/cache); share it between runs"
    )
    parser.add_argument(
        "--resume", action="store_true", help="write into an existing --out (its cached features are reused)"
    )
    add_overwrite_argument(parser)
    parser.set_defaults(run=run, overrides=[])


def run(args: argparse.Namespace) -> int:
    """Load the tasks, run every encoder on each, write and print the report."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from pathgen.config import ConfigError
    from pathgen.stages.bench import load_tasks, run_bench, table

    try:
        tasks = load_tasks(args.config, list(args.overrides))
        with guarded_run(args.out, args):
            results = run_bench(
                tasks,
                args.encoder,
                args.out,
                args.cache or args.out / "cache",
                log=lambda text: print(text, file=sys.stderr),
            )
    except (ConfigError, ValueError, FileNotFoundError) as err:
        return report_failure("bench", err, 2)
    print(table(results))
    print(f"pathgen bench: {len(results)} results → {args.out}/results.json, results.md")
    return 0
