"""Generated views as SSL augmentations: which views of a sample come from the view bank.

Two policies, both as the papers define them (docs/methods/genview.md and generative_ssl.md):

- ``generativessl`` (Ayromlou et al., AAAI 2025, "Can Generative Models Improve SSL?"): view 0
  stays real; with probability p (one coin per sample) every later view is made from one of the
  tile's generated variants (one variant per sample, chosen uniformly). Their released configs use
  p = 1; the paper's ablations 0.25 / 0.5 / 0.75.
- ``genview`` (Li et al., ECCV 2024): one of the global views, chosen uniformly, is made from a
  generated variant with probability p; the others stay real, so pairs are (real, generated) and
  never (generated, generated). GenView's released configs use p = 1.

The usual augmentations run on top of either source. A sample whose tile has no bank row stays
all-real. `BankViewSource` is the `source_for_view` callable of `pathgen.data.views.MixedSourceViews`.
`InterpolationViews` adds what Gen-SIS's disentanglement task needs (see pathgen.genaug.gensis_dino).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from pathgen.data.augment import MultiCropTransform, Seed, as_generator
from pathgen.data.views import TileKey, ViewProvider
from pathgen.diffusion.bank import ViewBank
from pathgen.run_log import get_logger
from tiling.store import TileStore

POLICIES = ("generativessl", "genview")
MAX_VIEWS = 1024  # more views than any multi-crop recipe makes


def _draw(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator))


def _sample_seed(key: TileKey, rng: torch.Generator | None) -> int:
    """The seed of one sample's bank decision: from the seed of the sample's generator (which
    TileDataset derives from (seed, epoch, index)), else from the tile's key alone."""
    if rng is not None:
        return (rng.initial_seed() * 6364136223846793005 + 1442695040888963407) % 2**63
    return zlib.crc32(f"{key.store}:{key.index}".encode())


