"""How much marker ink ends up inside pathgen's tissue mask, and how much tissue the ink model costs.

On the pen-ink development set (../shared/data/pen/: a real TCGA diagnostic thumbnail with green,
red and blue marker, and histolab's pen-filter masks, True = no ink of that colour) this reports,
for each ink colour histolab marks and each assumed thumbnail resolution, the share of histolab's
ink pixels that lie inside pathgen's tissue mask (lower is better). On CMU-1-Small-Region.svs
(no ink) it reports the IoU of the tissue mask with the mask of the same detector with ink removal
switched off: what the ink model takes away from real tissue (1.0 = nothing).

    python benchmarks/pen_ink.py                       # data in ../shared/data
    python benchmarks/pen_ink.py --data /path/to/shared/data --mpp 8 16 32
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
from PIL import Image

from tiling.config import TissueConfig
from tiling.reader import open_slide
from tiling.tissue import detect_tissue

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
THUMB = "pen/diagnostic-slide-thumb-rgb.png"
COLOURS = ("green", "red", "blue")


def ink_inside_tissue(data: Path, thumbnail_mpp: float, cfg: TissueConfig | None = None) -> dict[str, float | None]:
    """{colour: share of histolab's ink pixels of that colour inside the tissue mask} (None: no such ink)."""
    cfg = cfg or TissueConfig()
    thumbnail = np.asarray(Image.open(data / THUMB).convert("RGB"))
    tissue = detect_tissue(thumbnail, thumbnail_mpp, cfg).tissue
    shares: dict[str, float | None] = {}
    for colour in COLOURS:
        ink = ~np.load(data / "pen" / f"histolab-{colour}-pen-filter-mask.npy")
        if ink.shape != tissue.shape:
            raise ValueError(f"{data / 'pen'}: {colour} mask is {ink.shape}, thumbnail {tissue.shape}")
        shares[colour] = float((tissue & ink).sum() / ink.sum()) if ink.any() else None
    return shares


def tissue_kept_iou(slide_path: Path, thumbnail_mpp: float = 8.0, cfg: TissueConfig | None = None) -> float:
    """IoU of the tissue mask of a slide with the mask found with ink removal switched off."""
    cfg = cfg or TissueConfig()
    slide = open_slide(slide_path)
    thumbnail = slide.thumbnail(thumbnail_mpp)
    mpp = slide.level0_mpp * slide.dimensions[0] / thumbnail.shape[1]
    with_ink_model = detect_tissue(thumbnail, mpp, cfg).tissue
    without = detect_tissue(thumbnail, mpp, dataclasses.replace(cfg, remove_pen=False)).tissue
    return float((with_ink_model & without).sum() / max(1, (with_ink_model | without).sum()))


def main() -> None:
    """Print the numbers as JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--mpp", nargs="+", type=float, default=[8.0, 32.0])
    args = parser.parse_args()
    report = {f"ink_inside_tissue@{mpp:g}um": ink_inside_tissue(args.data, mpp) for mpp in args.mpp}
    report["cmu_small_iou_vs_no_ink_removal"] = tissue_kept_iou(args.data / "slides" / "CMU-1-Small-Region.svs")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
