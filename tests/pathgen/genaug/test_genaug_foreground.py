"""Foreground estimators: the PCA direction, its sign rules and threshold, save / load, the
encoder path, and hematoxylin density on synthetic tiles."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import timm
import torch
from torch import nn

from pathgen.genaug.foreground import (
    EncoderForeground,
    ForegroundPCA,
    HematoxylinForeground,
    encoder_tokens,
    histogram_threshold,
    patch_tokens,
)
from pathgen.models.io import load_encoder

DIM = 16
PINK, PURPLE, GLASS = (230, 150, 190), (90, 60, 140), (240, 238, 242)


def planted_tokens(n_images: int = 40, n_tokens: int = 64, fg_share: float = 0.3, seed: int = 0):
    """Unit-variance noise plus 6·u on a random `fg_share` of tokens; also returns u and the fg mask."""
    g = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(DIM, generator=g), dim=0)
    foreground = torch.rand(n_images, n_tokens, generator=g) < fg_share
    tokens = torch.randn(n_images, n_tokens, DIM, generator=g) + 1.5 + 6.0 * foreground[..., None] * u
    return tokens, u, foreground


def test_recovers_planted_direction_with_foreground_positive():
    tokens, u, foreground = planted_tokens()
    pca = ForegroundPCA.fit(tokens)
    assert pca.sign_rule == "minority"
    assert float(pca.vector @ u) > 0.99  # the 30 % minority cluster is on the positive side
    assert pca.n_tokens == tokens.shape[0] * tokens.shape[1]
    # every planted token is foreground; α sits in the background's upper tail (35 % > 30 % planted),
    # so each ratio is the planted share plus a few background tokens, and follows it
    assert (pca.project(tokens)[foreground] > pca.threshold).all()
    ratio, planted = pca.foreground_ratio(tokens), foreground.float().mean(1)
    assert (ratio >= planted).all() and float((ratio - planted).mean()) < 0.1
    assert float(torch.corrcoef(torch.stack([ratio, planted]))[0, 1]) > 0.8


def test_threshold_puts_about_35_percent_of_fitting_tokens_in_the_foreground():
    tokens, _, _ = planted_tokens()
    pca = ForegroundPCA.fit(tokens)
    share = float((pca.project(tokens) > pca.threshold).float().mean())
    assert 0.35 <= share <= 0.37


def test_histogram_threshold_is_the_left_edge_of_the_bin_reaching_the_cdf():
    scores = torch.arange(200, dtype=torch.float64)  # one score per bin: the 130th bin brings the CDF to 0.65
    _, edges = np.histogram(scores.numpy(), bins=200)
    assert histogram_threshold(scores) == pytest.approx(edges[129])
    assert int((scores > histogram_threshold(scores)).sum()) == 71  # that bin's score counts as foreground
    with pytest.raises(ValueError, match="foreground_cdf"):
        histogram_threshold(scores, foreground_cdf=1.0)


def test_hematoxylin_orients_the_sign_over_the_minority_rule():
    tokens, u, foreground = planted_tokens()
    by_majority = ForegroundPCA.fit(tokens, token_hematoxylin=(~foreground).float())
    assert by_majority.sign_rule == "hematoxylin" and float(by_majority.vector @ u) < -0.99
    by_minority = ForegroundPCA.fit(tokens, token_hematoxylin=foreground.float())
    assert float(by_minority.vector @ u) > 0.99
    no_stain = ForegroundPCA.fit(tokens, token_hematoxylin=torch.zeros(foreground.shape))
    assert no_stain.sign_rule == "minority" and float(no_stain.vector @ u) > 0.99


def test_soft_foreground_is_min_max_normalised_per_image():
    tokens, _, _ = planted_tokens(n_images=3)
    soft = ForegroundPCA.fit(tokens).soft_foreground(tokens)
    assert soft.shape == (3, 64)
    assert torch.allclose(soft.amin(1), torch.zeros(3)) and torch.allclose(soft.amax(1), torch.ones(3), atol=1e-6)


def test_save_load_round_trip(tmp_path):
    tokens, _, _ = planted_tokens()
    pca = ForegroundPCA.fit(tokens)
    loaded = ForegroundPCA.load(pca.save(tmp_path / "encoder"))
    assert torch.equal(loaded.vector, pca.vector) and torch.equal(loaded.mean, pca.mean)
    assert (loaded.threshold, loaded.sign_rule, loaded.n_tokens) == (pca.threshold, pca.sign_rule, pca.n_tokens)
    with pytest.raises(ValueError, match="no readable foreground PCA"):
        ForegroundPCA.load(tmp_path / "missing")


def test_patch_tokens_drop_prefix_tokens_and_flatten_cnn_maps():
    vit = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=32, reg_tokens=2).eval()
    assert vit.num_prefix_tokens == 3  # class token and two registers
    images = torch.randn(2, 3, 32, 32)
    tokens = patch_tokens(vit, images)
    assert tokens.shape == (2, 4, vit.num_features) and torch.equal(tokens, vit.forward_features(images)[:, 3:])
    convnext = timm.create_model("test_convnext", pretrained=False, num_classes=0).eval()  # GenView's scorer kind
    images = torch.randn(1, 3, 64, 64)
    assert torch.equal(patch_tokens(convnext, images), convnext.forward_features(images).flatten(2).transpose(1, 2))


def nuclei_tiles(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) uint8 pink tiles on glass, each with a random number of purple squares."""
    rng = np.random.default_rng(seed)
    tiles = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        tiles[i] = PINK if i % 3 else GLASS
        for _ in range(rng.integers(0, 6)):
            y, x = rng.integers(0, size - 6, 2)
            tiles[i, y : y + 6, x : x + 6] = PURPLE
    return torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous()


