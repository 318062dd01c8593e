"""`make demo`: the pipeline on built-in synthetic data, on CPU, in minutes.

Stages so far: synthesize a small folder of slides (tumor regions, pen ink), tile it with two
workers (stores, QC pictures, manifest), train a tiny DINO encoder on the tiles, export it and
embed every tile with it. Each step is resumable: re-running skips what is done.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pathgen.cli import main as pathgen


def run_demo(out_dir: Path, ssl: bool = True) -> int:
    """Run the demo into `out_dir`; returns the first non-zero exit status, else 0."""
    slides, tiles, run = out_dir / "slides", out_dir / "tiles", out_dir / "ssl_dino_tiny"
    steps = [
        ["synth", str(slides), "--n", "4", "--width", "12288", "--height", "9216", "--pen-strokes", "2"],
        ["tile", str(slides), "--out", str(tiles), "--workers", "2"],
    ]
    if ssl:
        steps += [["train-ssl", "--config", "configs/ssl/dino_tiny.yaml", f"data={tiles}", f"out={run}"],
                  ["embed", str(run / "model"), str(tiles), "--name", "dino_tiny"]]
    for argv in steps:
        if argv[0] == "synth" and any(slides.glob("*.tif")):
            continue
        if argv[0] == "train-ssl" and (run / "model" / "model.safetensors").is_file():
            continue
        print(f"\n$ pathgen {' '.join(argv)}", flush=True)
        status = pathgen(argv)
        if status != 0:
            return status
    print(f"\ndemo: slides          {slides}\n"
          f"demo: tile stores     {tiles / 'tiles.zarr'} (tiling.open_tile_folder)\n"
          f"demo: QC pictures     {tiles / 'qc' / 'index.html'}\n"
          f"demo: manifest        {tiles / 'manifest.csv'}")
    if ssl:
        print(f"demo: SSL run         {run} (metrics.jsonl, config.yaml)\n"
              f"demo: encoder         {run / 'model'} (pathgen.models.load_encoder)\n"
              f"demo: embeddings      {tiles / 'tiles.zarr'}/<slide>/embeddings/dino_tiny")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m pathgen.demo`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument("--no-ssl", action="store_true", help="stop after tiling")
    args = parser.parse_args(argv)
    return run_demo(args.out, ssl=not args.no_ssl)


if __name__ == "__main__":
    sys.exit(main())
