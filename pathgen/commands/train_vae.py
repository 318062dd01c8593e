"""`pathgen train-vae --config configs/diffusion/vae_f4.yaml data=OUT/ out=RUN/`: learn the diffusion autoencoder.

The run folder gets config.yaml, metrics.jsonl, checkpoints/last.pt and, at the end, model/ (the VAE
and its latent scaling factor), which later commands take as `--vae RUN/model` (or `vae=RUN/model`).
"""

from __future__ import annotations

import argparse

from pathgen.commands.training import add_training_arguments, run_training


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train-vae` subcommand."""
    parser = subparsers.add_parser(
        "train-vae", help="train the diffusion autoencoder (AutoencoderKL) on tile stores", description=__doc__
    )
    add_training_arguments(parser, "configs/diffusion/vae_*.yaml", run)


def run(args: argparse.Namespace) -> int:
    """Resolve the config and train."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from pathgen.stages.train_vae import VAETrainConfig, train_vae

    return run_training("train-vae", args, VAETrainConfig, lambda cfg, resume: train_vae(cfg, resume=resume), "VAE")
