"""A torch Dataset over the tile stores of one or many `pathgen tile` output folders.

Tiles are addressed by one global index over every complete store. Stores open their files
lazily, so each DataLoader worker gets its own handles after the dataset is pickled to it. The
sampler is deterministic in (seed, epoch) and can start part-way through an epoch, which is how
training resumes at the exact data position after a kill.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from pathgen.data.views import TileKey
from tiling.store import TileStore, complete_store_paths


class TileDataset(Dataset):
    """Every tile of the given tiling output folders (optionally only those with enough tissue).

    `transform(tile, key, generator)` turns an RGB uint8 (H, W, 3) tile into what a batch holds
    (a list of augmented views for SSL, one normalised tensor for feature extraction); without a
    transform the item is the tile as a uint8 (3, H, W) tensor. The generator is seeded from
    (seed, epoch, index), so a tile's augmentations do not depend on worker count or on where a
    resumed run restarted.

    Stores tiled at different µm/px or tile sizes are refused (an encoder records one tile contract)
    unless `allow_mixed_tiling`.
    """

    def __init__(
        self,
        folders: Sequence[str | Path],
        transform: Callable | None = None,
        min_tissue: float = 0.0,
        seed: int = 0,
        allow_mixed_tiling: bool = False,
    ):
        self.stores = _complete_stores(folders)
        if not self.stores:
            raise ValueError(f"no complete tile stores in {', '.join(map(str, folders))}; run `pathgen tile` first")
        if not allow_mixed_tiling:
            check_same_tiling(self.stores)
        store_ids, local_ids = [], []
        for store_id, store in enumerate(self.stores):
            keep = np.flatnonzero(store.array("tissue_fraction") >= min_tissue)
            store_ids.append(np.full(len(keep), store_id, np.int32))
            local_ids.append(keep.astype(np.int32))
        self.store_ids = np.concatenate(store_ids)
        self.local_ids = np.concatenate(local_ids)
        self.transform = transform
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations `__getitem__` draws."""
        self.epoch = epoch

    def generator(self, index: int) -> torch.Generator:
        """The random generator of one sample's augmentations in the current epoch."""
        return torch.Generator().manual_seed((self.seed * 1_000_003**2 + self.epoch * 1_000_003 + index) % 2**63)

    def __len__(self) -> int:
        return len(self.local_ids)

    def key(self, index: int) -> TileKey:
        """(store, local index) of a global index: the identity of a tile across stages."""
        return TileKey(str(self.stores[self.store_ids[index]].path), int(self.local_ids[index]))

    def tile(self, index: int) -> np.ndarray:
        """The RGB uint8 (H, W, 3) tile at a global index."""
        return self.stores[self.store_ids[index]][int(self.local_ids[index])]

    def __getitem__(self, index: int):  # noqa: ANN204 -- whatever the transform returns
        tile = self.tile(index)
        if self.transform is None:
            return torch.from_numpy(np.ascontiguousarray(tile.transpose(2, 0, 1)))
        return self.transform(tile, self.key(index), self.generator(index))

    def slide_weights(self) -> np.ndarray:
        """Per-tile sampling weights that give every slide the same total weight."""
        counts = np.bincount(self.store_ids, minlength=len(self.stores))
        return 1.0 / counts[self.store_ids]


def check_same_tiling(stores: Sequence[TileStore]) -> None:
    """Refuse stores tiled at different µm/px or tile sizes, naming the stores of each tiling."""
    groups: dict[tuple, list[str]] = {}
    for store in stores:
        tiling = store.attrs.get("tiling", {})
        groups.setdefault((tiling.get("target_mpp"), tiling.get("tile_size_px")), []).append(str(store.path))
    if len(groups) > 1:
        described = "; ".join(
            f"{mpp} µm/px, {size} px: {', '.join(paths[:3])}{' …' if len(paths) > 3 else ''}"
            for (mpp, size), paths in groups.items()
        )
        raise ValueError(
            f"tile stores differ in µm/px or tile size ({described}); tile them alike, or set "
            "allow_mixed_tiling=true to train on them together"
        )


def _complete_stores(folders: Sequence[str | Path]) -> list[TileStore]:
    stores = []
    for folder in folders:
        stores += [TileStore(path) for path in complete_store_paths(folder)]
    return stores


class ResumableSampler(Sampler[int]):
    """Indices of one epoch for one rank: a seeded permutation (or slide-balanced draw) split
    across ranks, which can skip the samples a resumed run already consumed.

    Every rank draws the same epoch order from (seed, epoch) and takes every world-th index, so
    ranks see disjoint samples and the order survives restarts with a different worker count.
    """

    def __init__(
        self,
        n_items: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        weights: np.ndarray | None = None,
        shuffle: bool = True,
    ):
        self.n_items, self.seed, self.rank, self.world_size = n_items, seed, rank, world_size
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.shuffle = shuffle
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch and how many of this rank's samples of it were already consumed."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return math.ceil(self.n_items / self.world_size) - self.start

    def epoch_order(self) -> np.ndarray:
        """The global order of this epoch, padded to a multiple of the world size."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.n_items, replacement=True, generator=generator)
        elif self.shuffle:
            order = torch.randperm(self.n_items, generator=generator)
        else:
            order = torch.arange(self.n_items)
        padded = math.ceil(self.n_items / self.world_size) * self.world_size
        return np.resize(order.numpy(), padded)

    def __iter__(self) -> Iterator[int]:
        mine = self.epoch_order()[self.rank :: self.world_size]
        return iter(mine[self.start :].tolist())
