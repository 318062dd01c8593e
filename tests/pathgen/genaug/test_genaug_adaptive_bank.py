"""GenView adaptive noise end to end: per-tile strengths from the foreground proportion, written into an
img2img bank that `train-ssl genaug.adaptive_noise=true` accepts (and a fixed-strength bank it refuses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathgen.cli import main
from pathgen.config import load_config
from pathgen.diffusion.bank import ViewBank
from pathgen.genaug.adaptive_bank import adaptive_strengths, foreground_estimator
from pathgen.genaug.foreground import HematoxylinForeground
from pathgen.stages.train_ssl import SSLConfig, build_dataset


def test_strength_follows_foreground_monotonically():
    pale = np.full((32, 32, 3), 235, np.uint8)
    dense = np.zeros((32, 32, 3), np.uint8)
    dense[...] = (70, 40, 140)  # hematoxylin-like purple
    half = pale.copy()
    half[:, :16] = dense[:, :16]
    strengths, ratios = adaptive_strengths([pale, half, dense], HematoxylinForeground(), [0.3, 0.4, 0.5, 0.6, 0.7])
    assert ratios[0] < ratios[1] < ratios[2]
    assert strengths[0] <= strengths[1] <= strengths[2] and strengths[0] == pytest.approx(0.3)
    assert strengths[2] == pytest.approx(0.7)


def test_pca_estimator_needs_a_fitted_direction(tiny_encoder):
    with pytest.raises(ValueError, match="foreground_pca.json"):
        foreground_estimator("pca", tiny_encoder, torch.device("cpu"))


def test_adaptive_bank_is_written_and_accepted_by_train_ssl(tiny_ldm_dir, tiny_tiles, tmp_path):
    bank_dir = tmp_path / "bank"
    assert (
        main(
            [
                "generate",
                str(tiny_ldm_dir),
                str(tiny_tiles),
                "--out",
                str(bank_dir),
                "--mode",
                "img2img",
                "--adaptive-noise",
                "foreground=hematoxylin",
                "--n-views",
                "1",
                "--max-sources",
                "6",
                "--sampler",
                "ddim",
                "--steps",
                "4",
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    bank = ViewBank(bank_dir)
    assert bank.attrs["settings"]["adaptive_noise"] is True
    expected, _ = adaptive_strengths(
        [_tile(key) for key in bank.keys()], HematoxylinForeground(), [0.3, 0.4, 0.5, 0.6, 0.7]
    )
    np.testing.assert_allclose([bank.meta(r)["strength"][0] for r in range(len(bank))], expected)
    cfg = load_config(
        SSLConfig,
        "configs/ssl/dino_tiny.yaml",
        [f"data={tiny_tiles}", f"genaug.bank={bank_dir}", "genaug.adaptive_noise=true"],
    )
    assert len(build_dataset(cfg)) > 0


def test_adaptive_noise_outside_img2img_is_refused(tiny_ldm_dir, tiny_tiles, tmp_path):
    assert (
        main(
            [
                "generate",
                str(tiny_ldm_dir),
                str(tiny_tiles),
                "--out",
                str(tmp_path / "b"),
                "--adaptive-noise",
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 2
    )


def _tile(key):
    from tiling.store import TileStore

    return TileStore(key.store)[key.index]
