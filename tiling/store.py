"""The tile store: one zarr v3 group per slide inside ``OUT/tiles.zarr/``.

Schema (version 1):

=================  ==========================  =================================================
key                type                        meaning
=================  ==========================  =================================================
``tiles``          uint8 (N, T, T, 3)          RGB tiles; one tile per chunk, `tiles_per_shard`
                                               chunks per shard file
``coords``         int64 (N, 2)                level-0 (x, y) of each tile's top-left corner
``tissue_fraction`` float32 (N,)               share of the tile covered by tissue
``thumbnail``      uint8 (h, w, 3)             what the tissue detector saw
``tissue_mask``    uint8 (h, w)                1 where tissue was found
attrs              JSON                        slide, tiling, tissue and store parameters;
                                               ``complete: true`` is written last
=================  ==========================  =================================================

Writers create the group with ``complete: false``, fill whole shards (each shard a separate
file, so processes can write different shards of one slide at once), then mark it complete.
Readers refuse a store that is not complete.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from tiling.codecs import JpegCodec
from tiling.config import StoreConfig
from tiling.shards import ShardReader, UnsupportedLayout, read_layout, shard_path, write_shard_file

SCHEMA_VERSION = 1
TILES_DIR = "tiles.zarr"


_log = logging.getLogger(__name__)


class StoreError(Exception):
    """A tile store that is missing, incomplete or malformed; the message names the path."""


@dataclass(frozen=True)
class StoreLayout:
    """Shape facts a writer needs to fill a store shard by shard."""

    n_tiles: int
    tile_size_px: int
    tiles_per_shard: int

    @property
    def n_shards(self) -> int:
        """Number of shard files the tiles array has."""
        return -(-self.n_tiles // self.tiles_per_shard)

    def shard_slice(self, shard_index: int) -> slice:
        """Tile indices held by one shard file."""
        start = shard_index * self.tiles_per_shard
        return slice(start, min(self.n_tiles, start + self.tiles_per_shard))


def _tile_codecs(cfg: StoreConfig) -> dict[str, Any]:
    if cfg.codec == "zstd":
        return {"compressors": ZstdCodec(level=cfg.zstd_level)}
    if cfg.codec == "jpeg":
        return {"serializer": JpegCodec(quality=cfg.jpeg_quality), "compressors": None}
    raise ValueError(f"unknown tile codec {cfg.codec!r}; choose 'zstd' (lossless) or 'jpeg'")


def ensure_root(tiles_dir: Path) -> None:
    """Create the `tiles.zarr` root group once, tolerating other processes doing the same."""
    if (tiles_dir / "zarr.json").is_file():
        return
    try:
        zarr.open_group(tiles_dir, mode="a")
    except zarr.errors.ContainsGroupError:
        pass  # another process created it between our check and our write


def create_store(
    group_path: Path,
    layout: StoreLayout,
    coords: np.ndarray,
    tissue_fraction: np.ndarray,
    thumbnail: np.ndarray | None,
    tissue_mask: np.ndarray | None,
    attrs: dict,
    cfg: StoreConfig,
) -> None:
    """Create an empty, incomplete store for one slide, replacing whatever was at `group_path`.

    With `thumbnail` None the overview arrays are left to `write_overview_arrays` (which tiling
    runs beside the shards); a store is complete only with them.
    """
    if group_path.exists():
        shutil.rmtree(group_path)
    ensure_root(group_path.parent)
    group = zarr.open_group(
        group_path, mode="w", attributes={**attrs, "pathgen_tile_store": SCHEMA_VERSION, "complete": False}
    )
    tile_shape = (layout.tile_size_px, layout.tile_size_px, 3)
    group.create_array(
        "tiles",
        shape=(layout.n_tiles, *tile_shape),
        dtype="uint8",
        chunks=(1, *tile_shape),
        shards=(max(1, layout.tiles_per_shard), *tile_shape),
        fill_value=0,
        **_tile_codecs(cfg),
    )
    group.create_array("coords", data=coords.astype(np.int64), chunks=(max(1, len(coords)), 2))
    group.create_array("tissue_fraction", data=tissue_fraction.astype(np.float32), chunks=(max(1, len(coords)),))
    if thumbnail is not None and tissue_mask is not None:
        write_overview_arrays(group_path, thumbnail, tissue_mask)


def write_overview_arrays(group_path: Path, thumbnail: np.ndarray, tissue_mask: np.ndarray) -> None:
    """Add the slide's thumbnail and tissue mask to its (created, incomplete) store."""
    group = zarr.open_group(group_path, mode="r+")
    group.create_array("thumbnail", data=thumbnail, compressors=ZstdCodec(level=3))
    group.create_array("tissue_mask", data=tissue_mask.astype(np.uint8), compressors=ZstdCodec(level=3))


def write_shard(group_path: Path, layout: StoreLayout, shard_index: int, tiles: np.ndarray) -> None:
    """Write the tiles of one whole shard file; safe to run in parallel for different shards."""
    rows = layout.shard_slice(shard_index)
    expected = (rows.stop - rows.start, layout.tile_size_px, layout.tile_size_px, 3)
    if tiles.shape != expected:
        raise ValueError(f"shard {shard_index} of {group_path} needs tiles of shape {expected}, got {tiles.shape}")
    array_dir = group_path / "tiles"
    codec = read_layout(array_dir).codec
    write_shard_file(shard_path(array_dir, shard_index), [codec.encode(tile) for tile in tiles], layout.tiles_per_shard)


def mark_complete(group_path: Path, extra_attrs: dict) -> None:
    """Record that every shard is written: the last write of a store."""
    group = zarr.open_group(group_path, mode="r+")
    group.attrs.update({**extra_attrs, "complete": True})


