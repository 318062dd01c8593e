"""`pathgen train-ldm --config configs/diffusion/ldm_tiny.yaml data=OUT/ encoder=MODEL vae=VAE out=RUN/`:
learn an SSL-embedding-conditioned latent diffusion model.

Under torchrun every process runs this command; rank 0 writes the run folder and `RUN/model`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train-ldm` subcommand."""
    parser = subparsers.add_parser("train-ldm", help="train an embedding-conditioned latent diffusion model",
                                   description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML config (configs/diffusion/ldm_*.yaml)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from out/checkpoints/last.pt (without --config, out's saved config)")
    parser.set_defaults(run=run, overrides=[])


def run(args: argparse.Namespace) -> int:
    """Resolve the config and train."""
    from pathgen.config import ConfigError, is_override, load_config, parse_override
    from pathgen.diffusion.train_ldm import LDMTrainConfig, train_ldm
    from pathgen.train import TrainingDiverged

    config_path = args.config
    if args.resume and config_path is None:
        out = dict(parse_override(o) for o in args.overrides if is_override(o)).get("out")
        config_path = Path(out) / "config.yaml" if out else None
    try:
        cfg = load_config(LDMTrainConfig, config_path, args.overrides)
        model_dir = train_ldm(cfg, resume=args.resume)
    except (ConfigError, ValueError, FileNotFoundError, TrainingDiverged) as err:
        print(f"pathgen train-ldm: {err}", file=sys.stderr)
        return 2 if not isinstance(err, TrainingDiverged) else 1
    print(f"pathgen train-ldm: model saved in {model_dir}")
    return 0
