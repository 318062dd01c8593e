"""The generative-augmentation switches of `pathgen train-ssl`: bank views, Gen-SIS
disentanglement, GenView quality weighting (both foreground estimators), and their refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pathgen.cli import main
from pathgen.config import load_config
from pathgen.diffusion.bank import BankWriter
from pathgen.stages.fit_foreground import fit_foreground
from pathgen.stages.train_ssl import SSLConfig, build_ssl_method, train_ssl
from tiling.store import open_tile_folder

TINY = [
    "backbone.img_size=32",
    "augment.global_size=32",
    "augment.local_size=16",
    "train.max_steps=3",
    "train.batch_size=8",
    "train.num_workers=0",
    "train.progress=false",
    "train.log_every=1",
]


def _bank(folder, tiny_tiles, mode: str, rows: int = 40):
    store = open_tile_folder(tiny_tiles).stores[0]
    writer = BankWriter(
        folder,
        [str(store.path)],
        np.zeros(rows, np.int32),
        np.arange(rows, dtype=np.int32),
        {"mode": mode, "n_views": 2, "image_size": 32, "sampler": {}, "model": {}},
    )
    for row in range(rows):
        secondary = (0, (row + 1) % len(store)) if mode == "interpolate" else None
        writer.write_row(
            row,
            np.stack([store[(row + 7) % len(store)]] * 2),
            seeds=np.arange(2),
            alpha=np.array([0.3, 0.7], np.float32) if mode == "interpolate" else None,
            secondary=secondary,
        )
    writer.finish()
    return folder


def _metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_gen_dino_trains_with_bank_views_and_disentanglement(tmp_path, tiny_tiles):
    views, interp = (
        _bank(tmp_path / "views", tiny_tiles, "views"),
        _bank(tmp_path / "interp", tiny_tiles, "interpolate"),
    )
    run = tmp_path / "run"
    assert (
        main(
            [
                "train-ssl",
                "--config",
                "configs/ssl/dino_tiny.yaml",
                f"data={tiny_tiles}",
                f"out={run}",
                *TINY,
                f"genaug.bank={views}",
                "genaug.p=0.5",
                f"genaug.disentangle.bank={interp}",
                "genaug.disentangle.weight=0.5",
            ]
        )
        == 0
    )
    logged = _metrics(run)
    assert len(logged) == 3 and all("disentangle_loss" in row and np.isfinite(row["loss"]) for row in logged)
    assert (run / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize("foreground", ["hematoxylin", "pca"])
def test_quality_weighted_simsiam_trains(tmp_path, tiny_tiles, tiny_encoder, foreground):
    scorer = tmp_path / "scorer"
    shutil.copytree(tiny_encoder, scorer)
    if foreground == "pca":
        pca = fit_foreground(scorer, [tiny_tiles], max_tiles=64, batch_size=32, device="cpu")
        assert (scorer / "foreground_pca.safetensors").is_file() and np.isfinite(pca.threshold)
        assert pca.sign_rule == "hematoxylin" and pca.n_tokens == 64 * 4  # 64 tiles × 2×2 patch tokens
    cfg = load_config(
        SSLConfig,
        "configs/ssl/simsiam_tiny.yaml",
        [
            f"data={tiny_tiles}",
            f"out={tmp_path / 'run'}",
            *TINY,
            "loss.quality_weighting=true",
            f"loss.quality_scorer={scorer}",
            f"loss.quality_foreground={foreground}",
        ],
    )
    train_ssl(cfg)
    logged = _metrics(tmp_path / "run")
    assert all(row["pair_weight_max"] >= 1.0 for row in logged)  # weights have mean 1, so the max is ≥ 1


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["method=simclr", "augment.recipe=simclr", "augment.n_local=0", "genaug.disentangle.bank=X"],
            "defined for DINO",
        ),
        (["loss.quality_weighting=true", "loss.quality_scorer=X"], "quality_weighting applies to"),
        (["genaug.adaptive_noise=true"], "needs genaug.bank"),
    ],
)
def test_misconfigured_switches_are_refused(tmp_path, tiny_tiles, overrides, message):
    cfg = load_config(SSLConfig, "configs/ssl/dino_tiny.yaml", [f"data={tiny_tiles}", *TINY, *overrides])
    with pytest.raises(ValueError, match=message):
        if overrides[0].startswith("genaug.adaptive"):
            from pathgen.stages.train_ssl import build_dataset

            build_dataset(cfg)
        elif overrides[0].startswith("loss."):
            from pathgen.stages.train_ssl import quality_weighter

            quality_weighter(cfg)
        else:
            build_ssl_method(cfg)


def test_adaptive_noise_refuses_a_fixed_noise_bank(tmp_path, tiny_tiles):
    bank = _bank(tmp_path / "views", tiny_tiles, "views")
    cfg = load_config(
        SSLConfig,
        "configs/ssl/dino_tiny.yaml",
        [f"data={tiny_tiles}", *TINY, f"genaug.bank={bank}", "genaug.adaptive_noise=true"],
    )
    from pathgen.stages.train_ssl import build_dataset

    with pytest.raises(ValueError, match="adaptive-noise"):
        build_dataset(cfg)
