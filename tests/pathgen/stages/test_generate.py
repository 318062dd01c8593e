"""`pathgen generate`: the three modes into a view bank, resume after a kill, the grid and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from pathgen.cli import main
from pathgen.config import load_config
from pathgen.diffusion.bank import BankWriter, ViewBank, bank_complete
from pathgen.diffusion.image_grid import grid_size
from pathgen.diffusion.sampling import SamplerConfig
from pathgen.stages.generate import GenerateConfig, generate_bank
from tiling.store import TileStore

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "diffusion"


def config(model, tiles, out, **kw) -> GenerateConfig:
    base = {
        "model": str(model),
        "tiles": [str(tiles)],
        "out": str(out),
        "n_views": 2,
        "max_sources": 4,
        "device": "cpu",
        "sampler": SamplerConfig("ddim", 3, 2.0),
        "batch_size": 4,
        "grid_rows": 3,
    }
    return GenerateConfig(**{**base, **kw})


def test_views_mode_writes_a_complete_bank_and_grid(tiny_ldm_dir, tiny_tiles, tmp_path):
    summary = generate_bank(config(tiny_ldm_dir, tiny_tiles, tmp_path / "b"), progress=False)
    assert summary["generated"] == 4 and summary["skipped"] == 0
    bank = ViewBank(tmp_path / "b")
    assert len(bank) == 4 and bank.attrs["mode"] == "views" and bank.attrs["n_views"] == 2
    views = bank.views(0)
    assert views.shape == (2, 32, 32, 3) and views.dtype == np.uint8
    assert all(bank.lookup(key) is not None for key in bank.keys())
    assert (tmp_path / "b" / "config.yaml").is_file()
    assert Image.open(tmp_path / "b" / "grid.png").size == grid_size(3, 2, 32, label_px=11)
    again = generate_bank(config(tiny_ldm_dir, tiny_tiles, tmp_path / "b"), progress=False)
    assert again["generated"] == 0 and again["skipped"] == 4


def test_killed_run_resumes_only_unfinished_rows(tiny_ldm_dir, tiny_tiles, tmp_path, monkeypatch):
    fresh = generate_bank(config(tiny_ldm_dir, tiny_tiles, tmp_path / "fresh", grid_rows=0), progress=False)
    assert fresh["generated"] == 4
    write_row, written = BankWriter.write_row, []

    def dying(self, row, *args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt  # killed mid-run
        written.append(row)
        return write_row(self, row, *args, **kwargs)

    monkeypatch.setattr(BankWriter, "write_row", dying)
    with pytest.raises(KeyboardInterrupt):
        generate_bank(config(tiny_ldm_dir, tiny_tiles, tmp_path / "b", grid_rows=0), progress=False)
    assert not bank_complete(tmp_path / "b") and not (tmp_path / "b" / "grid.png").exists()
    monkeypatch.setattr(BankWriter, "write_row", write_row)
    redone = []
    monkeypatch.setattr(
        BankWriter, "write_row", lambda self, row, *a, **k: (redone.append(row), write_row(self, row, *a, **k))
    )
    summary = generate_bank(config(tiny_ldm_dir, tiny_tiles, tmp_path / "b", grid_rows=0), progress=False)
    assert summary["generated"] == 2 and sorted(redone + written) == [0, 1, 2, 3] and not set(redone) & set(written)
    resumed, reference = ViewBank(tmp_path / "b"), ViewBank(tmp_path / "fresh")
    for row in range(4):  # same seeds → the resumed bank equals an uninterrupted one
        assert np.abs(resumed.views(row).astype(int) - reference.views(row).astype(int)).max() <= 1


def test_interpolate_records_secondary_and_alpha(tiny_ldm_dir, tiny_tiles, tmp_path):
    generate_bank(
        config(tiny_ldm_dir, tiny_tiles, tmp_path / "i", mode="interpolate", alpha=[0.2, 0.6]), progress=False
    )
    bank = ViewBank(tmp_path / "i")
    for row in range(len(bank)):
        meta = bank.meta(row)
        assert meta["secondary"] is not None and meta["secondary"] != meta["source"]
        assert ((meta["alpha"] >= 0.2) & (meta["alpha"] <= 0.6)).all() and len(set(meta["alpha"].tolist())) == 2
    # the grid shows both ends of every interpolation: primary, secondary, then the views
    grid = np.array(Image.open(tmp_path / "i" / "grid.png"))
    assert grid.shape[:2][::-1] == grid_size(3, 2, 32, label_px=11, n_real=2)
    secondary = TileStore(bank.meta(0)["secondary"].store)[bank.meta(0)["secondary"].index]
    top, left = 2 + 11, 2 + 32 + 2
    assert np.array_equal(grid[top : top + 32, left : left + 32], secondary)
    generate_bank(
        config(tiny_ldm_dir, tiny_tiles, tmp_path / "one", mode="interpolate", alpha=1.0, grid_rows=0), progress=False
    )
    generate_bank(config(tiny_ldm_dir, tiny_tiles, tmp_path / "plain", grid_rows=0), progress=False)
    one, plain = ViewBank(tmp_path / "one"), ViewBank(tmp_path / "plain")
    assert one.keys() == plain.keys()
    for row in range(len(one)):  # alpha = 1 is the source's own conditioning
        assert np.abs(one.views(row).astype(int) - plain.views(row).astype(int)).max() <= 1


def test_img2img_takes_a_strength_per_source(tiny_ldm_dir, tiny_tiles, tmp_path):
    strengths = np.array([0.0, 0.5, 0.5, 1.0], np.float32)
    generate_bank(config(tiny_ldm_dir, tiny_tiles, tmp_path / "m", mode="img2img"), strengths=strengths, progress=False)
    bank = ViewBank(tmp_path / "m")
    assert bank.attrs["mode"] == "img2img"
    assert [float(bank.meta(r)["strength"][0]) for r in range(4)] == strengths.tolist()
    assert bank.meta(0)["secondary"] is None


def test_cli_end_to_end_and_shipped_config(tiny_ldm_dir, tiny_tiles, tmp_path, capsys):
    shipped = load_config(GenerateConfig, CONFIGS / "generate_tiny.yaml")
    assert shipped.sampler.sampler in ("ddim", "dpm++") and shipped.n_views >= 1
    out = tmp_path / "cli"
    argv = [
        "generate",
        str(tiny_ldm_dir),
        str(tiny_tiles),
        "--out",
        str(out),
        "--config",
        str(CONFIGS / "generate_tiny.yaml"),
        "--n-views",
        "2",
        "--steps",
        "2",
        "--max-sources",
        "3",
        "--device",
        "cpu",
        "--no-progress",
        "grid_rows=2",
        "sampler.guidance_scale=1.5",
    ]
    assert main(argv) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["n_views"] == 2 and saved["sampler"]["steps"] == 2 and saved["sampler"]["guidance_scale"] == 1.5
    assert saved["model"] == str(tiny_ldm_dir) and saved["max_sources"] == 3
    assert len(ViewBank(out)) == 3
    assert Image.open(out / "grid.png").size == grid_size(2, 2, 32, label_px=11)
    capsys.readouterr()
    assert main(argv) == 2  # re-run without --resume: the existing bank is refused
    assert f"{out}: already holds a run" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0  # nothing left to do
    capsys.readouterr()
    assert main(argv + ["--resume", "--n-views", "3"]) == 2  # a different run into the same bank is refused
    assert "different n_views" in capsys.readouterr().err
    assert (
        main(["generate", str(tmp_path / "nope"), str(tiny_tiles), "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    )
    assert "nope" in capsys.readouterr().err
