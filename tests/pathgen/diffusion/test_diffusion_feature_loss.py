"""The VAE's feature loss: the centred cosine distance against hand-worked values, the encoder's input
contract (as `pathgen embed` prepares uint8 tiles), gradients to the reconstruction only, a frozen encoder,
and train-vae with feature_weight."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pathgen.config import load_config
from pathgen.diffusion.feature_loss import EncoderFeatureLoss, centred_cosine_distance
from pathgen.diffusion.images import to_model_range
from pathgen.diffusion.training_data import evenly_spaced
from pathgen.models.embeddings import preprocess
from pathgen.models.io import load_encoder
from pathgen.stages.train_vae import VAETrainConfig, train_vae

TINY = Path(__file__).resolve().parents[3] / "configs" / "diffusion" / "vae_tiny.yaml"


def test_without_a_centre_it_is_one_minus_the_cosine():
    # (3, 4) and (4, 3): cosine 24 / 25
    loss = centred_cosine_distance(torch.tensor([[3.0, 4.0]]), torch.tensor([[4.0, 3.0]]), torch.zeros(2))
    assert loss.item() == pytest.approx(1 - 24 / 25)


def test_the_centre_is_taken_off_on_the_unit_sphere():
    # (1, 0) and (0, 1) minus (0.5, 0.5) point in opposite directions: distance 2 (raw cosine 0 would give 1)
    opposite = centred_cosine_distance(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([0.5, 0.5]))
    assert opposite.item() == pytest.approx(2.0)
    # (2, 0) → unit (1, 0) → (1, -0.5); (1, 1) → (r, r), r = √½ → (r, r - 0.5); centre (0, 0.5)
    r = math.sqrt(0.5)
    expected = 1 - (r - 0.5 * (r - 0.5)) / (math.sqrt(1.25) * math.sqrt(0.5 + (r - 0.5) ** 2))
    loss = centred_cosine_distance(torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 1.0]]), torch.tensor([0.0, 0.5]))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_rows_are_averaged_and_scale_does_not_matter():
    features = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    targets = torch.tensor([[40.0, 30.0], [5.0, 0.0]])
    assert centred_cosine_distance(features, targets, torch.zeros(2)).item() == pytest.approx((1 - 24 / 25) / 2)


def test_embed_follows_the_encoders_input_contract(tiny_encoder):
    loss = EncoderFeatureLoss.from_folder(tiny_encoder)
    encoder, config = load_encoder(tiny_encoder)
    tiles_u8 = torch.randint(0, 256, (3, 3, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = encoder(preprocess(tiles_u8, config))
        got = loss.embed(to_model_range(tiles_u8))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_gradients_reach_the_reconstruction_only_and_the_encoder_stays_frozen(tiny_encoder):
    loss = EncoderFeatureLoss.from_folder(tiny_encoder)
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(4, 3, 32, 32, generator=generator) * 2 - 1
    loss.set_centre(target)
    assert loss(target.clone(), target).item() == pytest.approx(0.0, abs=1e-6)
    reconstruction = (target + 0.5 * torch.randn(target.shape, generator=generator)).requires_grad_(True)
    value = loss.train()(reconstruction, target)
    value.backward()
    assert value.item() > 0 and reconstruction.grad.abs().sum() > 0
    assert not loss.encoder.training and all(p.grad is None for p in loss.encoder.parameters())


def test_set_centre_is_the_mean_unit_embedding(tiny_encoder):
    loss = EncoderFeatureLoss.from_folder(tiny_encoder)
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    loss.set_centre(images, batch_size=2)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(loss.embed(images), dim=-1).mean(dim=0)
    torch.testing.assert_close(loss.centre, expected)


def test_evenly_spaced_indices():
    assert evenly_spaced(10, 3).tolist() == [0, 4, 9]
    assert evenly_spaced(2, 5).tolist() == [0, 1]


def test_feature_weight_needs_an_encoder(tiny_tiles, tmp_path):
    cfg = load_config(VAETrainConfig, TINY, [f"data={tiny_tiles}", f"out={tmp_path}", "feature_weight=0.5"])
    with pytest.raises(ValueError, match="needs feature_encoder=MODEL"):
        train_vae(cfg)


def test_train_vae_with_the_feature_loss(tiny_tiles, tiny_encoder, tmp_path):
    run = tmp_path / "run"
    overrides = [f"data={tiny_tiles}", f"out={run}", "train.max_steps=3", "train.log_every=1", "train.progress=false"]
    overrides += [
        "feature_weight=0.5",
        f"feature_encoder={tiny_encoder}",
        "scaling_tiles=16",
        "feature_centre_tiles=16",
    ]
    train_vae(load_config(VAETrainConfig, TINY, overrides))
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(row["feature"]) and row["feature"] >= 0 for row in logged if "feature" in row)
    assert sum("feature" in row for row in logged) == 3
    source = json.loads((run / "model" / "config.json").read_text())["source"]
    assert source["losses"]["feature_weight"] == 0.5
