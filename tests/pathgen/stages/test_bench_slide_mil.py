"""The issue's slide-level check: synthetic slides with and without tumor → tile → embed → ABMIL.

20 slides of 4096×3072 at 0.25 µm/px (12 train, 8 test, half with tumor each), tiled at
0.5 µm/px 224 px, embedded with a random-init `test_vit` through `pathgen.eval.features`.
ABMIL must separate the test slides (AUROC ≥ 0.8) and attend more to tumor tiles (truth from
`tumor_truth_mask` at tile centres) than to the normal tiles of the same tumor slides.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from pathgen.eval.datasets import SlideDataset, SlideRecord
from pathgen.eval.features import FrozenEncoder, slide_features
from pathgen.eval.metrics import auroc
from pathgen.eval.mil import MILConfig, fit_mil, predict_bags
from tiling.config import TilingConfig
from tiling.synthetic import SyntheticSlideSpec, tumor_truth_mask, write_synthetic_slide

N_TRAIN, N_TEST, DOWNSAMPLE = 12, 8, 16


def make_slides(folder):
    base = SyntheticSlideSpec(4096, 3072, tissue_regions=3)
    records, specs = [], {}
    for i in range(N_TRAIN + N_TEST):
        split, tumor = ("val" if i < 2 else "train" if i < N_TRAIN else "test"), i % 2  # val: the reader contract
        spec = replace(base, seed=100 + i, tumor_regions=2 * tumor)
        slide_id = f"{'tumor' if tumor else 'normal'}_{i:03d}"
        write_synthetic_slide(folder / f"{slide_id}.tif", spec)
        specs[slide_id] = spec
        records.append(SlideRecord(slide_id, folder / f"{slide_id}.tif", tumor, ("normal", "tumor")[tumor], split))
    return SlideDataset("synthetic", folder, ("normal", "tumor"), tuple(records), "test"), specs


def tumor_at_tiles(spec, coords, tile_level0_px):
    mask = tumor_truth_mask(spec, DOWNSAMPLE)
    centres = (coords + tile_level0_px // 2) // DOWNSAMPLE
    return mask[np.minimum(centres[:, 1], mask.shape[0] - 1), np.minimum(centres[:, 0], mask.shape[1] - 1)]


def test_abmil_separates_tumor_slides_and_attends_to_tumor(tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    dataset, specs = make_slides(slides)
    tiling = TilingConfig(target_mpp=0.5, tile_size_px=224, min_tissue=0.25, qc=False)
    encoder = FrozenEncoder("random:test_vit", tmp_path / "cache")
    bags, coords = slide_features(encoder, dataset, "synthetic", tiling, batch_size=64)
    train = [r for r in dataset.records if r.split != "test"]
    test = [r for r in dataset.records if r.split == "test"]
    fit = ([bags[r.slide_id] for r in train], np.array([r.label for r in train]))
    cfg = MILConfig(batch_size=4, max_epochs=30, patience=None)
    model, _ = fit_mil(fit, fit, 2, cfg, seed=0)  # checkpoint chosen on train: there is no val here
    probabilities, attention = predict_bags(model, [bags[r.slide_id] for r in test])
    test_auroc = auroc(np.array([r.label for r in test]), probabilities)
    ratios = []
    for record, weights in zip(test, attention):
        if record.label:
            on_tumor = tumor_at_tiles(specs[record.slide_id], coords[record.slide_id], 448)
            assert on_tumor.any() and (~on_tumor).any()
            ratios.append(weights[on_tumor].mean() / weights[~on_tumor].mean())
    print(
        f"ABMIL test AUROC {test_auroc:.3f}; tumor/normal mean attention ratio per tumor slide "
        f"{np.round(ratios, 2).tolist()}; tiles per slide {min(map(len, bags.values()))}-{max(map(len, bags.values()))}"
    )
    assert test_auroc >= 0.8
    assert min(ratios) > 1.0 and np.mean(ratios) > 1.5
