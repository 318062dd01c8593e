"""`pathgen export-coords OUT --out DIR`: tile coordinates as CLAM/TRIDENT-style h5 files."""

from __future__ import annotations

import argparse
from pathlib import Path

from pathgen.errors import report_failure


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `export-coords` subcommand."""
    parser = subparsers.add_parser("export-coords", help="write CLAM/TRIDENT h5 coordinate files", description=__doc__)
    parser.add_argument("tile_dir", type=Path, help="a `pathgen tile` output folder")
    parser.add_argument("--out", required=True, type=Path, help="folder for <slide_id>.h5 files")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export every complete store's coordinates."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from tiling.export import export_folder_h5
    from tiling.store import StoreError

    try:
        written = export_folder_h5(args.tile_dir, args.out)
    except StoreError as err:
        return report_failure("export-coords", err, 2)
    print(f"pathgen export-coords: {len(written)} files → {args.out}")
    return 0
