"""`make demo`: the pipeline on built-in synthetic data, on CPU, in minutes.

Today it covers the first stage: synthesize a small folder of slides (with tumor regions and pen
ink), tile it with two workers, and say where the stores, QC pictures and manifest are.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run_demo(out_dir: Path) -> int:
    """Synthesize slides into `out_dir/slides` and tile them into `out_dir/tiles`."""
    slides_dir, tiles_dir = out_dir / "slides", out_dir / "tiles"
    synth_args = ["synth", str(slides_dir), "--n", "4", "--width", "12288", "--height", "9216",
                  "--pen-strokes", "2"]
    tile_args = ["tile", str(slides_dir), "--out", str(tiles_dir), "--workers", "2"]
    from pathgen.cli import main

    if not any(slides_dir.glob("*.tif")) and main(synth_args) != 0:
        return 1
    status = main(tile_args)
    print(f"\ndemo: slides in {slides_dir}\n"
          f"demo: tile stores in {tiles_dir / 'tiles.zarr'} (open with tiling.open_tile_folder)\n"
          f"demo: QC pictures in {tiles_dir / 'qc'} — open {tiles_dir / 'qc' / 'index.html'}\n"
          f"demo: manifest {tiles_dir / 'manifest.csv'}")
    return status


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m pathgen.demo`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    return run_demo(parser.parse_args(argv).out)


if __name__ == "__main__":
    sys.exit(main())