def read_attrs(group_path: Path) -> dict | None:
    """The store's attrs, or None when there is no readable store at `group_path`."""
    try:
        return dict(zarr.open_group(group_path, mode="r").attrs)
    except (FileNotFoundError, ValueError, KeyError, zarr.errors.BaseZarrError):
        return None


def is_complete(group_path: Path) -> bool:
    """True only for a store whose writer finished (a killed write is never complete)."""
    attrs = read_attrs(group_path)
    return bool(attrs and attrs.get("complete") is True)


class TileStore:
    """Read access to one complete slide store: tiles by index, coordinates, attrs.

    The zarr handles are opened lazily and dropped on pickling, so a TileStore can be handed to
    DataLoader workers and each worker opens its own.
    """

    def __init__(self, group_path: str | Path):
        self.path = Path(group_path)
        attrs = read_attrs(self.path)
        if attrs is None:
            raise StoreError(f"{self.path}: not a pathgen tile store (no zarr group)")
        if attrs.get("pathgen_tile_store") != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: unsupported tile-store schema {attrs.get('pathgen_tile_store')!r}")
        if attrs.get("complete") is not True:
            raise StoreError(f"{self.path}: store is incomplete (its tiling run did not finish); re-run pathgen tile")
        self.attrs = attrs
        self._tiles: zarr.Array | None = None
        self._reader: ShardReader | None | bool = None  # False: layout not ours, read through zarr
        self._coords: np.ndarray | None = None

    @property
    def slide_id(self) -> str:
        """Name of the slide's group."""
        return self.path.name

    @property
    def tiles(self) -> zarr.Array:
        """The (N, T, T, 3) tiles array, opened once per process."""
        if self._tiles is None:
            self._tiles = zarr.open_array(self.path / "tiles", mode="r")
        return self._tiles

    def __len__(self) -> int:
        return int(self.tiles.shape[0])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_tiles": None, "_reader": None}

    def read(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """Tiles at `indices` (any order, repeats allowed) as (len, T, T, 3) uint8.

        Uses the direct shard reader (tiling.shards) for pathgen's own layout, zarr otherwise.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"{self.path}: tile index out of range [0, {len(self)})")
        if self._reader is None:
            try:
                self._reader = ShardReader(self.path / "tiles")
            except UnsupportedLayout:
                self._reader = False
        if self._reader:
            return self._reader.read(indices)
        out = np.zeros((len(indices), *self.tiles.shape[1:]), np.uint8)
        for row, index in enumerate(indices):
            out[row] = self.tiles[int(index)]
        return out

    def __getitem__(self, index: int) -> np.ndarray:
        return self.read([index])[0]

    @property
    def coords(self) -> np.ndarray:
        """(N, 2) level-0 (x, y) of each tile's top-left corner."""
        if self._coords is None:
            self._coords = zarr.open_array(self.path / "coords", mode="r")[:]
        return self._coords

    def array(self, name: str) -> np.ndarray:
        """A small auxiliary array read whole: tissue_fraction, thumbnail, tissue_mask."""
        return zarr.open_array(self.path / name, mode="r")[:]


def open_store(group_path: str | Path) -> TileStore:
    """Open one complete slide store for reading."""
    return TileStore(group_path)


def list_store_paths(out_dir: str | Path) -> list[Path]:
    """Group paths of every slide store under a tiling output folder, complete or not."""
    tiles_dir = Path(out_dir) / TILES_DIR
    if not tiles_dir.is_dir():
        raise StoreError(f"{out_dir}: no {TILES_DIR} inside; is this a `pathgen tile` output folder?")
    return sorted(p for p in tiles_dir.iterdir() if (p / "zarr.json").is_file())


def complete_store_paths(out_dir: str | Path) -> list[Path]:
    """The complete stores of a tiling output folder, for every reader of one.

    Incomplete stores (a tiling run still going, or killed) are left out with a warning naming them;
    a folder with stores but none complete is a StoreError, so a reader never runs on nothing.
    """
    paths = list_store_paths(out_dir)
    complete = [p for p in paths if is_complete(p)]
    incomplete = [p.name for p in paths if p not in complete]
    if paths and not complete:
        raise StoreError(
            f"{out_dir}: none of its {len(paths)} slide stores is complete (their tiling did not "
            "finish); re-run pathgen tile on it first"
        )
    if not paths:
        raise StoreError(f"{out_dir}: no slide stores in {TILES_DIR}")
    if incomplete:
        shown = ", ".join(incomplete[:5]) + (f" and {len(incomplete) - 5} more" if len(incomplete) > 5 else "")
        _log.warning(
            "%s: skipping %d incomplete slide store(s) (tiling not finished): %s", out_dir, len(incomplete), shown
        )
    return complete


class TileFolder:
    """Every complete store of a tiling output folder, indexed as one sequence of tiles."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        paths = list_store_paths(out_dir)
        self.stores = [TileStore(p) for p in complete_store_paths(out_dir)]
        self.skipped_incomplete = [p for p in paths if not is_complete(p)]
        self.offsets = np.cumsum([0] + [len(s) for s in self.stores])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, global_index: int) -> tuple[TileStore, int]:
        """The store holding a global tile index and the index inside it."""
        if not 0 <= global_index < len(self):
            raise IndexError(f"{self.out_dir}: tile index {global_index} out of range [0, {len(self)})")
        store_index = int(np.searchsorted(self.offsets, global_index, side="right") - 1)
        return self.stores[store_index], int(global_index - self.offsets[store_index])

    def __getitem__(self, global_index: int) -> np.ndarray:
        store, local_index = self.locate(global_index)
        return store[local_index]


def open_tile_folder(out_dir: str | Path) -> TileFolder:
    """Open all complete slide stores of a `pathgen tile` output folder."""
    return TileFolder(out_dir)
