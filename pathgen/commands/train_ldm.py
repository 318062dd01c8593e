"""`pathgen train-ldm --config configs/diffusion/ldm_tiny.yaml data=OUT/ encoder=MODEL vae=VAE out=RUN/`:
learn an SSL-embedding-conditioned latent diffusion model.

Under torchrun every process runs this command; rank 0 writes the run folder and `RUN/model`.
"""

from __future__ import annotations

import argparse

from pathgen.commands.training import add_training_arguments, run_training


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train-ldm` subcommand."""
    parser = subparsers.add_parser(
        "train-ldm", help="train an embedding-conditioned latent diffusion model", description=__doc__
    )
    add_training_arguments(parser, "configs/diffusion/ldm_*.yaml", run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config and train."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from pathgen.stages.train_ldm import LDMTrainConfig, train_ldm

    return run_training("train-ldm", args, LDMTrainConfig, lambda cfg, resume: train_ldm(cfg, resume=resume), "model")
