"""Pathology augmentations: recipe numbers, shapes, determinism, HED maths, op probabilities."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import yaml
from torchvision.transforms.v2 import functional as F

from pathgen.config import from_dict, to_dict
from pathgen.data.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RGB_FROM_HED,
    HEDJitter,
    MultiCropTransform,
    RandomFlip,
    RandomRot90,
    ViewSpec,
    adjust_hue,
    crop_box,
    gaussian_blur,
    hed_to_rgb,
    perturb_stains,
    rgb_to_hed,
)
from pathgen.data.recipes import AugmentConfig, build_transform, dino_multicrop, two_view

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)
#: every view is the whole 32² tile, with no colour change: what the tile shows stays measurable
PLAIN = {
    "global_size": 32,
    "local_size": 32,
    "global_scale": (1.0, 1.0),
    "local_scale": (1.0, 1.0),
    "hed_theta": 0.0,
    "color_jitter_p": 0.0,
    "grayscale_p": 0.0,
}


def random_tile(size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def constant_tile(rgb: tuple[int, int, int], size: int = 32) -> np.ndarray:
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (size, size, 3)).copy()


def denormalise(view: torch.Tensor) -> torch.Tensor:
    return view * STD + MEAN


def fraction_per_view(transform: MultiCropTransform, tile: np.ndarray, detect, draws: int = 300) -> np.ndarray:
    """Share of `draws` samples in which `detect(denormalised view)` holds, per view index."""
    g = torch.Generator().manual_seed(0)
    hits = np.zeros(len(transform))
    for _ in range(draws):
        hits += [bool(detect(denormalise(view))) for view in transform(tile, g)]
    return hits / draws


def test_dino_multicrop_gives_globals_then_locals():
    transform = dino_multicrop()
    views = transform(random_tile(224), 0)
    assert (transform.n_global, transform.n_local) == (2, 8)
    assert [tuple(v.shape) for v in views] == [(3, 224, 224)] * 2 + [(3, 96, 96)] * 8
    assert all(v.dtype == torch.float32 for v in views)


@pytest.mark.parametrize("recipe", ["simclr", "byol", "symmetric"])
def test_two_view_recipes_give_two_views(recipe):
    views = two_view(96, recipe=recipe)(random_tile(128), 0)
    assert [tuple(v.shape) for v in views] == [(3, 96, 96)] * 2


def test_dino_recipe_numbers_match_main_dino():
    views = dino_multicrop().views
    assert [v.blur_p for v in views] == [1.0, 0.1] + [0.5] * 8
    assert [v.solarize_p for v in views] == [0.0, 0.2] + [0.0] * 8
    assert [(v.size, v.scale) for v in views[1:3]] == [(224, (0.4, 1.0)), (96, (0.05, 0.4))]
    assert {(v.color_jitter, v.color_jitter_p, v.grayscale_p, v.hflip_p, v.blur_sigma) for v in views} == {
        ((0.4, 0.4, 0.2, 0.1), 0.8, 0.2, 0.5, (0.1, 2.0))
    }
    assert {(v.rot90, v.vflip_p, v.hed_theta, v.hed_p, v.mean, v.std) for v in views} == {
        (True, 0.5, 0.05, 0.5, IMAGENET_MEAN, IMAGENET_STD)
    }


@pytest.mark.parametrize(
    "recipe, jitter, blur, solarize",
    [
        ("simclr", (0.8, 0.8, 0.8, 0.2), [0.5, 0.5], [0.0, 0.0]),
        ("byol", (0.4, 0.4, 0.2, 0.1), [1.0, 0.1], [0.0, 0.2]),
        ("symmetric", (0.4, 0.4, 0.4, 0.1), [0.5, 0.5], [0.0, 0.0]),
    ],
)
def test_two_view_recipe_numbers(recipe, jitter, blur, solarize):
    views = two_view(recipe=recipe).views
    assert [v.blur_p for v in views] == blur and [v.solarize_p for v in views] == solarize
    assert {(v.color_jitter, v.color_jitter_p, v.grayscale_p, v.scale, v.size) for v in views} == {
        (jitter, 0.8, 0.2, (0.2, 1.0), 224)
    }


@pytest.mark.parametrize("recipe", ["dino", "simclr", "byol", "symmetric"])
def test_views_stay_in_the_normalised_range(recipe):
    cfg = AugmentConfig(recipe=recipe, global_size=64, local_size=32, hed_theta=0.3, hed_p=1.0)
    low, high = (0 - MEAN) / STD, (1 - MEAN) / STD
    for seed in range(5):
        for view in build_transform(cfg)(random_tile(80, seed), seed):
            assert torch.all(view >= low - 1e-5) and torch.all(view <= high + 1e-5)


def test_same_seed_same_views_and_input_kinds_agree():
    transform, tile = dino_multicrop(64, 32), random_tile(80)
    first = transform(tile, 7)
    again = transform(torch.from_numpy(tile).permute(2, 0, 1).contiguous(), torch.Generator().manual_seed(7))
    other = transform(tile, 8)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


def test_without_generator_draws_from_the_global_rng():
    transform, tile = two_view(32), random_tile(48)
    torch.manual_seed(3)
    first = transform(tile)
    torch.manual_seed(3)
    assert all(torch.equal(a, b) for a, b in zip(first, transform(tile)))


def test_bad_input_is_refused_with_its_shape():
    with pytest.raises(ValueError, match="uint8"):
        two_view(32)(np.zeros((32, 32, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        two_view(32)(torch.zeros(32, 32, 3, dtype=torch.uint8))


def test_rgb_hed_round_trip_is_identity():
    rgb = torch.rand(3, 40, 40, dtype=torch.float64).clamp_min(1 / 255)
    assert torch.allclose(hed_to_rgb(rgb_to_hed(rgb)), rgb, atol=1e-10)
    rgb32 = rgb.float()
    assert torch.allclose(hed_to_rgb(rgb_to_hed(rgb32)), rgb32, atol=1e-4)


def test_hed_jitter_with_zero_theta_is_identity_and_keeps_range():
    rgb = torch.rand(3, 40, 40)
    assert torch.allclose(HEDJitter(theta=0.0, p=1.0)(rgb), rgb, atol=1e-5)
    strong = HEDJitter(theta=0.5, p=1.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        out = strong(rgb, g)
        assert out.min() >= 0 and out.max() <= 1 and out.shape == rgb.shape


def stained(h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """RGB of pixels with hematoxylin and eosin concentrations h and e (Beer–Lambert)."""
    conc = torch.stack([h, e, torch.zeros_like(h)])
    return torch.exp(-(RGB_FROM_HED.T.float() @ conc.reshape(3, -1))).reshape(conc.shape)


def test_jitter_of_hematoxylin_alone_is_affine_in_h_and_leaves_eosin():
    g = torch.Generator().manual_seed(1)
    h, e = 0.3 + 0.7 * torch.rand(16, 16, generator=g), 0.3 + 0.7 * torch.rand(16, 16, generator=g)
    before = rgb_to_hed(stained(h, e))
    after = rgb_to_hed(HEDJitter(theta=(0.1, 0.0, 0.0), p=1.0)(stained(h, e), g))
    assert torch.allclose(after[1:], before[1:], atol=1e-4)  # eosin and DAB untouched
    design = torch.stack([before[0].flatten(), torch.ones(256)], dim=1)
    (alpha, beta), *_ = torch.linalg.lstsq(design, after[0].flatten()[:, None])
    assert 0.9 <= alpha.item() <= 1.1 and -0.1 <= beta.item() <= 0.1 and abs(alpha.item() - 1) > 1e-4
    fitted = alpha * before[0] + beta
    assert torch.allclose(after[0], fitted, atol=1e-4)


def test_perturb_stains_with_unit_alpha_and_zero_beta_is_identity():
    rgb = stained(torch.full((4, 4), 0.5), torch.full((4, 4), 0.2))
    assert torch.allclose(perturb_stains(rgb, torch.ones(3), torch.zeros(3)), rgb, atol=1e-6)


@pytest.mark.parametrize("sigma", [0.3, 1.0, 2.0])
def test_gaussian_blur_matches_torchvision(sigma):
    image = torch.rand(3, 40, 36)
    size = 2 * math.ceil(3 * sigma) + 1
    expected = F.gaussian_blur(image, [size, size], [sigma, sigma])
    assert torch.allclose(gaussian_blur(image, sigma), expected, atol=1e-5)


@pytest.mark.parametrize("factor", [-0.5, -0.1, 0.03, 0.25])
def test_adjust_hue_matches_torchvision(factor):
    image = torch.rand(3, 24, 24)
    image[:, :4] = 0.5  # grey pixels keep their colour
    assert torch.allclose(adjust_hue(image, factor), F.adjust_hue(image, factor), atol=1e-5)


def test_rot90_and_flips_keep_the_pixel_values_and_reach_every_orientation():
    image = torch.arange(3 * 5 * 5, dtype=torch.float32).view(3, 5, 5)
    g, seen = torch.Generator().manual_seed(0), set()
    for _ in range(40):
        out = RandomFlip(0.5, 0.5)(RandomRot90()(image, g), g)
        assert torch.equal(out.flatten().sort().values, image.flatten().sort().values)
        seen.add(tuple(out[0, 0, :2].tolist()))
    assert len(seen) == 8  # the dihedral group of the square


def test_crop_box_stays_inside_and_honours_scale():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = crop_box(100, 80, (0.05, 0.4), (3 / 4, 4 / 3), g)
        assert 0 <= top and top + h <= 100 and 0 <= left and left + w <= 80
        assert 0.04 <= h * w / 8000 <= 0.42
    assert crop_box(32, 32, (1.0, 1.0), (3 / 4, 4 / 3), g) == (0, 0, 32, 32)


def test_dino_solarizes_only_the_second_global_crop():
    transform = dino_multicrop(n_local=2, **PLAIN)
    rates = fraction_per_view(transform, constant_tile((200, 200, 200)), lambda v: v.mean() < 0.5)
    assert rates[0] == 0 and np.all(rates[2:] == 0)
    assert abs(rates[1] - 0.2) < 0.08


def test_dino_blur_probabilities_per_view():
    checker = (np.indices((32, 32)).sum(0) % 2 * 100).astype(np.uint8)
    tile = np.repeat(checker[..., None], 3, axis=2)  # below the solarize threshold: only blur flattens it
    transform = dino_multicrop(n_local=4, blur_sigma=(1.5, 1.5), **PLAIN)
    rates = fraction_per_view(transform, tile, lambda v: v.std() < 0.05)
    assert rates[0] == 1.0 and abs(rates[1] - 0.1) < 0.06 and abs(rates[2:].mean() - 0.5) < 0.05


def test_byol_solarizes_only_view_two():
    rates = fraction_per_view(
        two_view(32, (1.0, 1.0), "byol", hed_theta=0.0, color_jitter_p=0.0, grayscale_p=0.0),
        constant_tile((200, 200, 200)),
        lambda v: v.mean() < 0.5,
    )
    assert rates[0] == 0 and abs(rates[1] - 0.2) < 0.08


@pytest.mark.parametrize(
    "options, rate",
    [
        ({"grayscale_p": 0.2}, 0.2),
        ({"color_jitter_p": 0.8}, 0.8),
        ({"hed_theta": 0.2, "hed_p": 0.5}, 0.5),
    ],
)
def test_colour_and_stain_probabilities(options, rate):
    tile = constant_tile((200, 60, 120))
    transform = dino_multicrop(n_local=4, **{**PLAIN, **options})
    changed = fraction_per_view(
        transform, tile, lambda v: (v - torch.tensor([200, 60, 120]).view(3, 1, 1) / 255).abs().max() > 2e-3, draws=150
    )
    assert abs(changed.mean() - rate) < 0.05


def test_config_builds_every_recipe_and_survives_yaml():
    for recipe, count in [("dino", 10), ("simclr", 2), ("byol", 2), ("symmetric", 2)]:
        cfg = AugmentConfig(recipe=recipe, global_size=32, local_size=16)
        restored = from_dict(AugmentConfig, yaml.safe_load(yaml.safe_dump(to_dict(cfg))))
        assert restored == cfg and len(build_transform(restored)) == count
    dino = build_transform(AugmentConfig(n_local=4, color_jitter=(0.1, 0.1, 0.1, 0.0), rot90=False))
    assert dino.n_local == 4 and dino.views[0].color_jitter == (0.1, 0.1, 0.1, 0.0) and not dino.views[0].rot90
    assert build_transform(AugmentConfig(recipe="simclr")).views[0].scale == (0.2, 1.0)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="augment.recipe 'mocov9'"):
        build_transform(AugmentConfig(recipe="mocov9"))
    with pytest.raises(ValueError, match="exactly 2 views"):
        build_transform(AugmentConfig(recipe="byol", n_local=2))
    with pytest.raises(ValueError, match="blur_p"):
        dino_multicrop(blur_p=0.3)
    with pytest.raises(ValueError, match="probabilities"):
        ViewSpec(32, (0.5, 1.0), grayscale_p=1.5)


def test_transform_pickles_for_dataloader_workers():
    transform = dino_multicrop(32, 16, n_local=2)
    clone = pickle.loads(pickle.dumps(transform))
    tile = random_tile(40)
    assert all(torch.equal(a, b) for a, b in zip(transform(tile, 1), clone(tile, 1)))
