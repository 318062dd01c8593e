"""`pathgen eval-gen` (being built in this change; the owner replaces this module)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `eval-gen` subcommand."""
    parser = subparsers.add_parser("eval-gen", help="(in progress)")
    parser.set_defaults(run=lambda args: 2, overrides=[])
