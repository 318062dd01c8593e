"""The embedding-conditioned denoiser, its EMA, training (`pathgen train-ldm`), resume and the saved model folder."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler
from safetensors.torch import load_file, save_file
from torch.utils.data import default_collate

from pathgen.checkpoint import load_checkpoint
from pathgen.cli import main
from pathgen.config import load_config
from pathgen.diffusion.ldm import EMA, ConditionedDenoiser, LDMConfig, ema_decay_at, scheduler_kwargs
from pathgen.diffusion.ldm_io import load_ldm, save_ldm
from pathgen.diffusion.training_data import DiffusionTiles
from pathgen.diffusion.vae import VAEConfig, build_vae, save_vae
from pathgen.models.embeddings import preprocess, read_embeddings
from pathgen.models.io import load_encoder
from pathgen.stages.train_ldm import LDMTrainConfig, build_objective, min_snr_weights

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "diffusion"
TINY = CONFIGS / "ldm_tiny.yaml"
QUIET = ["train.progress=false", "train.checkpoint_every=1000"]


def _tiny_denoiser(embed_dim: int = 64) -> ConditionedDenoiser:
    torch.manual_seed(0)
    return ConditionedDenoiser(load_config(LDMTrainConfig, TINY).ldm, embed_dim, latent_channels=4, latent_size=8)


def _denoiser_state(model_state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in model_state.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    """A random-init f4 VAE folder (the LDM tests check the LDM, not the VAE)."""
    torch.manual_seed(0)
    cfg = VAEConfig(block_out_channels=[16, 32, 32], norm_num_groups=8)
    return save_vae(build_vae(cfg), cfg, 1.0, tmp_path_factory.mktemp("ldm_vae") / "vae")


@pytest.fixture(scope="module")
def trained(tiny_tiles, tiny_encoder, vae_dir, tmp_path_factory) -> Path:
    """A 150-step tiny run through the CLI (its run folder), with LID's eps target: its loss falls visibly in
    150 steps (at high noise eps is nearly the input), where the v target's is dominated by the clean latent
    at high noise and needs the conditioning learnt first (its training: test_diffusion_conditioning_works)."""
    out = tmp_path_factory.mktemp("ldm_run") / "run"
    args = [
        "train-ldm",
        "--config",
        str(TINY),
        f"data={tiny_tiles}",
        f"encoder={tiny_encoder}",
        f"vae={vae_dir}",
        f"out={out}",
        "train.max_steps=150",
        "ldm.prediction_type=epsilon",
        *QUIET,
    ]
    assert main(args) == 0
    return out


def test_denoiser_shapes_and_unconditional_path():
    denoiser = _tiny_denoiser().eval()
    latents, timesteps = torch.randn(3, 4, 8, 8), torch.tensor([0, 500, 999])
    context = denoiser.context(torch.randn(3, 64))
    assert context.shape == (3, 1, 64)
    assert denoiser(latents, timesteps, context).shape == (3, 4, 8, 8)
    null = denoiser.null_context(3)
    torch.testing.assert_close(denoiser.context(torch.zeros(3, 64)), null)
    torch.testing.assert_close(denoiser.context(torch.randn(3, 64), torch.ones(3, dtype=torch.bool)), null)
    with torch.no_grad():
        eps_null = denoiser(latents, timesteps, null)
        assert torch.isfinite(eps_null).all() and not torch.allclose(eps_null, denoiser(latents, timesteps, context))


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="not divisible"):
        ConditionedDenoiser(LDMConfig(), 64, 4, latent_size=6)
    with pytest.raises(ValueError, match="multiples of ldm.attention_head_dim"):
        ConditionedDenoiser(LDMConfig(attention_head_dim=48), 64, 4, latent_size=8)


def test_schedule_is_lids_linear_betas():
    betas = DDPMScheduler(**scheduler_kwargs(LDMConfig())).betas.double()
    expected = torch.linspace(0.0015**0.5, 0.0195**0.5, 1000, dtype=torch.float64) ** 2  # CompVis "linear"
    torch.testing.assert_close(betas, expected, rtol=1e-5, atol=1e-7)


def test_ema_warmup_math():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, decay=0.9)
    expected = model.weight.detach().clone()
    for n in range(1, 6):
        with torch.no_grad():
            model.weight.add_(1.0)
        decay = ema.update(model)
        assert decay == pytest.approx(min(0.9, (1 + n) / (10 + n)))
        expected = decay * expected + (1 - decay) * model.weight.detach()
        torch.testing.assert_close(ema.shadow.weight, expected)
    assert int(ema.num_updates) == 5 and ema_decay_at(0.9999, 10**7) == 0.9999
    assert ema_decay_at(0.9999, 1) == pytest.approx(2 / 11)
    clone = EMA(torch.nn.Linear(3, 2), decay=0.9)
    clone.load_state_dict(ema.state_dict())
    assert int(clone.num_updates) == 5 and torch.equal(clone.shadow.weight, ema.shadow.weight)
    assert not any(p.requires_grad for p in ema.parameters())


def test_base_config_builds():
    cfg = load_config(LDMTrainConfig, CONFIGS / "ldm_base.yaml")
    assert (cfg.image_size, cfg.ldm.cross_attention_dim, cfg.ldm.n_context_tokens) == (256, 512, 1)
    assert cfg.train.precision == "bf16" and cfg.ldm.ema_decay > 0 and cfg.train.lr == 1e-4
    with torch.device("meta"):
        denoiser = ConditionedDenoiser(cfg.ldm, embed_dim=384, latent_channels=4, latent_size=cfg.image_size // 4)
    n_params = sum(p.numel() for p in denoiser.parameters())
    assert 300e6 < n_params < 500e6  # LID's UNet is ~400M
    assert denoiser.unet.config.down_block_types[0] == "DownBlock2D"  # no attention at 64×64, as in LID


def test_min_snr_weights_against_the_schedule_by_hand():
    betas = torch.linspace(0.0015**0.5, 0.0195**0.5, 1000, dtype=torch.float64) ** 2  # CompVis "linear"
    alpha_bar = torch.cumprod(1 - betas, dim=0)
    timesteps = torch.tensor([0, 100, 400, 999])
    weights = min_snr_weights(DDPMScheduler(**scheduler_kwargs(LDMConfig())).alphas_cumprod, timesteps, 5.0)
    snr = [float(alpha_bar[t] / (1 - alpha_bar[t])) for t in timesteps]
    assert snr[0] > 5 and snr[-1] < 5  # the first steps are down-weighted, the noisy ones keep weight 1
    assert weights.tolist() == pytest.approx([min(s, 5.0) / s for s in snr], rel=1e-5)
    assert weights[-1].item() == pytest.approx(1.0)


def test_time_conditioning_feeds_the_context_into_the_timestep_embedding():
    cfg = LDMConfig(
        block_out_channels=[32, 64],
        attention_head_dim=16,
        cross_attention_dim=64,
        norm_num_groups=16,
        cross_attention_levels=[],
        time_conditioning=True,
    )
    torch.manual_seed(0)
    denoiser = ConditionedDenoiser(cfg, 64, 4, latent_size=8).eval()
    assert denoiser.unet.class_embedding is not None
    assert denoiser.unet.class_embedding.linear_1.in_features == 64  # n_context_tokens × cross_attention_dim
    plain = ConditionedDenoiser(replace(cfg, time_conditioning=False), 64, 4, latent_size=8)
    assert plain.unet.class_embedding is None
    latents, timesteps = torch.randn(2, 4, 8, 8), torch.tensor([10, 600])
    context = denoiser.context(torch.randn(2, 64))
    denoiser(latents, timesteps, context).square().mean().backward()
    assert denoiser.unet.class_embedding.linear_1.weight.grad.abs().sum() > 0  # the context reached it
    with torch.no_grad():
        with_null = denoiser(latents, timesteps, denoiser.null_context(2))
        assert not torch.allclose(denoiser(latents, timesteps, context), with_null)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("ldm_*.yaml")), ids=lambda p: p.stem)
def test_shipped_configs_build(path):
    cfg = load_config(LDMTrainConfig, path)
    latent_size = cfg.image_size // 4  # the f4 VAEs of configs/diffusion
    with torch.device("meta"):
        denoiser = ConditionedDenoiser(cfg.ldm, embed_dim=192, latent_channels=4, latent_size=latent_size)
    assert (denoiser.unet.class_embedding is not None) == cfg.ldm.time_conditioning
    assert cfg.train.max_steps is None or cfg.train.max_steps > 0


def test_training_loss_falls(trained):
    losses = [json.loads(line)["loss"] for line in (trained / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 15
    first, last = sum(losses[:2]) / 2, sum(losses[-3:]) / 3
    assert last < 0.8 * first, losses


def test_run_folder_and_saved_model_round_trip(trained, tiny_encoder, tiny_tiles):
    assert (trained / "config.yaml").is_file() and (trained / "checkpoints" / "last.pt").is_file()
    model_dir = trained / "model"
    assert {p.name for p in model_dir.iterdir()} >= {"model.safetensors", "config.json", "vae", "encoder"}
    ldm = load_ldm(model_dir)
    assert (ldm.image_size, ldm.latent_size, ldm.codec.downsample_factor) == (32, 8, 4)
    assert not ldm.denoiser.training and not any(p.requires_grad for p in ldm.denoiser.parameters())
    # the saved weights are the checkpoint's EMA copy, not the raw denoiser
    state = load_checkpoint(trained / "checkpoints" / "last.pt")
    assert state["step"] == 150
    ema, raw = _tiny_denoiser(), _tiny_denoiser()
    ema.load_state_dict(_denoiser_state(state["model"], "ema.shadow."))
    raw.load_state_dict(_denoiser_state(state["model"], "denoiser."))
    latents, timesteps = torch.randn(2, 4, 8, 8), torch.tensor([10, 900])
    tiles = torch.from_numpy(DiffusionTiles([tiny_tiles], 32, flips=False)[0]["tile_u8"].numpy())[None]
    embeddings = ldm.embed(tiles)
    encoder, encoder_config = load_encoder(tiny_encoder)
    with torch.no_grad():
        torch.testing.assert_close(embeddings, encoder(preprocess(tiles, encoder_config)))
        context = ldm.denoiser.context(embeddings.expand(2, -1))
        eps = ldm.denoiser(latents, timesteps, context)
        assert torch.equal(eps, ema.eval()(latents, timesteps, context))
        assert not torch.allclose(eps, raw.eval()(latents, timesteps, context))
    again = load_ldm(save_ldm(ldm.denoiser, trained / "copy", model_dir / "vae", model_dir / "encoder", 32))
    with torch.no_grad():
        assert torch.equal(again.denoiser(latents, timesteps, context), eps)


def test_resume_continues_to_the_same_weights(tiny_tiles, tiny_encoder, vae_dir, tmp_path):
    common = [f"data={tiny_tiles}", f"encoder={tiny_encoder}", f"vae={vae_dir}", *QUIET]  # 25 steps per epoch
    assert main(["train-ldm", "--config", str(TINY), f"out={tmp_path / 'whole'}", "train.max_steps=30", *common]) == 0
    assert main(["train-ldm", "--config", str(TINY), f"out={tmp_path / 'split'}", "train.max_steps=20", *common]) == 0
    assert main(["train-ldm", "--resume", f"out={tmp_path / 'split'}", "train.max_steps=30"]) == 0  # across an epoch
    whole = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")
    split = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert whole["step"] == split["step"] == 30
    assert whole["model"].keys() == split["model"].keys()
    for key, value in whole["model"].items():
        assert torch.equal(value, split["model"][key]), key


def test_cli_errors_are_one_line(tiny_tiles, tiny_encoder, tmp_path, capsys):
    assert (
        main(
            [
                "train-ldm",
                "--config",
                str(TINY),
                f"data={tiny_tiles}",
                f"encoder={tiny_encoder}",
                f"out={tmp_path / 'run'}",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("pathgen train-ldm:") and "vae=" in err and "\n" not in err


def test_precomputed_embeddings_are_pathgen_embed_output(tiny_tiles, tiny_encoder, vae_dir, tmp_path):
    tiles = tmp_path / "tiles"
    shutil.copytree(tiny_tiles, tiles)  # `pathgen embed` writes beside the tiles: keep the shared fixture clean
    assert main(["embed", str(tiny_encoder), str(tiles), "--name", "tiny", "--workers", "0", "--no-progress"]) == 0
    dataset = DiffusionTiles([tiles], 32, embeddings_name="tiny", flips=False)
    batch = default_collate([dataset[i] for i in (0, 5, 200, 400)])
    store_rows = read_embeddings(dataset.stores[0].path, "tiny")
    torch.testing.assert_close(batch["embedding"][:2], torch.from_numpy(store_rows[[0, 5]]))
    values = {"data": [str(tiles)], "encoder": str(tiny_encoder), "vae": str(vae_dir), "image_size": 32}
    on_the_fly = build_objective(load_config(LDMTrainConfig, TINY, [f"{k}={v}" for k, v in values.items()]))
    precomputed = build_objective(
        load_config(LDMTrainConfig, TINY, [f"{k}={v}" for k, v in values.items()] + ["embeddings_name=tiny"])
    )
    assert precomputed.encoder is None and on_the_fly.encoder is not None
    torch.testing.assert_close(on_the_fly.embed(batch["tile_u8"]), batch["embedding"], atol=1e-5, rtol=1e-5)
    losses = []
    for objective, item in ((on_the_fly, {k: v for k, v in batch.items() if k != "embedding"}), (precomputed, batch)):
        torch.manual_seed(1)
        losses.append(objective(item)["loss"])
    torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=1e-5)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train-ldm",
                "--config",
                str(TINY),
                f"data={tiles}",
                f"encoder={tiny_encoder}",
                f"vae={vae_dir}",
                f"out={out}",
                "embeddings_name=tiny",
                "train.max_steps=2",
                *QUIET,
            ]
        )
        == 0
    )
    assert load_ldm(out / "model").denoiser.embed_dim == 64


def test_standardised_conditioning_uses_the_training_embeddings_and_old_folders_still_load(
    tiny_tiles, tiny_encoder, vae_dir, tmp_path
):
    tiles = tmp_path / "tiles"
    shutil.copytree(tiny_tiles, tiles)
    assert main(["embed", str(tiny_encoder), str(tiles), "--name", "tiny", "--workers", "0", "--no-progress"]) == 0
    out = tmp_path / "run"
    assert (
        main(
            [
                "train-ldm",
                "--config",
                str(TINY),
                f"data={tiles}",
                f"encoder={tiny_encoder}",
                f"vae={vae_dir}",
                f"out={out}",
                "embeddings_name=tiny",
                "ldm.standardize_embeddings=true",
                "train.max_steps=2",
                *QUIET,
            ]
        )
        == 0
    )
    stores = DiffusionTiles([tiles], 32).stores
    rows = torch.cat([torch.from_numpy(read_embeddings(store.path, "tiny")) for store in stores]).double()
    rows = torch.nn.functional.normalize(rows, dim=-1)  # the statistics are taken on the unit sphere
    assert len(stores) == 2 and len(rows) == 401
    conditioner = load_ldm(out / "model").denoiser.conditioner
    torch.testing.assert_close(conditioner.embedding_mean, rows.mean(0).float())
    torch.testing.assert_close(conditioner.embedding_std, rows.std(0).float())
    # a folder saved before the statistics existed: its weights lack them, it loads as unstandardised
    weights = out / "model" / "model.safetensors"
    state = load_file(str(weights))
    save_file({k: v for k, v in state.items() if "embedding_" not in k}, str(weights))
    old = load_ldm(out / "model").denoiser.conditioner
    assert torch.count_nonzero(old.embedding_mean) == 0 and torch.all(old.embedding_std == 1)
    torch.testing.assert_close(old.proj.weight, conditioner.proj.weight)
