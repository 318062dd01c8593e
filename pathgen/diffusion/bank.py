"""The generated-view bank: `BANK_DIR/bank.zarr`, K generated views of each source tile.

One zarr v3 group; row n holds the K views of source tile (attrs["stores"][source_store_id[n]],
source_index[n]) plus how each view was made (secondary tile and SLERP weight alpha, img2img
strength, noise seed). Each source store is recorded by path and by identity (attrs["store_ids"]: a
hash of the slide checksum and the tiling parameters from the store's attrs), and lookups match by
identity first, so a bank still finds its tiles after the tile folder moved (banks written before
identities were recorded are matched by path). Rows are written one source at a time and marked `done` only after their
views, so a killed `pathgen generate` redoes just the unfinished rows; attrs["complete"] is written
last, so an interrupted bank is never read as complete. `ViewBank` is the read side (lazy, picklable
for DataLoader workers); `BankWriter` the write side.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from pathgen.data.views import TileKey
from tiling.store import read_attrs

BANK_NAME = "bank.zarr"
BANK_SCHEMA = 1
MODES = ("views", "interpolate", "img2img")
# attrs that must agree for a re-run to resume an existing bank rather than refuse it
META_ARRAYS = (
    "source_store_id",
    "source_index",
    "secondary_store_id",
    "secondary_index",
    "alpha",
    "strength",
    "seed",
    "done",
)
RESUME_KEYS = ("mode", "stores", "n_views", "image_size", "sampler", "model", "seed", "settings")


class BankError(ValueError):
    """A view bank that is missing, incomplete or does not match the run asked for."""


def bank_path(bank_dir: str | Path) -> Path:
    """Where the zarr group of a bank folder lives."""
    return Path(bank_dir) / BANK_NAME


def bank_complete(bank_dir: str | Path) -> bool:
    """True only when the bank's generation run finished (attrs["complete"] written last)."""
    try:
        return zarr.open_group(bank_path(bank_dir), mode="r").attrs.get("complete") is True
    except (FileNotFoundError, ValueError, zarr.errors.BaseZarrError):
        return False


def _norm_store(path: str | Path) -> str:
    return str(Path(path).resolve())


def store_identity(path: str | Path) -> str | None:
    """What a tile store holds, independent of where it lies: a hash of its slide's checksum and size
    and its tiling parameters (tile index i then means the same tile in every copy). None when the
    store is unreadable or its attrs carry no slide checksum."""
    attrs = read_attrs(Path(path))
    slide = (attrs or {}).get("slide") or {}
    if not slide.get("quick_sha256"):
        return None
    content = {
        "slide": slide["quick_sha256"],
        "size_bytes": slide.get("size_bytes"),
        "tiling": attrs.get("tiling"),
        "n_tiles": attrs.get("n_tiles"),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:32]