def test_fit_encoder_streams_the_same_fit_as_in_memory_tokens():
    torch.manual_seed(0)
    vit = timm.create_model(
        "test_vit", pretrained=False, num_classes=0, img_size=32, patch_size=8, dynamic_img_size=True
    ).eval()
    batches = [nuclei_tiles(6, seed=s) for s in range(3)]
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    pca = ForegroundPCA.fit_encoder(vit, batches, mean, std)
    tokens = torch.cat([encoder_tokens(vit, tiles, mean, std) for tiles in batches])
    hematoxylin = torch.cat([HematoxylinForeground().token_concentration(tiles, 16) for tiles in batches])
    reference = ForegroundPCA.fit(tokens, token_hematoxylin=hematoxylin)
    assert pca.sign_rule == "hematoxylin" and pca.n_tokens == 3 * 6 * 16
    assert torch.allclose(pca.vector, reference.vector, atol=1e-5)
    assert pca.threshold == pytest.approx(reference.threshold, abs=1e-4)
    with pytest.raises(ValueError, match="re-iterable"):
        ForegroundPCA.fit_encoder(vit, (tiles for tiles in batches), mean, std)


def test_encoder_foreground_from_a_saved_encoder(tmp_path, tiny_encoder):
    model_dir = shutil.copytree(tiny_encoder, tmp_path / "encoder")
    model, config = load_encoder(model_dir)
    tiles = nuclei_tiles(8)
    ForegroundPCA.fit_encoder(model, [tiles], config.mean, config.std).save(model_dir)
    estimator = EncoderForeground.from_model_dir(model_dir)
    ratios = estimator.foreground_ratio(tiles)
    assert ratios.shape == (8,) and ((ratios >= 0) & (ratios <= 1)).all()
    assert isinstance(estimator.model, nn.Module) and not any(p.requires_grad for p in estimator.model.parameters())


def test_hematoxylin_ratio_higher_on_nuclei_dense_tile_than_on_pale_tile():
    pale = np.full((64, 64, 3), PINK, np.uint8)
    pale[:, :16] = GLASS
    dense = pale.copy()
    for y in range(0, 64, 8):
        for x in range(0, 64, 8):
            dense[y : y + 5, x : x + 5] = PURPLE
    tiles = torch.from_numpy(np.stack([pale, dense])).permute(0, 3, 1, 2)
    estimator = HematoxylinForeground()
    ratios = estimator.foreground_ratio(tiles)
    assert float(ratios[0]) == 0.0 and float(ratios[1]) == pytest.approx(64 * 25 / 64**2)
    assert torch.allclose(estimator.foreground_ratio(tiles.float() / 255), ratios)  # RGB in [0, 1] alike
    soft = estimator.soft_foreground(tiles, grid=8)
    assert soft.shape == (2, 64) and torch.allclose(soft.mean(1), ratios)  # pooling keeps the share
