"""The diffusion VAE: training lowers the loss and reconstructs tiles, the latent scaling factor
whitens the latents, VAE folders (pathgen and diffusers) load, and `pathgen train-vae` runs and resumes.

One tiny VAE is trained once for the module (150 steps at 32 px, about 30 s on a busy CPU).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from pathgen.cli import main
from pathgen.config import load_config
from pathgen.diffusion.training_data import DiffusionTiles
from pathgen.diffusion.vae import (
    LatentCodec,
    VAEConfig,
    build_vae,
    load_codec,
    save_vae,
)
from pathgen.stages.train_vae import VAETrainConfig, gradient_loss, ssim, train_vae
from pathgen.train import CHECKPOINT, METRICS

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "diffusion"
TINY = CONFIGS / "vae_tiny.yaml"
STEPS = 150


@pytest.fixture(scope="module")
def trained(tiny_tiles, tmp_path_factory) -> Path:
    """The run folder of the tiny config trained for STEPS steps (every step logged)."""
    run = tmp_path_factory.mktemp("vae_run") / "run"
    cfg = load_config(
        VAETrainConfig,
        TINY,
        [
            f"data={tiny_tiles}",
            f"out={run}",
            f"train.max_steps={STEPS}",
            "train.log_every=1",
            "train.progress=false",
            "scaling_tiles=128",
        ],
    )
    assert train_vae(cfg) == run / "model"
    return run


def _tiles(tiny_tiles: Path, n: int = 96) -> torch.Tensor:
    dataset = DiffusionTiles([tiny_tiles], 32, flips=False)
    step = len(dataset) // n
    return torch.stack([dataset[i * step]["image"] for i in range(n)])


def _mae_u8(codec: LatentCodec, images: torch.Tensor) -> float:
    """Mean absolute reconstruction error in [0, 255] units."""
    return float((codec.decode(codec.encode(images)) - images).abs().mean() * 127.5)


def test_loss_falls(trained):
    losses = [json.loads(line)["loss"] for line in (trained / METRICS).read_text().splitlines()]
    assert len(losses) == STEPS
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.75 * first, (first, last)


def test_reconstruction_error_is_small_and_far_below_untrained(trained, tiny_tiles):
    images = _tiles(tiny_tiles)
    codec = load_codec(trained / "model")
    torch.manual_seed(0)
    untrained = LatentCodec(build_vae(VAEConfig(**json.loads((trained / "model/config.json").read_text())["vae"])), 1.0)
    error, error_untrained = _mae_u8(codec, images), _mae_u8(untrained, images)
    mse = float(((codec.decode(codec.encode(images)) - images) / 2).pow(2).mean())
    print(
        f"tiny VAE after {STEPS} steps: MAE {error:.1f}/255 (untrained {error_untrained:.1f}), "
        f"PSNR {10 * math.log10(1 / mse):.1f} dB"
    )
    # measured ≈ 11/255 (PSNR ≈ 23 dB) after 150 steps; an untrained VAE (and the tiles' mean colour) ≈ 25-40
    assert error < 16.0
    assert error < 0.5 * error_untrained


def test_scaling_factor_whitens_latents(trained, tiny_tiles):
    codec = load_codec(trained / "model")
    config = json.loads((trained / "model/config.json").read_text())
    assert config["kind"] == "pathgen-vae" and config["image_size"] == 32
    assert config["source"]["scaling_tiles"] == 128 and config["source"]["step"] == STEPS
    assert math.isclose(codec.scaling_factor, 1 / config["source"]["latent_std"])
    latents = codec.encode(_tiles(tiny_tiles))
    assert latents.shape == (96, 4, 8, 8)
    assert 0.8 < float(latents.std()) < 1.25
    assert codec.downsample_factor == 4 and codec.latent_channels == 4


def test_save_load_round_trip_is_exact(trained, tiny_tiles, tmp_path):
    codec = load_codec(trained / "model")
    cfg = VAEConfig(**codec.source["vae"])
    again = load_codec(save_vae(codec.vae, cfg, codec.scaling_factor, tmp_path / "copy", image_size=32))
    images = _tiles(tiny_tiles, 8)
    latents = codec.encode(images)
    assert torch.equal(again.encode(images), latents)
    assert torch.equal(again.decode(latents), codec.decode(latents))
    assert not any(p.requires_grad for p in again.parameters()) and not again.vae.training


def test_random_init_vae_folder_for_other_tests(tmp_path):
    folder = save_vae(build_vae(VAEConfig()), VAEConfig(), 1.0, tmp_path / "vae")
    codec = load_codec(folder)
    latents = codec.encode(torch.zeros(2, 3, 32, 32))
    assert latents.shape == (2, 4, 8, 8)
    assert codec.decode(latents).shape == (2, 3, 32, 32)
    draw = [codec.encode(torch.zeros(1, 3, 32, 32), torch.Generator().manual_seed(1), sample=True) for _ in range(2)]
    assert torch.equal(draw[0], draw[1]) and not torch.equal(draw[0], latents[:1])


def test_load_local_diffusers_autoencoder(tmp_path):
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8,
        scaling_factor=0.5,
    )
    vae.save_pretrained(tmp_path / "sd_vae", safe_serialization=True)
    codec = load_codec(tmp_path / "sd_vae")
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    assert codec.scaling_factor == 0.5 and codec.downsample_factor == 2 and codec.source["format"] == "diffusers"
    with torch.no_grad():
        expected = vae.eval().encode(images).latent_dist.mode() * 0.5
    torch.testing.assert_close(codec.encode(images), expected)
    (tmp_path / "pipeline").mkdir()
    (tmp_path / "sd_vae").rename(tmp_path / "pipeline" / "vae")  # a pipeline checkout: its vae/ is used
    assert load_codec(tmp_path / "pipeline").scaling_factor == 0.5


def test_folders_that_are_not_vaes_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        load_codec(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="neither a pathgen VAE folder .* nor a diffusers AutoencoderKL folder"):
        load_codec(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(ValueError, match="safetensors"):
        load_codec(tmp_path)


def test_offline_losses_reward_sharp_reconstructions():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 32, 32) * 2 - 1
    blurred = torch.nn.functional.avg_pool2d(target, 3, stride=1, padding=1, count_include_pad=False)
    assert float(gradient_loss(target, target)) == 0.0 and float(ssim(target, target)) == pytest.approx(1.0)
    assert float(gradient_loss(blurred, target)) > 0.1 and float(ssim(blurred, target)) < 0.9


def test_cli_trains_and_resumes(tiny_tiles, tmp_path, capsys):
    run = tmp_path / "run"
    small = ["vae.block_out_channels=[8,16,16]", "scaling_tiles=16", "train.progress=false", "train.log_every=1"]
    assert (
        main(["train-vae", "--config", str(TINY), f"data={tiny_tiles}", f"out={run}", "train.max_steps=3", *small]) == 0
    )
    assert (run / "config.yaml").is_file() and (run / CHECKPOINT).is_file()
    assert (run / "model/model.safetensors").is_file() and (run / "model/config.json").is_file()
    assert main(["train-vae", "--resume", f"out={run}", "train.max_steps=5"]) == 0
    steps = [json.loads(line)["step"] for line in (run / METRICS).read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    assert json.loads((run / "model/config.json").read_text())["source"]["step"] == 5
    assert "VAE saved in" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data=DATA", "vae.block_out_chanels=[8]"], "unknown config key vae.block_out_chanels"),
        (["data=/nonexistent/tiles"], "/nonexistent/tiles"),
        ([], "no training data"),
    ],
)
def test_cli_errors_are_one_line(argv, message, tiny_tiles, tmp_path, capsys):
    argv = [a.replace("DATA", str(tiny_tiles)) for a in argv]
    assert main(["train-vae", "--config", str(TINY), f"out={tmp_path / 'run'}", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("vae_*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_build(path):
    cfg = load_config(VAETrainConfig, path, ["data=tiles"])
    vae = build_vae(cfg.vae)
    codec = LatentCodec(vae, 1.0)
    with torch.no_grad():
        latents = codec.encode(torch.zeros(1, 3, 32, 32))
    factor = 2 ** (len(cfg.vae.block_out_channels) - 1)
    assert latents.shape == (1, cfg.vae.latent_channels, 32 // factor, 32 // factor)
    assert cfg.image_size % factor == 0
