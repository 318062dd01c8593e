"""`pathgen tile SLIDES... --out OUT`: slides → tissue-filtered tile stores, QC pictures, manifest."""

from __future__ import annotations

import argparse
from pathlib import Path

from pathgen.config import ConfigError, load_config, save_config
from pathgen.errors import report_failure

# command-line flag → config key; flags win over the YAML and over key=value overrides
FLAG_KEYS = {"mpp": "target_mpp", "tile_size": "tile_size_px", "overlap": "overlap_px",
             "min_tissue": "min_tissue", "workers": "workers", "shard": "shard",
             "mpp_override": "mpp_override", "codec": "store.codec"}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `tile` subcommand."""
    parser = subparsers.add_parser("tile", help="tile whole-slide images into zarr tile stores",
                                   description=__doc__)
    parser.add_argument("inputs", nargs="+", metavar="SLIDES",
                        help="slide files or folders (searched recursively); key.sub=value words override the config")
    parser.add_argument("--out", required=True, type=Path, help="output folder (tiles.zarr/, qc/, manifest.csv)")
    parser.add_argument("--config", type=Path, help="YAML config (see configs/tile/default.yaml)")
    parser.add_argument("--mpp", type=float, help="target resolution in µm/px (default 0.5)")
    parser.add_argument("--tile-size", type=int, help="tile side in pixels at the target mpp (default 224)")
    parser.add_argument("--overlap", type=int, help="overlap of neighbouring tiles in pixels (default 0)")
    parser.add_argument("--min-tissue", type=float, help="minimum tissue fraction of a kept tile (default 0.25)")
    parser.add_argument("--workers", type=int, help="worker processes (default 1)")
    parser.add_argument("--shard", help="K/N: tile only the K-th of N slide subsets (job arrays)")
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
    return load_config(TilingConfig, args.config, overrides)


def run(args: argparse.Namespace) -> int:
    """Tile the inputs; exit status 1 if any slide failed, 2 if the run could not start."""
    # lazy: start-up time (a command loads its stage, and torch, only when it runs)
    from tiling.pipeline import OutputError, prepare_output, run_tiling

    inputs = args.inputs
    try:
        cfg = resolve_config(args)
        out_dir = prepare_output(args.out)
        save_config(cfg, out_dir / "config.yaml")
        summary = run_tiling(inputs, out_dir, cfg, progress=not args.no_progress)
    except (ConfigError, OutputError, ValueError) as err:
        return report_failure("tile", err, 2)
    print(f"pathgen tile: {summary.count('done')} done, {summary.count('failed')} failed, "
          f"{summary.count('skipped')} skipped → {out_dir}/tiles.zarr, QC {out_dir}/qc/index.html, "
          f"manifest {out_dir}/manifest.csv")
    return summary.exit_code
