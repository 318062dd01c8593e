"""`pathgen train-ssl --config configs/ssl/dino_vits16.yaml data=OUT/ out=RUN/`: learn an encoder.

Under torchrun every process runs this command; rank 0 writes the run folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train-ssl` subcommand."""
    parser = subparsers.add_parser("train-ssl", help="train an SSL encoder on tile stores", description=__doc__)
    parser.add_argument("--config", type=Path, help="YAML config (configs/ssl/*.yaml)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from out/checkpoints/last.pt (without --config, out's saved config)")
    parser.set_defaults(run=run, overrides=[])


def run(args: argparse.Namespace) -> int:
    """Resolve the config and train."""
    from pathgen.config import ConfigError, is_override, load_config, parse_override
    from pathgen.ssl.train_ssl import SSLConfig, train_ssl
    from pathgen.train import TrainingDiverged

    config_path = args.config
    if args.resume and config_path is None:
        out = dict(parse_override(o) for o in args.overrides if is_override(o)).get("out")
        config_path = Path(out) / "config.yaml" if out else None
    try:
        cfg = load_config(SSLConfig, config_path, args.overrides)
        model_dir = train_ssl(cfg, resume=args.resume)
    except (ConfigError, ValueError, FileNotFoundError, TrainingDiverged) as err:
        print(f"pathgen train-ssl: {err}", file=sys.stderr)
        return 2 if not isinstance(err, TrainingDiverged) else 1
    print(f"pathgen train-ssl: encoder saved in {model_dir}")
    return 0
