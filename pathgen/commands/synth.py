"""`pathgen synth OUT`: a folder of synthetic H&E-like pyramidal slides, for demos, tests and checks."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `synth` subcommand."""
    parser = subparsers.add_parser("synth", help="write synthetic whole-slide images", description=__doc__)
    parser.add_argument("out", type=Path, help="folder for the slides (and XML annotations of tumor regions)")
    parser.add_argument("--n", type=int, default=4, help="number of slides (default 4)")
    parser.add_argument("--width", type=int, default=8192, help="level-0 width in pixels")
    parser.add_argument("--height", type=int, default=6144, help="level-0 height in pixels")
    parser.add_argument("--mpp", type=float, default=0.25, help="level-0 µm/px (default 0.25, a 40× scan)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first slide; slide i uses seed+i")
    parser.add_argument("--tissue-regions", type=int, default=3, help="tissue pieces per slide")
    parser.add_argument("--tumor-regions", type=int, default=2, help="tumor areas on tumor slides")
    parser.add_argument("--tumor-every", type=int, default=2, help="every k-th slide has tumor (0: none)")
    parser.add_argument("--pen-strokes", type=int, default=0, help="pen-ink strokes per slide")
    parser.add_argument(
        "--lymph-node",
        action="store_true",
        help="lymph-node tissue: lymphoid sheets in a stroma capsule, tumor as carcinoma nests (as synthetic PCam)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the slides and print where they are."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from tiling.synthetic import SyntheticSlideSpec, write_synthetic_folder

    spec = SyntheticSlideSpec(
        width_px=args.width,
        height_px=args.height,
        mpp=args.mpp,
        seed=args.seed,
        tissue_regions=args.tissue_regions,
        tumor_regions=args.tumor_regions,
        pen_strokes=args.pen_strokes,
        lymph_node=args.lymph_node,
    )
    slides = write_synthetic_folder(args.out, args.n, spec, tumor_every=args.tumor_every)
    print(f"pathgen synth: {len(slides)} slides → {args.out}")
    return 0
