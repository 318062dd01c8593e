"""A real-tile-sized example of the benchmark report, and the logistic-probe determinism check.

Cuts 96 × 96 px tiles at level 0 (0.499 µm/px) from one real slide (default: OpenSlide's public
CMU-1-Small-Region.svs), keeps tissue tiles, and labels each "dense" or "sparse" by whether its
mean hematoxylin optical density (scikit-image rgb2hed) is above the median: a tiny labelled task
of real H&E pixels, not a diagnostic one. It writes them as an image folder (plus a stray
Thumbs.db, which the reader skips with a warning), runs `pathgen bench` on two random-init
encoders and prints the report. Then it runs the logistic determinism check on the first
encoder's raw (unstandardised) features: the old warm-started grid against one cold fit at the
same C, and the new cold-started grid against one cold fit.

    python benchmarks/real_tiles_example.py SLIDE OUT
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import openslide
from PIL import Image
from skimage.color import rgb2hed
from sklearn.linear_model import LogisticRegression

from pathgen.eval.datasets import read_dataset
from pathgen.eval.features import FrozenEncoder, dataset_key, patch_features
from pathgen.eval.metrics import balanced_accuracy
from pathgen.eval.probes import LogisticProbeConfig, logistic_probe
from pathgen.stages.bench import DataConfig, ProbesConfig, TaskConfig, run_bench

TILE = 96
GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)


def cut_tiles(slide_path: Path, out: Path) -> int:
    """Tissue tiles of the slide as OUT/<dense|sparse>/<x>_<y>.png; returns how many."""
    slide = openslide.OpenSlide(str(slide_path))
    width, height = slide.dimensions
    tiles, density = [], []
    for y in range(0, height - TILE + 1, TILE):
        for x in range(0, width - TILE + 1, TILE):
            rgb = np.asarray(slide.read_region((x, y), 0, (TILE, TILE)).convert("RGB"))
            if (rgb.mean(axis=2) < 210).mean() < 0.6:  # mostly glass
                continue
            tiles.append(((x, y), rgb))
            density.append(rgb2hed(rgb)[..., 0].mean())
    threshold = np.median(density)
    for ((x, y), rgb), value in zip(tiles, density):
        folder = out / ("dense" if value > threshold else "sparse")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(folder / f"{x}_{y}.png")
    (out / "dense" / "Thumbs.db").write_bytes(b"\0")
    return len(tiles)


def determinism_check(root: Path, cache: Path) -> None:
    """Print test balanced accuracy: warm-started grid vs single C (old) and cold grid vs single C (new)."""
    dataset = read_dataset("image_folder", root)
    encoder = FrozenEncoder("random:test_vit", cache)
    key = dataset_key("image_folder", root)
    (tx, ty), (vx, vy), (sx, sy) = (
        (patch_features(encoder, dataset.splits[s], key, 64, 0).astype(np.float64), dataset.splits[s].labels)
        for s in ("train", "val", "test")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warm, best, best_c = LogisticRegression(max_iter=1000, warm_start=True), -1.0, None
        warm_scores = {}
        for c in GRID:
            warm.set_params(C=c).fit(tx, ty)
            warm_scores[c] = balanced_accuracy(sy, warm.predict_proba(sx))
            score = balanced_accuracy(vy, warm.predict_proba(vx))
            best, best_c = (score, c) if score > best else (best, best_c)
        cold = {
            c: balanced_accuracy(sy, LogisticRegression(C=c, max_iter=1000).fit(tx, ty).predict_proba(sx)) for c in GRID
        }
    print("C      warm-started grid   cold single fit   |diff|")
    for c in GRID:
        print(f"{c:<8g} {warm_scores[c]:.4f}             {cold[c]:.4f}            {abs(warm_scores[c] - cold[c]):.4f}")
    print(
        f"old probe (warm grid) selects C={best_c:g}: test {warm_scores[best_c]:.4f}; "
        f"alone at that C {cold[best_c]:.4f}"
    )
    cfg = LogisticProbeConfig(c_grid=GRID, standardize=False)
    grid = logistic_probe(tx, ty, vx, vy, sx, sy, cfg)
    c = grid.selected["C"]
    alone = logistic_probe(tx, ty, vx, vy, sx, sy, LogisticProbeConfig(c_grid=(c,), standardize=False))
    print(
        f"new probe selects C={c:g}: grid {grid.metrics['test']['balanced_accuracy']:.4f}, single C "
        f"{alone.metrics['test']['balanced_accuracy']:.4f}, max |Δ score| "
        f"{np.abs(grid.test_scores - alone.test_scores).max():.2e}"
    )


def main(slide: str, out: str) -> None:
    """Tiles → image folder → bench on two encoders → results.md printed; then the determinism check."""
    out_dir = Path(out)
    root = out_dir / "tiles"
    print(f"{cut_tiles(Path(slide), root)} tissue tiles of {TILE} px from {slide}")
    task = TaskConfig(
        name="cmu1_density",
        level="patch",
        data=DataConfig("image_folder", str(root), {}),
        probes=ProbesConfig(
            linear={"lr": 1e-3, "max_steps": 300, "val_every_steps": 50, "batch_size": 64, "patience": None},
            logistic={},
            knn={"k": 20},
            few_shot={"shots": [1, 8], "episodes": 50},
        ),
        seeds=[0, 1, 2, 3, 4],
        batch_size=64,
        device="cpu",
        n_boot=1000,
    )
    run_bench([task], ["random:test_vit", "random:resnet18"], out_dir / "bench", out_dir / "cache")
    print((out_dir / "bench" / "results.md").read_text())
    determinism_check(root, out_dir / "cache")


if __name__ == "__main__":
    main(*sys.argv[1:3])
