"""Training tiles for the VAE and the latent diffusion model.

Each item is a tile in the model range [-1, 1] under a random element of the dihedral group D4
(rot90 × flip: H&E sections have no preferred orientation, so all 8 are equally real tiles), drawn
from the tile's own (seed, epoch, index) generator so a resumed or re-sharded run sees the same
geometry. Optionally the tile's row of `pathgen embed` output rides along as the LDM's conditioning
(the embedding of the un-flipped tile, as Large-Image-Diffusion trains with precomputed features).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from pathgen.data.tiles import TileDataset
from pathgen.data.views import TileKey
from pathgen.diffusion.images import to_model_range
from pathgen.models.embeddings import embedding_path, embeddings_complete, read_embeddings


def resize_u8(tile: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (3, H, W) → uint8 (3, size, size), antialiased bilinear (identity when already that size)."""
    if tuple(tile.shape[-2:]) == (size, size):
        return tile
    resized = F.interpolate(
        tile[None].float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )[0]
    return resized.round_().clamp_(0, 255).to(torch.uint8)


N_DIHEDRAL = 8  # rotations by 0-3 quarter turns, each with or without a reflection


def draw_dihedral(generator: torch.Generator) -> int:
    """A uniformly drawn index in [0, 8) of a rotation / reflection (`apply_dihedral`)."""
    turns, flip = torch.randint(0, 4, (2,), generator=generator).tolist()
    return 2 * turns + flip % 2


def apply_dihedral(tile: torch.Tensor, variant: int) -> torch.Tensor:
    """Rotation / reflection `variant` (0 = identity) of a (C, H, W) square tile: `variant // 2` quarter
    turns, then a left-right flip when `variant` is odd."""
    tile = torch.rot90(tile, variant // 2, dims=(-2, -1))
    return torch.flip(tile, dims=(-1,)) if variant % 2 else tile


def dihedral(tile: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A uniformly drawn one of the 8 rotations / reflections of a (C, H, W) square tile."""
    return apply_dihedral(tile, draw_dihedral(generator))


class DiffusionTiles(Dataset):
    """Tiles for VAE / LDM training: each item {"image": float (3, S, S) in [-1, 1], random h/v flip and
    rot90 drawn from the per-sample generator, "tile_u8": uint8 (3, S, S) same geometry (for on-the-fly
    embedding), "pixels_key": int64 (), equal for two items exactly when their pixels are (tile index and
    rotation / reflection), "embedding": float32 (D,) only when embeddings_name is given (the tile's row of
    `pathgen embed` output; the embedding is of the un-flipped tile — as Large-Image-Diffusion does)}."""

    def __init__(
        self,
        folders: Sequence[str | Path],
        image_size: int,
        min_tissue: float = 0.0,
        seed: int = 0,
        embeddings_name: str | None = None,
        flips: bool = True,
    ):
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.tiles = TileDataset(folders, transform=None, min_tissue=min_tissue, seed=seed)
        self.image_size, self.flips, self.embeddings_name = int(image_size), flips, embeddings_name
        self._embeddings: dict[int, np.ndarray] = {}
        if embeddings_name is not None:
            for store in self.stores:
                if not embeddings_complete(store.path, embeddings_name):
                    raise ValueError(
                        f"{embedding_path(store.path, embeddings_name)}: no complete embeddings "
                        f"{embeddings_name!r} for store {store.path}; run `pathgen embed`"
                    )

    @property
    def stores(self) -> list:
        """The tile stores read (those of the wrapped TileDataset)."""
        return self.tiles.stores

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose flips / rotations `__getitem__` draws."""
        self.tiles.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.tiles)

    def key(self, index: int) -> TileKey:
        """(store, local index) of a global index."""
        return self.tiles.key(index)

    def embedding(self, index: int) -> torch.Tensor:
        """The float32 (D,) `pathgen embed` row of the tile at a global index (its store read once)."""
        store_id = int(self.tiles.store_ids[index])
        if store_id not in self._embeddings:
            store = self.stores[store_id]
            rows = read_embeddings(store.path, self.embeddings_name)
            if len(rows) != len(store):
                raise ValueError(
                    f"{embedding_path(store.path, self.embeddings_name)}: {len(rows)} rows for "
                    f"{len(store)} tiles; re-run `pathgen embed`"
                )
            self._embeddings[store_id] = rows
        return torch.from_numpy(
            np.array(self._embeddings[store_id][int(self.tiles.local_ids[index])], dtype=np.float32)
        )

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        tile = torch.from_numpy(np.ascontiguousarray(self.tiles.tile(index).transpose(2, 0, 1)))
        tile = resize_u8(tile, self.image_size)
        variant = draw_dihedral(self.tiles.generator(index)) if self.flips else 0
        tile = apply_dihedral(tile, variant).contiguous()
        item = {
            "image": to_model_range(tile[None])[0],
            "tile_u8": tile,
            "pixels_key": torch.tensor(index * N_DIHEDRAL + variant),  # the same key: the same pixels
        }
        if self.embeddings_name is not None:
            item["embedding"] = self.embedding(index)
        return item

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_embeddings"] = {}  # each worker reads the embeddings it needs itself
        return state


def evenly_spaced(n_items: int, n_picked: int) -> np.ndarray:
    """Up to `n_picked` distinct indices spread evenly over range(n_items): the tiles statistics come from."""
    return np.unique(np.linspace(0, n_items - 1, min(n_picked, n_items)).round().astype(int))
