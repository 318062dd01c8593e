"""`pathgen train-ssl --config configs/ssl/dino_vits16.yaml data=OUT/ out=RUN/`: learn an encoder.

Under torchrun every process runs this command; rank 0 writes the run folder.
"""

from __future__ import annotations

import argparse

from pathgen.commands.training import add_training_arguments, run_training


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train-ssl` subcommand."""
    parser = subparsers.add_parser("train-ssl", help="train an SSL encoder on tile stores", description=__doc__)
    add_training_arguments(parser, "configs/ssl/*.yaml", run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config and train."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from pathgen.stages.train_ssl import SSLConfig, train_ssl

    return run_training("train-ssl", args, SSLConfig, lambda cfg, resume: train_ssl(cfg, resume=resume), "encoder")
