"""`pathgen train-vae --config configs/diffusion/vae_f4.yaml data=OUT/ out=RUN/`: learn the diffusion autoencoder.

The run folder gets config.yaml, metrics.jsonl, checkpoints/last.pt and, at the end, model/ (the VAE
and its latent scaling factor), which later commands take as `--vae RUN/model` (or `vae=RUN/model`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train-vae` subcommand."""
    parser = subparsers.add_parser("train-vae", help="train the diffusion autoencoder (AutoencoderKL) on tile stores",
                                   description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML config (configs/diffusion/vae_*.yaml)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from out/checkpoints/last.pt (without --config, out's saved config)")
    parser.set_defaults(run=run, overrides=[])


def run(args: argparse.Namespace) -> int:
    """Resolve the config and train."""
    from pathgen.config import ConfigError, is_override, load_config, parse_override
    from pathgen.diffusion.train_vae import VAETrainConfig, train_vae
    from pathgen.train import TrainingDiverged
    from tiling.store import StoreError

    try:
        config_path = args.config
        if args.resume and config_path is None:
            out = dict(parse_override(o) for o in args.overrides if is_override(o)).get("out")
            config_path = Path(out) / "config.yaml" if out else None
        cfg = load_config(VAETrainConfig, config_path, args.overrides)
        model_dir = train_vae(cfg, resume=args.resume)
    except (ConfigError, ValueError, FileNotFoundError, StoreError, TrainingDiverged) as err:
        print(f"pathgen train-vae: {err}", file=sys.stderr)
        return 2 if not isinstance(err, TrainingDiverged) else 1
    print(f"pathgen train-vae: VAE saved in {model_dir}")
    return 0
