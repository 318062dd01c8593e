"""Where an SSL sample's views come from: the interface between tile datasets and view sources.

The SSL dataset reads a tile and its `TileKey`, then asks a `ViewProvider` for the list of views
(global crops first, then local crops) that the method trains on. `AugmentedViews`, the default,
augments the real tile for every view.

How generated views plug in (the genaug stage): a generated-view provider gets the same tile, key
and generator, looks the key up in its view bank, and replaces the *source image* of some views
before the usual augmentations run. GenView (Li et al., ECCV 2024) makes one of the two views from
a generated variant of the tile, then applies the normal augmentation pipeline to it;
GenerativeSSL (Ayromlou et al., AAAI 2025) keeps view 0 real and, with probability p, builds every
later view from one of the tile's generated variants. `MixedSourceViews` is that mechanism: a
callable `source_for_view(key, view_index, rng)` returns an alternative (H, W, 3) uint8 image for a
view, or None to use the real tile. Bank lookup, the coin flip with probability p and the choice of
variant all live in that callable (drawing from `rng` keeps a run reproducible), so this module
stays free of bank formats.

Providers run inside DataLoader workers: keep them picklable (module-level callables, plain data).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pathgen.data.augment import MultiCropTransform, Seed, as_chw_uint8, as_generator


@dataclass(frozen=True)
class TileKey:
    """Which tile a sample is: the tile store (its path or name) and the tile's row in it."""

    store: str
    index: int


#: (key, view index, rng) → an alternative source image for that view, or None for the real tile
SourceForView = Callable[[TileKey, int, torch.Generator | None], np.ndarray | None]


class ViewProvider(abc.ABC):
    """Turns one tile into the views an SSL method trains on."""

    @abc.abstractmethod
    def views(self, tile: np.ndarray, key: TileKey, rng: Seed = None) -> list[torch.Tensor]:
        """Views of `tile` ((H, W, 3) uint8) as (3, h, w) float tensors, global crops first.
        `rng` (a generator or an int seed) drives every random draw; None uses torch's global RNG,
        which DataLoader seeds per worker."""


class AugmentedViews(ViewProvider):
    """The default provider: every view is an augmentation of the real tile."""

    def __init__(self, transform: MultiCropTransform):
        self.transform = transform

    def views(self, tile: np.ndarray, key: TileKey, rng: Seed = None) -> list[torch.Tensor]:
        return self.transform(tile, rng)


class MixedSourceViews(ViewProvider):
    """Per view, augment an alternative source image when `source_for_view` returns one, else the
    real tile. With a `source_for_view` that never consumes `rng`, the views it leaves alone are
    exactly those `AugmentedViews` makes with the same generator."""

    def __init__(self, transform: MultiCropTransform, source_for_view: SourceForView):
        self.transform = transform
        self.source_for_view = source_for_view

    def views(self, tile: np.ndarray, key: TileKey, rng: Seed = None) -> list[torch.Tensor]:
        real, rng = as_chw_uint8(tile), as_generator(rng)
        out = []
        for index in range(len(self.transform)):
            source = self.source_for_view(key, index, rng)
            out.append(self.transform.view(index, real if source is None else source, rng))
        return out
