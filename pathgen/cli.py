"""The one `pathgen` command: each subcommand lives in pathgen.commands and imports its stage lazily."""

from __future__ import annotations

import argparse
import sys

from pathgen import __version__
from pathgen.commands import export_coords, synth, tile

COMMANDS = (tile, synth, export_coords)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="pathgen", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pathgen {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pathgen` console script; returns the process exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("pathgen: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
