"""`pathgen generate MODEL TILES --out BANK`: a trained LDM's views of real tiles → a view bank + grid.png.

Modes: views (K samples per source embedding), interpolate (SLERP of the source's embedding with a
random other tile's), img2img (the source noised at --strength, then denoised). Resumable: re-run the
same command with `--resume` and only unfinished rows are generated.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pathgen.commands.training import add_overwrite_argument, guarded_run
from pathgen.errors import report_failure

# command-line flag → config key; flags win over the YAML and over key=value overrides
FLAG_KEYS = {
    "n_views": "n_views",
    "steps": "sampler.steps",
    "guidance": "sampler.guidance_scale",
    "eta": "sampler.eta",
    "strength": "strength",
    "alpha": "alpha",
    "max_sources": "max_sources",
    "min_tissue": "min_tissue",
    "seed": "seed",
    "batch_size": "batch_size",
}
# text flags are set as given (no YAML parsing of paths and names)
TEXT_FLAGS = {"out": "out", "mode": "mode", "device": "device", "embeddings": "embeddings_name"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `generate` subcommand."""
    parser = subparsers.add_parser(
        "generate", help="generate views of tiles with a trained LDM into a view bank", description=__doc__
    )
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="MODEL TILES",
        help="an LDM folder, then `pathgen tile` output folders (or model=/tiles= in the config); "
        "key.sub=value words override the config",
    )
    parser.add_argument("--out", help="bank folder (bank.zarr, grid.png, config.yaml)")
    parser.add_argument("--config", type=Path, help="YAML config (configs/diffusion/generate_tiny.yaml)")
    parser.add_argument("--mode", choices=["views", "interpolate", "img2img"])
    parser.add_argument("--n-views", type=int, help="views per source tile (default 4)")
    parser.add_argument("--sampler", choices=["ddim", "dpm++"])
    parser.add_argument("--steps", type=int, help="sampling steps (default 50)")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale (default 2; 1 = none)")
    parser.add_argument("--eta", type=float, help="DDIM eta (default 0)")
    parser.add_argument("--strength", type=float, help="img2img noise strength in [0, 1] (default 0.5)")
    parser.add_argument(
        "--alpha",
        type=float,
        help="interpolate: SLERP weight on the source (default 0.5; alpha=[a,b] for uniform per view)",
    )
    parser.add_argument("--max-sources", type=int, help="a seeded random choice of N source tiles (default all)")
    parser.add_argument("--min-tissue", type=float, help="only tiles with at least this tissue fraction")
    parser.add_argument("--embeddings", help="read this `pathgen embed` set instead of embedding on the fly")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--batch-size", type=int, help="samples per denoiser call (default 16)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--adaptive-noise",
        action="store_true",
        help="img2img: GenView's strength per tile from its foreground proportion (foreground=pca|hematoxylin)",
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--resume", action="store_true", help="continue the unfinished bank in --out")
    add_overwrite_argument(parser)
    parser.set_defaults(run=run, overrides=[])


def resolve_config(args: argparse.Namespace):  # noqa: ANN201 -- GenerateConfig, imported lazily
    """Defaults, then --config, then key=value words, then positionals and flags."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from pathgen.config import load_config
    from pathgen.stages.generate import GenerateConfig

    overrides = [f"{key}={getattr(args, flag)}" for flag, key in FLAG_KEYS.items() if getattr(args, flag) is not None]
    cfg = load_config(GenerateConfig, args.config, list(args.overrides) + overrides)
    if args.inputs:
        cfg.model = args.inputs[0]
        cfg.tiles = args.inputs[1:] or cfg.tiles
    for flag, key in TEXT_FLAGS.items():
        if getattr(args, flag) is not None:
            setattr(cfg, key, getattr(args, flag))
    if args.sampler is not None:
        cfg.sampler.sampler = args.sampler
    if args.adaptive_noise:
        cfg.adaptive_noise = True
    return cfg


def run(args: argparse.Namespace) -> int:
    """Generate (or resume) the bank; exit status 2 if the run could not start."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from pathgen.config import ConfigError
    from pathgen.diffusion.bank import BankError
    from pathgen.stages.generate import generate_bank
    from tiling.store import StoreError

    try:
        cfg = resolve_config(args)
        with guarded_run(cfg.out, args):
            summary = generate_bank(cfg, progress=not args.no_progress)
    except (ConfigError, BankError, StoreError, ValueError, FileNotFoundError) as err:
        return report_failure("generate", err, 2)
    print(
        f"pathgen generate: {summary['generated']} sources generated, {summary['skipped']} already done → "
        f"{summary['bank']} (grid {Path(cfg.out) / 'grid.png'})"
    )
    return 0
