"""`pathgen eval-gen` end to end on tiny banks written with the view-bank writer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pathgen.cli import main
from pathgen.diffusion.bank import BankWriter
from pathgen.stages.eval_gen import INCEPTION_SKIPPED, NO_VAE, eval_gen
from tiling.store import TileStore, list_store_paths

K = 3


def _model_dir(root: Path, encoder: Path, vae: bool = False) -> Path:
    """A stand-in LDM folder: eval-gen needs its encoder/ copy, and reads vae/ when there is one."""
    model = root / "ldm"
    if not model.exists():
        shutil.copytree(encoder, model / "encoder")
    if vae and not (model / "vae").exists():
        from pathgen.diffusion.vae import VAEConfig, build_vae, save_vae

        torch.manual_seed(0)
        cfg = VAEConfig(block_out_channels=[16, 16], latent_channels=4, norm_num_groups=8)
        save_vae(build_vae(cfg), cfg, 1.0, model / "vae")
    return model


def _write_bank(
    out: Path, tiles: Path, model: Path, n: int = 8, mode: str = "views", views: str = "copies", alpha: float = 1.0
) -> Path:
    """A finished bank of n sources (alternating slides) whose K views are copies (optionally noisy or
    shuffled) of their source tiles."""
    stores = [str(p) for p in list_store_paths(tiles)]
    store_id, index = np.arange(n) % 2, 5 + 7 * np.arange(n)
    sources = np.stack([TileStore(stores[s])[i] for s, i in zip(store_id, index)])
    attrs = {
        "mode": mode,
        "n_views": K,
        "image_size": sources.shape[1],
        "sampler": {"sampler": "ddim"},
        "model": {"dir": str(model), "config": {}},
    }
    writer = BankWriter(out, stores, store_id, index, attrs)
    rng = np.random.default_rng(0)
    for row in range(n):
        source = sources[(row + 1) % n] if views == "shuffled" else sources[row]
        tile_views = np.repeat(source[None], K, axis=0).astype(np.int16)
        if views == "noisy":
            tile_views += rng.integers(-40, 41, tile_views.shape)
        secondary = (int(store_id[(row + 1) % n]), int(index[(row + 1) % n])) if mode == "interpolate" else None
        writer.write_row(
            row,
            np.clip(tile_views, 0, 255).astype(np.uint8),
            np.arange(K) + 10 * row,
            alpha=np.full(K, alpha) if mode == "interpolate" else None,
            secondary=secondary,
        )
    writer.finish()
    return out


def test_views_bank_report(tmp_path, tiny_tiles, tiny_encoder):
    bank = _write_bank(tmp_path / "bank", tiny_tiles, _model_dir(tmp_path, tiny_encoder), views="noisy")
    metrics = eval_gen(bank, device="cpu", batch_size=16, n_bootstrap=5)
    assert set(metrics["encoders"]) == {"conditioning"} and metrics["inception"] == {"skipped": INCEPTION_SKIPPED}
    m = metrics["encoders"]["conditioning"]
    assert m["conditioning"] and m["dim"] == 64
    assert m["frechet"]["n_sources"] == 8 and m["frechet"]["n_views"] == 8 * K
    assert m["frechet"]["n_reference"] == 8 * K and np.isfinite(m["frechet"]["real_vs_sources"])
    boot = m["frechet"]["views_vs_sources_bootstrap"]
    assert np.isfinite(m["frechet"]["views_vs_sources"]) and boot["std"] > 0 and boot["n_bootstrap"] == 5
    assert m["fidelity"]["fidelity"] > m["fidelity"]["random_pairs"]
    assert m["references"]["vae_reconstruction"] == {"skipped": NO_VAE} and metrics["vae"] == {"skipped": NO_VAE}
    assert 0 < m["precision_recall"]["views"]["precision"] <= 1 and m["precision_recall"]["real_vs_real"]["k"] == 3
    saved = json.loads((bank / "eval" / "metrics.json").read_text())
    assert saved["rows_evaluated"] == 8 and saved["mode"] == "views"
    report = (bank / "eval" / "metrics.md").read_text()
    assert "conditioning" in report and "skipped: no --inception" in report


def test_copies_are_faithful_and_shuffles_are_not(tmp_path, tiny_tiles, tiny_encoder):
    model = _model_dir(tmp_path, tiny_encoder)
    copies = eval_gen(_write_bank(tmp_path / "copies", tiny_tiles, model), device="cpu", n_bootstrap=0)
    shuffled = eval_gen(
        _write_bank(tmp_path / "shuffled", tiny_tiles, model, views="shuffled"),
        device="cpu",
        n_bootstrap=0,
        max_sources=5,
    )
    assert shuffled["rows_evaluated"] == 5 and shuffled["encoders"]["conditioning"]["frechet"]["n_views"] == 5 * K
    exact, wrong = copies["encoders"]["conditioning"], shuffled["encoders"]["conditioning"]
    assert exact["fidelity"]["fidelity"] == pytest.approx(1.0, abs=1e-5)
    assert exact["fidelity"]["retrieval_top1"] == 1.0
    assert wrong["fidelity"]["fidelity"] < exact["fidelity"]["fidelity"] - 1e-3
    assert wrong["fidelity"]["retrieval_top1"] == 0.0  # every view is its neighbour's source
    assert "views_vs_sources_bootstrap" not in exact["frechet"]
    # the copy bank sits below the real↔real floor: flagged, in the json and the report
    assert (
        exact["frechet"]["views_vs_sources"] < exact["frechet"]["real_vs_sources"] and exact["frechet"]["likely_copy"]
    )
    assert "LIKELY COPY" in (tmp_path / "copies" / "eval" / "metrics.md").read_text()
    # resolution-matched references: the tiles are already at the bank's size, so real = the copies
    refs = exact["references"]
    assert refs["real_at_bank_size"]["retrieval_top1"] == 1.0 and refs["shuffled_conditioning"]["retrieval_top1"] == 0.0
    assert refs["shuffled_conditioning"]["fidelity"] < refs["real_at_bank_size"]["fidelity"] - 1e-3
    assert exact["precision_recall"]["views"]["precision"] == 1.0


def test_vae_reconstructions_are_a_reference(tmp_path, tiny_tiles, tiny_encoder):
    bank = _write_bank(tmp_path / "bank", tiny_tiles, _model_dir(tmp_path, tiny_encoder, vae=True))
    metrics = eval_gen(bank, device="cpu", n_bootstrap=0)
    vae, m = metrics["vae"], metrics["encoders"]["conditioning"]
    assert vae["n_tiles"] == 8 and 0 < vae["psnr_db"] < 40  # an untrained VAE: far from a copy
    recon = m["references"]["vae_reconstruction"]
    assert 0 <= recon["retrieval_top1"] <= 1 and recon["fidelity"] < m["references"]["real_at_bank_size"]["fidelity"]
    assert "PSNR" in (bank / "eval" / "metrics.md").read_text()
    assert not list((bank / "eval").glob(".*.tmp"))


def test_interpolation_fidelity_uses_the_recorded_alpha(tmp_path, tiny_tiles, tiny_encoder):
    model = _model_dir(tmp_path, tiny_encoder)
    on_source = eval_gen(
        _write_bank(tmp_path / "a1", tiny_tiles, model, mode="interpolate", alpha=1.0), device="cpu", n_bootstrap=0
    )
    on_secondary = eval_gen(
        _write_bank(tmp_path / "a0", tiny_tiles, model, mode="interpolate", alpha=0.0), device="cpu", n_bootstrap=0
    )
    assert on_source["encoders"]["conditioning"]["fidelity"]["fidelity"] == pytest.approx(1.0, abs=1e-5)
    assert on_source["encoders"]["conditioning"]["fidelity"]["retrieval_top1"] == 1.0  # the identity test
    assert on_source["encoders"]["conditioning"]["fidelity"]["target"].startswith("slerp")
    assert on_secondary["encoders"]["conditioning"]["fidelity"]["fidelity"] < 1.0 - 1e-3


def test_cli_extra_encoder_and_inception(tmp_path, tiny_tiles, tiny_encoder, capsys, monkeypatch):
    from torchvision.models import inception_v3

    monkeypatch.setattr("pathgen.stages.eval_gen.INCEPTION_SIZE", 75)  # its smallest input: keeps CPU time low

    bank = _write_bank(tmp_path / "bank", tiny_tiles, _model_dir(tmp_path, tiny_encoder), n=2, views="noisy")
    other = shutil.copytree(tiny_encoder, tmp_path / "other_encoder")
    torch.manual_seed(0)
    weights = tmp_path / "inception.safetensors"
    save_file(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), str(weights))
    assert (
        main(
            [
                "eval-gen",
                str(bank),
                "--encoder",
                str(other),
                "--inception",
                str(weights),
                "--device",
                "cpu",
                "--bootstrap",
                "0",
                "--out",
                str(tmp_path / "report"),
            ]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert set(metrics["encoders"]) == {"conditioning", "other_encoder"}
    assert not metrics["encoders"]["other_encoder"]["conditioning"]
    assert metrics["inception"]["dim"] == 2048 and np.isfinite(metrics["inception"]["frechet"]["views_vs_sources"])
    assert "report in" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, tiny_tiles, tiny_encoder, capsys):
    assert main(["eval-gen", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pathgen eval-gen:") and "not a view bank" in err and "\n" not in err
    bank = _write_bank(tmp_path / "bank", tiny_tiles, tmp_path / "moved_model", n=2)
    assert main(["eval-gen", str(bank)]) == 2
    assert "--encoder" in capsys.readouterr().err
    assert main(["eval-gen", str(bank), "--encoder", str(tiny_encoder), "--inception", str(tmp_path / "no.st")]) == 2
    assert "no such Inception weights" in capsys.readouterr().err
    (tmp_path / "bad.safetensors").write_text("not weights")
    assert (
        main(["eval-gen", str(bank), "--encoder", str(tiny_encoder), "--inception", str(tmp_path / "bad.safetensors")])
        == 2
    )
    assert "not a safetensors state dict" in capsys.readouterr().err


def test_cli_rejects_bad_numbers(tmp_path, capsys):
    assert main(["eval-gen", str(tmp_path), "--bootstrap", "1"]) == 2
    assert "--bootstrap 0 or >= 2" in capsys.readouterr().err