class BankWriter:
    """Creates a bank (or reopens a matching unfinished one) and writes it row by row.

    `attrs` must hold at least mode, n_views, image_size, sampler and model (see the module doc);
    `stores` are the source tile-store paths (stored absolute), `source_store_id` / `source_index`
    the N source tiles in row order.
    """

    def __init__(
        self,
        bank_dir: str | Path,
        stores: list[str],
        source_store_id: np.ndarray,
        source_index: np.ndarray,
        attrs: dict[str, Any],
    ):
        self.path = bank_path(bank_dir)
        self.attrs = {
            **attrs,
            "stores": [_norm_store(s) for s in stores],
            "store_ids": [store_identity(s) for s in stores],
            "pathgen_view_bank": BANK_SCHEMA,
        }
        if self.attrs.get("mode") not in MODES:
            raise BankError(f"{self.path}: mode must be one of {MODES}, got {self.attrs.get('mode')!r}")
        source_store_id = np.asarray(source_store_id, np.int32)
        source_index = np.asarray(source_index, np.int32)
        if self.path.exists():
            self.group = self._reopen(source_store_id, source_index)
        else:
            self.group = self._create(source_store_id, source_index)

    def _create(self, source_store_id: np.ndarray, source_index: np.ndarray) -> zarr.Group:
        n, k, s = len(source_index), int(self.attrs["n_views"]), int(self.attrs["image_size"])
        group = zarr.open_group(self.path, mode="w", attributes=self.attrs)
        group.create_array("views", shape=(n, k, s, s, 3), chunks=(1, k, s, s, 3), dtype="uint8", fill_value=0)
        rows = (max(1, min(n, 65536)),)
        group.create_array("source_store_id", data=source_store_id, chunks=rows)
        group.create_array("source_index", data=source_index, chunks=rows)
        for name in ("secondary_store_id", "secondary_index"):
            group.create_array(name, shape=(n,), chunks=rows, dtype="int32", fill_value=-1)
        for name, dtype, fill in (("alpha", "float32", 1.0), ("strength", "float32", 1.0), ("seed", "int64", 0)):
            group.create_array(name, shape=(n, k), chunks=(rows[0], k), dtype=dtype, fill_value=fill)
        group.create_array("done", shape=(n,), chunks=rows, dtype="bool", fill_value=False)
        return group

    def _reopen(self, source_store_id: np.ndarray, source_index: np.ndarray) -> zarr.Group:
        try:
            group = zarr.open_group(self.path, mode="r+")
        except (FileNotFoundError, ValueError, zarr.errors.BaseZarrError) as err:
            raise BankError(f"{self.path}: exists but is not a readable view bank ({err}); delete it") from err
        old = dict(group.attrs)
        for key in RESUME_KEYS:
            if _jsonish(old.get(key)) != _jsonish(self.attrs.get(key)):
                raise BankError(
                    f"{self.path}: written with a different {key} ({old.get(key)!r}, now "
                    f"{self.attrs.get(key)!r}); use another --out or delete the bank to start over"
                )
        if not np.array_equal(group["source_store_id"][:], source_store_id) or not np.array_equal(
            group["source_index"][:], source_index
        ):
            raise BankError(f"{self.path}: written for different source tiles; use another --out or delete it")
        return group

    @property
    def complete(self) -> bool:
        """True when a previous run already finished this bank."""
        return self.group.attrs.get("complete") is True

    def pending_rows(self) -> np.ndarray:
        """Rows not yet written (all of them in a fresh bank)."""
        return np.flatnonzero(~self.group["done"][:])

    def write_row(
        self,
        row: int,
        views: np.ndarray,
        seeds: np.ndarray,
        alpha: np.ndarray | None = None,
        strength: np.ndarray | None = None,
        secondary: tuple[int, int] | None = None,
    ) -> None:
        """Write one source's K uint8 (S, S, 3) views and how they were made, then mark the row done."""
        k, s = int(self.attrs["n_views"]), int(self.attrs["image_size"])
        if views.shape != (k, s, s, 3) or views.dtype != np.uint8:
            raise BankError(
                f"{self.path}: row {row} views must be uint8 {(k, s, s, 3)}, got {views.dtype} {views.shape}"
            )
        group = self.group
        group["views"][row] = views
        group["seed"][row] = np.asarray(seeds, np.int64)
        group["alpha"][row] = np.broadcast_to(np.asarray(1.0 if alpha is None else alpha, np.float32), (k,))
        group["strength"][row] = np.broadcast_to(np.asarray(1.0 if strength is None else strength, np.float32), (k,))
        sec_store, sec_index = secondary if secondary is not None else (-1, -1)
        group["secondary_store_id"][row] = sec_store
        group["secondary_index"][row] = sec_index
        group["done"][row] = True

    def finish(self) -> None:
        """Mark the bank complete (only if every row is done): the last write of a run."""
        missing = self.pending_rows()
        if len(missing):
            raise BankError(
                f"{self.path}: {len(missing)} rows not written (first {missing[0]}); re-run with --resume to continue"
            )
        self.group.attrs["complete"] = True


