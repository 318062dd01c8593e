"""`pathgen eval-gen BANK [--encoder MODEL ...] [--inception FILE]`: generation-quality metrics of a view bank.

Source retrieval and conditioning fidelity beside the real tile at the bank's size, its VAE
reconstruction and shuffled views; precision / recall against real tiles; Fréchet distance against
the real↔real floor (below it: flagged as likely copies) — in the bank's conditioning encoder plus any
named with --encoder; optional Inception FID from a local weights file. Writes BANK/eval/metrics.json and metrics.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pathgen.errors import report_failure


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `eval-gen` subcommand."""
    parser = subparsers.add_parser("eval-gen", help="generation-quality metrics of a view bank", description=__doc__)
    parser.add_argument("bank", type=Path, help="a `pathgen generate` output folder (holds bank.zarr)")
    parser.add_argument(
        "--encoder",
        type=Path,
        action="append",
        default=[],
        metavar="MODEL",
        help="another encoder folder to measure in (repeatable); the bank's conditioning "
        "encoder is always included when its model folder is still on disk",
    )
    parser.add_argument(
        "--inception",
        type=Path,
        metavar="FILE",
        help="local torchvision inception_v3 weights (.safetensors) for FID; never downloaded",
    )
    parser.add_argument("--out", type=Path, help="report folder (default BANK/eval)")
    parser.add_argument("--max-sources", type=int, help="evaluate a random subset of this many sources")
    parser.add_argument("--bootstrap", type=int, default=20, help="bootstrap resamples for the FD spread (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate the bank and print where the report went."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from pathgen.stages.eval_gen import eval_gen
    from tiling.store import StoreError

    if (
        args.batch_size < 1
        or (args.max_sources is not None and args.max_sources < 2)
        or args.bootstrap == 1
        or args.bootstrap < 0
    ):
        print(
            "pathgen eval-gen: --batch-size must be >= 1, --max-sources >= 2 and --bootstrap 0 or >= 2", file=sys.stderr
        )
        return 2
    try:
        metrics = eval_gen(
            args.bank,
            args.encoder,
            args.out,
            args.batch_size,
            args.device,
            args.inception,
            max_sources=args.max_sources,
            n_bootstrap=args.bootstrap,
            seed=args.seed,
        )
    except (StoreError, ValueError, FileNotFoundError) as err:
        return report_failure("eval-gen", err, 2)
    out = args.out or args.bank / "eval"
    for name, m in metrics["encoders"].items():
        floor = m["frechet"]["real_vs_sources"]
        print(
            f"pathgen eval-gen: {name}: FD {m['frechet']['views_vs_sources']:.4g} "
            f"(real floor {'n/a' if floor is None else f'{floor:.4g}'}), "
            f"fidelity {m['fidelity']['fidelity']:.3f} (random pairs {m['fidelity']['random_pairs']:.3f})"
        )
    print(f"pathgen eval-gen: report in {out / 'metrics.md'}")
    return 0
