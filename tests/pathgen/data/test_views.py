"""View providers: the default augments the real tile; MixedSourceViews swaps sources per view."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from pathgen.data.augment import IMAGENET_MEAN, IMAGENET_STD
from pathgen.data.recipes import dino_multicrop, two_view
from pathgen.data.views import AugmentedViews, MixedSourceViews, TileKey, ViewProvider

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)
KEY = TileKey("slides/a.zarr", 17)


def constant_tile(value: int, size: int = 48) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


def random_tile(size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def plain_multicrop():
    """DINO crops with no colour, stain or blur changes: a constant tile stays that constant."""
    return dino_multicrop(32, 16, n_local=6, hed_theta=0.0, color_jitter_p=0.0, grayscale_p=0.0, blur_sigma=(1.0, 1.0))


def test_augmented_views_are_the_transform_of_the_real_tile():
    transform, tile = dino_multicrop(48, 24, n_local=3), random_tile()
    views = AugmentedViews(transform).views(tile, KEY, torch.Generator().manual_seed(5))
    assert all(torch.equal(a, b) for a, b in zip(views, transform(tile, 5)))
    assert isinstance(AugmentedViews(transform), ViewProvider)


def test_mixed_source_uses_the_alternative_exactly_where_chosen():
    chosen, calls = {1, 3, 6}, []

    def source_for_view(key, index, rng):
        calls.append((key, index))
        return constant_tile(255, size=40) if index in chosen else None

    provider = MixedSourceViews(plain_multicrop(), source_for_view)
    views = provider.views(constant_tile(0), KEY, torch.Generator().manual_seed(0))
    means = [round((view * STD + MEAN).mean().item(), 4) for view in views]
    assert means == [1.0 if i in chosen else 0.0 for i in range(8)]
    assert calls == [(KEY, i) for i in range(8)]
    assert [tuple(v.shape) for v in views] == [(3, 32, 32)] * 2 + [(3, 16, 16)] * 6


def test_views_left_real_match_the_default_provider():
    transform, tile = dino_multicrop(48, 24, n_local=4), random_tile()
    alternative = random_tile(seed=9)
    mixed = MixedSourceViews(transform, lambda key, i, rng: alternative if i == 0 else None)
    default = AugmentedViews(transform).views(tile, KEY, torch.Generator().manual_seed(2))
    views = mixed.views(tile, KEY, torch.Generator().manual_seed(2))
    assert not torch.equal(views[0], default[0])
    assert all(torch.equal(a, b) for a, b in zip(views[1:], default[1:]))
    assert torch.equal(views[0], transform.view(0, alternative, torch.Generator().manual_seed(2)))


def test_generative_ssl_style_source_is_reproducible_with_the_generator():
    """View 0 real, later views generated with probability 0.5 (the coin drawn from rng)."""
    bank = {KEY: [constant_tile(255), constant_tile(128)]}

    def source_for_view(key, index, rng):
        if index == 0 or torch.rand((), generator=rng).item() >= 0.5:
            return None
        return bank[key][int(torch.randint(len(bank[key]), (), generator=rng))]

    provider = MixedSourceViews(two_view(32, recipe="byol"), source_for_view)
    first = provider.views(random_tile(), KEY, torch.Generator().manual_seed(4))
    again = provider.views(random_tile(), KEY, torch.Generator().manual_seed(4))
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    seeded = provider.views(random_tile(), KEY, 4)  # an int seed means a generator seeded with it
    assert all(torch.equal(a, b) for a, b in zip(first, seeded))


def test_view_provider_is_abstract_and_tile_key_is_a_value():
    with pytest.raises(TypeError):
        ViewProvider()
    assert TileKey("s", 1) == TileKey("s", 1) and len({TileKey("s", 1), TileKey("s", 1)}) == 1


class SameTileDataset(Dataset):
    """Four copies of one tile, as a tile-store dataset would hand them to a provider."""

    def __init__(self, provider: ViewProvider):
        self.provider, self.tile = provider, random_tile(48)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> list[torch.Tensor]:
        return self.provider.views(self.tile, TileKey("store", index))


def test_providers_run_in_dataloader_workers_with_per_worker_randomness():
    loader = DataLoader(SameTileDataset(AugmentedViews(dino_multicrop(32, 16, n_local=2))), batch_size=1, num_workers=2)
    samples = list(loader)
    assert [tuple(v.shape) for v in samples[0]] == [(1, 3, 32, 32)] * 2 + [(1, 3, 16, 16)] * 2
    firsts = [sample[0] for sample in samples]
    assert all(not torch.equal(a, b) for i, a in enumerate(firsts) for b in firsts[i + 1 :])