def _jsonish(value: Any) -> Any:
    """Tuples and lists compare equal (zarr attrs come back as lists)."""
    if isinstance(value, dict):
        return {k: _jsonish(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonish(v) for v in value]
    return value


class ViewBank:
    """Read-only access to a bank: views by row or by source TileKey.

    Opens the zarr group lazily, so a pickled copy (a DataLoader worker) opens its own handles.
    By default refuses a bank whose run did not finish; `require_complete=False` reads a partial
    one (rows not done then look up as None). A key's store is matched by identity (`store_identity`),
    else by resolved path; `meta` names source and secondary tiles where they were last found.
    """

    def __init__(self, bank_dir: str | Path, require_complete: bool = True):
        self.bank_dir = Path(bank_dir)
        self.require_complete = require_complete
        self._group: zarr.Group | None = None
        self._rows: dict[tuple[int, int], int] | None = None
        self._store_of: dict[str, int | None] = {}  # a key's store path → the bank's store id
        self._found_at: dict[int, str] = {}  # bank store id → where its tiles were found in this process
        self._done: np.ndarray | None = None
        _ = self.group  # fail early, in the constructing process

    @property
    def group(self) -> zarr.Group:
        """The opened zarr group (opened on first use in each process)."""
        if self._group is None:
            path = bank_path(self.bank_dir)
            try:
                group = zarr.open_group(path, mode="r")
            except (FileNotFoundError, ValueError, zarr.errors.BaseZarrError) as err:
                raise BankError(f"{path}: not a view bank ({err}); run `pathgen generate`") from err
            if self.require_complete and group.attrs.get("complete") is not True:
                raise BankError(
                    f"{path}: bank is incomplete (its generate run did not finish); re-run it with --resume to continue"
                )
            self._group = group
        return self._group

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_group": None, "_rows": None, "_store_of": {}, "_found_at": {}, "_done": None}

    @property
    def attrs(self) -> dict:
        """The bank's attributes (mode, stores, n_views, image_size, sampler, model, ...)."""
        return dict(self.group.attrs)

    @property
    def complete(self) -> bool:
        """True when the generating run finished."""
        return self.group.attrs.get("complete") is True

    @property
    def stores(self) -> list[str]:
        """Absolute paths of the source tile stores (indexed by *_store_id)."""
        return list(self.group.attrs["stores"])

    def __len__(self) -> int:
        return int(self.group["source_index"].shape[0])

    def keys(self) -> list[TileKey]:
        """The source tile of every row, in row order."""
        stores = self.stores
        ids, indices = self.group["source_store_id"][:], self.group["source_index"][:]
        return [TileKey(stores[i], int(j)) for i, j in zip(ids, indices)]

    def views(self, row: int) -> np.ndarray:
        """The K uint8 (S, S, 3) views of one row; a damaged chunk raises BankError naming the bank."""
        try:
            return self.group["views"][int(row)]
        except (RuntimeError, ValueError, OSError) as err:  # zstd / zarr on a truncated or overwritten chunk
            raise BankError(
                f"{bank_path(self.bank_dir)}: row {int(row)} of the views cannot be read "
                f"({type(err).__name__}); the bank is damaged: delete it and re-run pathgen "
                "generate"
            ) from None

    def store_id_of(self, store: str) -> int | None:
        """The bank's id of tile store `store` (matched by identity, else by resolved path), or None."""
        if store not in self._store_of:
            self._store_of[store] = found = self._match_store(store)
            if found is not None:
                self._found_at.setdefault(found, _norm_store(store))
        return self._store_of[store]

    def _match_store(self, store: str) -> int | None:
        identities = self.group.attrs.get("store_ids") or []
        identity = store_identity(store) if any(identities) else None
        if identity is not None and identity in identities:
            return identities.index(identity)
        resolved = _norm_store(store)
        return self.stores.index(resolved) if resolved in self.stores else None

    def current_path(self, store_id: int) -> str:
        """Where store `store_id` is now: where a lookup found it, else beside a store found moved
        (tile folders move as a whole), else the path recorded in the bank."""
        if store_id in self._found_at:
            return self._found_at[store_id]
        recorded = Path(self.stores[store_id])
        for found_id, found in self._found_at.items():
            old_folder, new_folder = Path(self.stores[found_id]).parent, Path(found).parent
            if recorded.parent == old_folder and (new_folder / recorded.name).exists():
                return str(new_folder / recorded.name)
        return str(recorded)

    def row_of(self, key: TileKey) -> int | None:
        """The row whose source is `key`, or None."""
        if self._rows is None:
            ids, indices = self.group["source_store_id"][:], self.group["source_index"][:]
            self._rows = {(int(i), int(j)): row for row, (i, j) in enumerate(zip(ids, indices))}
        store_id = self.store_id_of(key.store)
        return None if store_id is None else self._rows.get((store_id, int(key.index)))

    def lookup(self, key: TileKey) -> np.ndarray | None:
        """The K views generated from tile `key`, or None if it is not a (finished) source of this bank."""
        row = self.row_of(key)
        if self._done is None:
            self._done = self.group["done"][:]
        if row is None or not self._done[row]:
            return None
        return self.views(row)

    def meta(self, row: int) -> dict:
        """How row `row` was made: source and secondary TileKey, alpha, strength and seed per view, done."""
        g, row = self.group, int(row)
        stores = [self.current_path(i) for i in range(len(self.stores))]
        sec_id = int(g["secondary_store_id"][row])
        return {
            "source": TileKey(stores[int(g["source_store_id"][row])], int(g["source_index"][row])),
            "secondary": TileKey(stores[sec_id], int(g["secondary_index"][row])) if sec_id >= 0 else None,
            "alpha": g["alpha"][row],
            "strength": g["strength"][row],
            "seed": g["seed"][row],
            "done": bool(g["done"][row]),
        }
