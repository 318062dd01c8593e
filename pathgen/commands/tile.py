"""`pathgen tile SLIDES... --out OUT`: slides → tissue-filtered tile stores, QC pictures, manifest."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pathgen.config import ConfigError, load_config
from pathgen.errors import report_failure
from tiling.discover import shard_from_environment
from tiling.workers import TILING_PRELOAD, start_fork_server

# command-line flag → config key; flags win over the YAML and over key=value overrides
FLAG_KEYS = {
    "mpp": "target_mpp",
    "tile_size": "tile_size_px",
    "overlap": "overlap_px",
    "min_tissue": "min_tissue",
    "workers": "workers",
    "shard": "shard",
    "mpp_override": "mpp_override",
    "codec": "store.codec",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `tile` subcommand."""
    parser = subparsers.add_parser("tile", help="tile whole-slide images into zarr tile stores", description=__doc__)
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="SLIDES",
        help="slide files or folders (searched recursively); key.sub=value words override the config",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (tiles.zarr/, qc/, manifest.csv)")
    parser.add_argument("--config", type=Path, help="YAML config (see configs/tile/default.yaml)")
    parser.add_argument("--mpp", type=float, help="target resolution in µm/px (default 0.5)")
    parser.add_argument("--tile-size", type=int, help="tile side in pixels at the target mpp (default 224)")
    parser.add_argument("--overlap", type=int, help="overlap of neighbouring tiles in pixels (default 0)")
    parser.add_argument("--min-tissue", type=float, help="minimum tissue fraction of a kept tile (default 0.25)")
    parser.add_argument(
        "--workers", type=int, help="worker processes (default 1; 0: tile in this process, no crash isolation)"
    )
    parser.add_argument(
        "--shard",
        help="K/N: tile only the K-th of N slide subsets (job arrays); default: "
        "from SLURM_ARRAY_TASK_ID/_MIN/_COUNT/_STEP in a Slurm job array, else 1/1",
    )
    parser.add_argument("--mpp-override", help="CSV with columns slide,mpp for slides whose files lack it")
    parser.add_argument("--codec", choices=["zstd", "jpeg"], help="tile compression (default zstd, lossless)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(run=run, overrides=[])


def resolve_config(args: argparse.Namespace):  # noqa: ANN201 -- TilingConfig, imported lazily
    """Defaults, then --config, then key=value words, then flags."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from tiling.config import TilingConfig

    overrides = list(args.overrides)
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(TilingConfig, args.config, overrides)
    if not any(word.startswith("shard=") for word in overrides):
        cfg.shard = _shard_from_slurm() or cfg.shard
    return cfg


def _shard_from_slurm() -> str | None:
    """The shard of this Slurm array task, announced on stderr; None outside a job array."""
    shard = shard_from_environment(os.environ)
    if shard is not None:
        print(
            f"pathgen tile: shard {shard} from SLURM_ARRAY_TASK_ID={os.environ['SLURM_ARRAY_TASK_ID']}", file=sys.stderr
        )
    return shard


def run(args: argparse.Namespace) -> int:
    """Tile the inputs. Exit status: 0 all tiled, 1 a slide failed, 2 the run could not start,
    3 nothing failed but some slides were left to another live run that holds their locks."""
    try:
        cfg = resolve_config(args)
    except (ConfigError, ValueError) as err:
        from tiling.pipeline import EXIT_START_ERROR  # lazy: as below

        return report_failure("tile", err, EXIT_START_ERROR)
    if cfg.workers > 0:  # the workers' imports run in the fork server while this process does its own
        start_fork_server(TILING_PRELOAD)
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from tiling.pipeline import EXIT_START_ERROR, OutputError, run_tiling

    try:
        summary = run_tiling(args.inputs, args.out, cfg, progress=not args.no_progress)
    except (ConfigError, OutputError, ValueError) as err:
        return report_failure("tile", err, EXIT_START_ERROR)
    out_dir = summary.out_dir
    print(
        f"pathgen tile: {summary.line()} → {out_dir}/tiles.zarr, QC {out_dir}/qc/index.html, "
        f"manifest {out_dir}/manifest.csv, config {out_dir}/runs/{summary.run_id}.yaml"
    )
    return summary.exit_code
