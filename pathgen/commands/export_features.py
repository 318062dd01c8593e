"""`pathgen export-features TILES --embeddings NAME --format clam|trident|eva --out DIR`: features for MIL codebases."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export-features` subcommand."""
    parser = subparsers.add_parser(
        "export-features", help="write embeddings in CLAM, TRIDENT or eva layout", description=__doc__
    )
    parser.add_argument("tile_dir", type=Path, help="a `pathgen tile` folder embedded with `pathgen embed`")
    parser.add_argument("--embeddings", required=True, help="name of the embedding set (pathgen embed --name)")
    parser.add_argument("--format", required=True, choices=["clam", "trident", "eva"])
    parser.add_argument("--out", required=True, type=Path, help="folder to write")
    parser.add_argument("--labels", type=Path, help="slide-label CSV (slide_id, label[, split, case_id])")
    parser.add_argument("--encoder-name", help="TRIDENT's features_<encoder> folder name (default: --embeddings)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export every slide's features."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from pathgen.feature_formats import export_features
    from tiling.store import StoreError

    try:
        summary = export_features(args.tile_dir, args.embeddings, args.format, args.out, args.labels, args.encoder_name)
    except (StoreError, ValueError, FileNotFoundError) as err:
        print(f"pathgen export-features: {err}", file=sys.stderr)
        return 2
    print(
        f"pathgen export-features: {summary['slides']} slides ({summary['dim']}-d) in {args.format} layout → {args.out}"
    )
    return 0
