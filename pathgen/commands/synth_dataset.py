"""`pathgen synth-dataset NAME OUT`: a small synthetic copy of a benchmark dataset in its published format.

The copy is cut from synthetic slides (tumor vs normal texture) and read back with the
dataset's own reader before the command returns, so a success also checks the install.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pathgen.errors import report_failure

NAMES = ("pcam", "crc", "mhist", "bach", "camelyon16")
COUNTS_HELP = (
    "comma-separated counts: pcam train,val,test patches (default 256,64,64); crc train,test tiles "
    "per class (32,8); mhist train,test images (96,32); bach images per class (10); camelyon16 "
    "train,test slides (4,2)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `synth-dataset` subcommand."""
    parser = subparsers.add_parser(
        "synth-dataset", help="write a small synthetic benchmark dataset", description=__doc__
    )
    parser.add_argument("dataset", choices=NAMES, help="which dataset's format to write")
    parser.add_argument("out", type=Path, help="new (or empty) folder to write it to")
    parser.add_argument("--n", default=None, help=COUNTS_HELP)
    parser.add_argument("--seed", type=int, default=0, help="seed of everything drawn (default 0)")
    parser.add_argument(
        "--slide-size",
        default="8192x6144",
        help="camelyon16 only: level-0 WIDTHxHEIGHT of each slide at 0.25 µm/px (default 8192x6144)",
    )
    parser.add_argument(
        "--stain-shift",
        type=float,
        default=None,
        help="pcam only: θ of the per-site H&E shift of val/test (default 0.3; 0 = the plain, colour-separable task)",
    )
    parser.set_defaults(run=run)


def _counts(text: str | None, names: tuple[str, ...], dataset: str) -> dict[str, int]:
    if text is None:
        return {}
    parts = text.split(",")
    if len(parts) != len(names) or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"{dataset} takes --n {','.join(names)} ({len(names)} positive integer(s)), got {text!r}")
    return dict(zip(names, map(int, parts)))


def _slide_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"--slide-size {text!r} is not WIDTHxHEIGHT in pixels")
    return int(parts[0]), int(parts[1])


def run(args: argparse.Namespace) -> int:
    """Write the dataset, read it back with its reader and print what is there."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from pathgen.eval.datasets import read_dataset
    from pathgen.eval.synth_datasets import (
        COUNT_NAMES,
        READ_OPTIONS,
        SYNTHETIC_DATASETS,
    )

    try:
        options = _counts(args.n, COUNT_NAMES[args.dataset], args.dataset)
        if args.dataset == "camelyon16":
            options["size"] = _slide_size(args.slide_size)
        if args.stain_shift is not None:
            if args.dataset != "pcam" or args.stain_shift < 0:
                raise ValueError(f"--stain-shift applies to pcam only and must be ≥ 0, got {args.stain_shift}")
            options["stain_shift"] = args.stain_shift
        out = SYNTHETIC_DATASETS[args.dataset](args.out, seed=args.seed, **options)
        dataset = read_dataset(args.dataset, out, **READ_OPTIONS.get(args.dataset, {}))
    except ValueError as err:
        return report_failure("synth-dataset", err, 2)
    print(f"pathgen synth-dataset: {dataset.summary()} → {out}")
    return 0
