"""Every shipped SSL config builds its method, and every tiny config trains two steps end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pathgen.cli import main
from pathgen.config import load_config
from pathgen.stages.train_ssl import SSLConfig, build_ssl_method, train_ssl

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "ssl"
ALL = sorted(CONFIGS.glob("*.yaml"))
TINY = [path for path in ALL if path.stem.endswith("_tiny")]


def test_every_method_has_a_real_scale_and_a_tiny_config():
    methods = {load_config(SSLConfig, path).method for path in ALL}
    assert methods == {"dino", "simclr", "mocov2", "mocov3", "byol", "simsiam", "barlow"}
    assert {load_config(SSLConfig, path).method for path in TINY} == methods


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_config_builds_its_method(path):
    cfg = load_config(SSLConfig, path)
    method = build_ssl_method(cfg)
    assert any(p.requires_grad for p in method.parameters())
    assert method.crops == (cfg.augment.n_global, cfg.augment.n_local or 0)


@pytest.fixture(scope="module")
def small_tiles(synthetic_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiles64")
    assert (
        main(["tile", str(synthetic_dir), "--out", str(out), "--mpp", "1.0", "--tile-size", "64", "--no-progress"]) == 0
    )
    return out


@pytest.mark.parametrize("path", TINY, ids=lambda p: p.stem)
def test_tiny_config_trains_two_steps(path, small_tiles, tmp_path):
    overrides = [
        f"data={small_tiles}",
        f"out={tmp_path / 'run'}",
        "train.max_steps=2",
        "train.batch_size=8",
        "train.num_workers=0",
        "train.progress=false",
    ]
    cfg = load_config(SSLConfig, path, overrides)
    torch.manual_seed(0)
    model_dir = train_ssl(cfg)
    assert (model_dir / "model.safetensors").is_file()
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") == 1  # logged at the last step
