"""The one `pathgen` command: each subcommand lives in pathgen.commands and imports its stage lazily."""

from __future__ import annotations

import argparse
import os
import sys

from pathgen import __version__
from pathgen.commands import (
    ablate,
    bench,
    embed,
    eval_gen,
    export,
    export_coords,
    export_features,
    generate,
    gensis,
    synth,
    synth_dataset,
    tile,
    train_ldm,
    train_ssl,
    train_vae,
)
from pathgen.config import ConfigError, is_override
from pathgen.errors import report_failure, show_tracebacks
from pathgen.run_log import setup_logging
from tiling.store import StoreError

COMMANDS = (
    tile,
    synth,
    synth_dataset,
    export_coords,
    train_ssl,
    export,
    embed,
    export_features,
    bench,
    train_vae,
    train_ldm,
    generate,
    eval_gen,
    gensis,
    ablate,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="pathgen", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pathgen {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def _place_trailing_words(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    """Words after options: key.sub=value go to the overrides, the rest to the inputs (argparse
    stops collecting positionals at the first option)."""
    if hasattr(args, "overrides"):
        words = getattr(args, "inputs", []) + extra
        args.overrides = args.overrides + [w for w in words if is_override(w)]
        extra = [w for w in words if not is_override(w)]
        if hasattr(args, "inputs"):
            args.inputs, extra = [w for w in extra if not w.startswith("-")], [w for w in extra if w.startswith("-")]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")


VERBOSITY_FLAGS = {"-q": "quiet", "--quiet": "quiet", "-v": "verbose", "--verbose": "verbose"}


def _take_verbosity_flags(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """--quiet / --verbose given after the subcommand (`pathgen train-ssl ... --quiet`) count too."""
    for word in extra:
        if word in VERBOSITY_FLAGS:
            setattr(args, VERBOSITY_FLAGS[word], True)
    return [word for word in extra if word not in VERBOSITY_FLAGS]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `pathgen` console script; returns the process exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    extra = _take_verbosity_flags(args, extra)
    if args.quiet and args.verbose:
        parser.error("--quiet and --verbose contradict each other; give one")
    setup_logging(-1 if args.quiet else 1 if args.verbose else 0, int(os.environ.get("RANK", "0")))
    _place_trailing_words(parser, args, extra)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("pathgen: interrupted; re-run the same command with --resume to continue", file=sys.stderr)
        return 130
    except (ValueError, OSError, StoreError) as err:  # bad input a command did not catch: one line, not a wall
        if show_tracebacks():
            raise
        return report_failure(args.command, err, 2 if isinstance(err, (ConfigError, FileNotFoundError)) else 1)


if __name__ == "__main__":
    sys.exit(main())