class BankViewSource:
    """`source_for_view(key, view_index, rng)`: a generated variant for the views the policy swaps.

    Stateless: which views of a sample are swapped, and for which variant, is drawn from a generator
    of its own seeded by the sample (`_sample_seed`), so a view's source depends only on (seed, epoch,
    index) — not on the order views are asked for, nor on other samples — and the sample's
    augmentation stream is left untouched. The last decision is memoised by sample.
    """

    def __init__(self, bank_dir: str | Path, p: float = 1.0, policy: str = "generativessl", n_global: int = 2):
        if policy not in POLICIES:
            raise ValueError(f"genaug.policy must be one of {POLICIES}, got {policy!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"genaug.p must be in [0, 1], got {p}")
        self.bank, self.p, self.policy, self.n_global = ViewBank(bank_dir), p, policy, n_global
        self._memo: tuple | None = None  # (sample, (swapped view indices, variant)) of the last sample

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_memo": None}

    def __call__(self, key: TileKey, view_index: int, rng: torch.Generator | None) -> np.ndarray | None:
        swapped, variant = self.decision(key, rng)
        return variant if view_index in swapped else None

    def decision(self, key: TileKey, rng: torch.Generator | None) -> tuple[range, np.ndarray | None]:
        """The view indices of this sample made from a generated variant, and that variant."""
        sample = (key.store, int(key.index), _sample_seed(key, rng))
        if self._memo is None or self._memo[0] != sample:
            self._memo = (sample, self._decide(key, torch.Generator().manual_seed(sample[2])))
        return self._memo[1]

    def _decide(self, key: TileKey, own: torch.Generator) -> tuple[range, np.ndarray | None]:
        coin, pick_view, pick_variant = _draw(own), _draw(own), _draw(own)
        variants = self.bank.lookup(key) if coin < self.p else None  # no read for a sample that stays real
        if variants is None:
            return range(0), None
        variant = variants[min(int(pick_variant * len(variants)), len(variants) - 1)]
        if self.policy == "genview":
            chosen = min(int(pick_view * self.n_global), self.n_global - 1)
            return range(chosen, chosen + 1), variant
        return range(1, MAX_VIEWS), variant


def bank_coverage(bank: ViewBank, keys: Iterable[TileKey]) -> tuple[int, int]:
    """(tiles with a finished bank row, tiles): how many training samples can get a generated view."""
    found = total = 0
    for key in keys:
        total += 1
        found += bank.row_of(key) is not None
    return found, total


def check_bank_coverage(bank_dir: str | Path, keys: Iterable[TileKey], minimum: float, what: str) -> float:
    """Log the share of training tiles the bank has views of; refuse one below `minimum` (moved
    tiles, a bank of other slides) rather than train on without generated views."""
    found, total = bank_coverage(ViewBank(bank_dir), keys)
    share = found / total if total else 0.0
    get_logger().info(f"{what}: {found} of {total} training tiles ({share:.1%}) have generated views in {bank_dir}")
    if share < minimum:
        raise ValueError(
            f"{bank_dir}: only {found} of {total} training tiles ({share:.1%}) have generated views, "
            f"below genaug.min_bank_coverage={minimum}; was the bank generated from these tiles?"
        )
    return share


class InterpolationViews(ViewProvider):
    """A provider's views plus Gen-SIS's interpolation sample: a global-crop view of an image generated
    from SLERP(e_tile, e_secondary, α), a global-crop view of the secondary tile, and α.

    The bank is an `interpolate`-mode bank; one of its K variants is chosen uniformly per sample.
    Tiles with no row get ``has_interp`` False (and zero images that the loss ignores).
    """

    def __init__(self, base: ViewProvider, transform: MultiCropTransform, bank_dir: str | Path):
        self.base, self.transform = base, transform
        self.bank = ViewBank(bank_dir)
        if self.bank.attrs.get("mode") != "interpolate":
            raise ValueError(
                f"{bank_dir}: genaug.disentangle.bank must be an interpolate-mode bank "
                f"(`pathgen generate --mode interpolate`), got mode {self.bank.attrs.get('mode')!r}"
            )
        self._stores: dict[str, TileStore] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stores": {}}

    def _tile(self, key: TileKey) -> np.ndarray:
        store = self._stores.get(key.store)
        if store is None:
            store = self._stores.setdefault(key.store, TileStore(key.store))
        return store[key.index]

    def views(self, tile: np.ndarray, key: TileKey, rng: Seed = None) -> dict:
        rng = as_generator(rng)
        views = self.base.views(tile, key, rng)
        pick = _draw(rng)
        row = self.bank.row_of(key)
        meta = self.bank.meta(row) if row is not None else None
        if meta is None or not meta["done"] or meta["secondary"] is None:
            blank = torch.zeros_like(views[0])
            return {
                "views": views,
                "interp": blank,
                "secondary": blank.clone(),
                "alpha": torch.tensor(1.0),
                "has_interp": torch.tensor(False),
            }
        variants = self.bank.views(row)
        variant = min(int(pick * len(variants)), len(variants) - 1)
        return {
            "views": views,
            "interp": self.transform.view(0, variants[variant], rng),
            "secondary": self.transform.view(0, self._tile(meta["secondary"]), rng),
            "alpha": torch.tensor(float(meta["alpha"][variant])),
            "has_interp": torch.tensor(True),
        }


def check_adaptive_noise_bank(bank_dir: str | Path) -> None:
    """Refuse a bank that was not made with GenView's adaptive noise (img2img, strength per tile)."""
    attrs = ViewBank(bank_dir).attrs
    settings = attrs.get("settings") or {}
    if attrs.get("mode") != "img2img" or not settings.get("adaptive_noise"):
        raise ValueError(
            f"{bank_dir}: genaug.adaptive_noise=true needs a bank from `pathgen generate --mode img2img "
            f"--adaptive-noise`; this one is mode {attrs.get('mode')!r} without adaptive noise"
        )
