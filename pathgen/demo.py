"""`make demo`: the whole pipeline on built-in synthetic data, on CPU, in about ten minutes.

Synthesize a small folder of slides (tumor regions, pen ink), tile it with two workers (stores, QC
pictures, manifest), then run the Gen-SIS loop at toy scale (`pathgen gensis --config
configs/genaug/gensis_demo.yaml`): DINO round 1 → embeddings → VAE → LDM → generated-view banks →
DINO round 2 with generated views → benchmark of both encoders on synthetic PCam and Camelyon16 →
one report. Each step is resumable: re-running skips what is done.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from pathgen.cli import main as pathgen

GENSIS_CONFIG = "configs/genaug/gensis_demo.yaml"


def run_demo(out_dir: Path, gensis: bool = True) -> int:
    """Run the demo into `out_dir`; returns the first non-zero exit status, else 0."""
    slides, tiles, run = out_dir / "slides", out_dir / "tiles", out_dir / "gensis"
    steps = [
        [
            "synth",
            str(slides),
            "--n",
            "4",
            "--width",
            "12288",
            "--height",
            "9216",
            "--pen-strokes",
            "2",
            "--lymph-node",
        ],
        ["tile", str(slides), "--out", str(tiles), "--workers", "2"],
    ]
    if gensis:
        steps.append(["gensis", "--config", GENSIS_CONFIG, f"tiles={tiles}", f"out={run}"])
    seconds = {}
    for argv in steps:
        if argv[0] == "synth" and any(slides.glob("*.tif")):
            continue
        print(f"\n$ pathgen {' '.join(argv)}", flush=True)
        start = time.perf_counter()
        status = pathgen(argv)
        seconds[argv[0]] = time.perf_counter() - start
        if status != 0:
            return status
    print(
        f"\ndemo: slides          {slides}\n"
        f"demo: tile stores     {tiles / 'tiles.zarr'} (tiling.open_tile_folder)\n"
        f"demo: QC pictures     {tiles / 'qc' / 'index.html'}\n"
        f"demo: manifest        {tiles / 'manifest.csv'}"
    )
    if gensis:
        print(
            f"demo: Gen-SIS run     {run} (status.json: every stage's wall time; config.yaml)\n"
            f"demo: encoders        {run / 'ssl_round1' / 'model'} (baseline), {run / 'ssl_round2' / 'model'} "
            f"(Gen-SIS)\n"
            f"demo: report          {run / 'report' / 'report.md'}"
        )
    print("demo: wall time       " + ", ".join(f"{name} {s:.0f} s" for name, s in seconds.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m pathgen.demo`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    parser.add_argument(
        "--no-ssl", "--tiles-only", dest="tiles_only", action="store_true", help="stop after tiling (no Gen-SIS loop)"
    )
    args = parser.parse_args(argv)
    return run_demo(args.out, gensis=not args.tiles_only)


if __name__ == "__main__":
    sys.exit(main())
