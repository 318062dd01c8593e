"""`pathgen embed MODEL OUT`: features of every tile, written beside the tiles (resumable)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pathgen.errors import report_failure


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `embed` subcommand."""
    parser = subparsers.add_parser("embed", help="compute tile embeddings with a saved encoder", description=__doc__)
    parser.add_argument(
        "model_dir",
        help="a pathgen or timm model folder, or <recipe>:<weights> (uni, uni2-h, "
        "virchow2, h-optimus-0, h-optimus-1, prov-gigapath)",
    )
    parser.add_argument("tile_dir", type=Path, help="a `pathgen tile` output folder")
    parser.add_argument("--name", help="name of the embedding set (default: the model folder's name)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="tile-reading processes")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="re-embed slides whose set of this name was made by another encoder (default: refuse)",
    )
    parser.add_argument(
        "--allow-pickle-weights",
        action="store_true",
        help="read a .bin/.pth weights file with torch.load(weights_only=True)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Embed the folder."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from pathgen.models.embeddings import embed_folder
    from tiling.store import StoreError

    try:
        counts = embed_folder(
            args.model_dir,
            args.tile_dir,
            args.name,
            args.device,
            args.batch_size,
            args.workers,
            progress=not args.no_progress,
            overwrite=args.overwrite,
            allow_pickle=args.allow_pickle_weights,
        )
    except (StoreError, ValueError, FileNotFoundError) as err:
        return report_failure("embed", err, 2)
    print(f"pathgen embed: {counts['embedded']} slides embedded, {counts['skipped']} already done")
    return 0
