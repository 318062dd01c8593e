"""HED jitter units: pathgen's skimage-unit jitter matches scikit-image's rgb2hed → α·s + β → hed2rgb
on real H&E tiles, and ln-OD units are 13.8× weaker in their offset."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import hed2rgb, rgb2hed

from pathgen.data.augment import HED_UNITS, SKIMAGE_OD_UNIT, HEDJitter, ViewSpec, perturb_stains
from pathgen.data.recipes import AugmentConfig, build_transform

TILES = sorted((Path(__file__).parent / "camelyon16_tiles").glob("*.png"))
THETA = 0.05  # HED-light (Tellez et al. 2018)


def real_tiles() -> list[np.ndarray]:
    assert len(TILES) == 4, "the CAMELYON16 test tiles are missing"
    return [np.asarray(Image.open(path).convert("RGB")) for path in TILES]


def draws(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(α, β) pairs as HEDJitter draws them: α ~ U(1−θ, 1+θ), β ~ U(−θ, θ) per channel."""
    rng = np.random.default_rng(seed)
    return [(1 + THETA * (2 * rng.random(3) - 1), THETA * (2 * rng.random(3) - 1)) for _ in range(n)]


def skimage_jitter(tile: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """The common reference implementation, in scikit-image's units; RGB in 0–255."""
    return hed2rgb(rgb2hed(tile / 255.0) * alpha + beta) * 255.0


def pathgen_jitter(tile: np.ndarray, alpha: np.ndarray, beta: np.ndarray, units: str) -> np.ndarray:
    rgb = torch.from_numpy(tile.transpose(2, 0, 1) / 255.0)
    out = perturb_stains(rgb, torch.tensor(alpha), torch.tensor(beta * HED_UNITS[units]))
    return out.numpy().transpose(1, 2, 0) * 255.0


def mean_rgb_change(jitter: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> float:
    """Mean |ΔRGB| (0–255) of `jitter(tile, α, β)` over the real tiles and the same 25 draws per tile."""
    tiles = real_tiles()
    changes = [np.abs(jitter(tile, a, b) - tile).mean() for tile in tiles for a, b in draws(25)]
    return float(np.mean(changes))


def test_skimage_unit_is_ln_one_million():
    rgb = np.random.default_rng(1).uniform(0.05, 1.0, (8, 8, 3))
    od = -np.log(rgb) @ np.linalg.inv(np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]]))
    assert SKIMAGE_OD_UNIT == pytest.approx(13.8155, abs=1e-4)
    np.testing.assert_allclose(np.maximum(od / SKIMAGE_OD_UNIT, 0), rgb2hed(rgb), atol=1e-6)


def test_skimage_units_match_the_skimage_reference_on_real_tiles():
    reference = mean_rgb_change(skimage_jitter)
    ours = mean_rgb_change(lambda t, a, b: pathgen_jitter(t, a, b, "skimage"))
    assert 20 < reference < 60  # θ 0.05 moves RGB by tens of grey levels in skimage units
    assert ours == pytest.approx(reference, rel=0.2)


def test_ln_od_units_are_an_order_of_magnitude_weaker():
    reference = mean_rgb_change(skimage_jitter)
    ln_od = mean_rgb_change(lambda t, a, b: pathgen_jitter(t, a, b, "ln_od"))
    assert 6 < reference / ln_od < 15


def test_hed_jitter_draws_scale_only_the_offset_with_the_unit():
    rgb = torch.from_numpy(real_tiles()[0][:16, :16].transpose(2, 0, 1) / 255.0)
    outs = {units: HEDJitter((0.0, 0.0, 0.0), 1.0, units)(rgb) for units in HED_UNITS}
    assert all(torch.allclose(out, rgb, atol=1e-6) for out in outs.values())  # θ 0: identity in any unit
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    strong = HEDJitter(THETA, 1.0, "skimage")(rgb, g1)
    weak = HEDJitter(THETA, 1.0, "ln_od")(rgb, g2)
    assert (strong - rgb).abs().mean() > 5 * (weak - rgb).abs().mean()
    assert math.isclose(HED_UNITS["skimage"] / HED_UNITS["ln_od"], math.log(1e6))


def test_unknown_units_are_refused_with_their_name():
    with pytest.raises(ValueError, match="'od10'"):
        HEDJitter(0.05, 1.0, "od10")
    with pytest.raises(ValueError, match="hed_units"):
        ViewSpec(32, (0.5, 1.0), hed_units="od10")


def test_augment_config_passes_the_units_to_every_view():
    views = build_transform(
        AugmentConfig(recipe="dino", global_size=32, local_size=16, n_local=2, hed_units="ln_od")
    ).views
    assert {view.hed_units for view in views} == {"ln_od"}
    assert {view.hed_units for view in build_transform(AugmentConfig(recipe="byol", n_local=0)).views} == {"skimage"}
