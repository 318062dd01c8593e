"""One slide's bag as the exporters see it: features, level-0 tile corners and the tiling facts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pathgen.atomic import atomic_target
from pathgen.models.embeddings import embeddings_complete, read_embeddings, recorded_identity
from tiling.store import TileStore, is_complete, list_store_paths

MICRONS_AT_10X = 1.0  # the usual convention: 10x ≈ 1 µm/px, so 20x ≈ 0.5 µm/px and 40x ≈ 0.25 µm/px


@dataclass
class SlideBag:
    """The (N, D) float32 features of one slide, its (N, 2) level-0 (x, y) tile corners and store attrs."""

    slide_id: str
    features: np.ndarray
    coords: np.ndarray
    attrs: dict
    encoder: dict

    @property
    def tile_size_px(self) -> int:
        """Tile side in pixels at the tiling's target µm/px."""
        return int(self.attrs["tiling"]["tile_size_px"])

    @property
    def tile_size_level0(self) -> int:
        """Tile side in level-0 pixels."""
        return round(float(self.attrs["tiling"]["tile_size_level0"]))

    def magnification(self, mpp: float | None) -> float | None:
        """The objective magnification equivalent to `mpp` µm/px (10 / mpp), None when unknown."""
        return round(10.0 * MICRONS_AT_10X / mpp, 2) if mpp else None


def iter_bags(tile_dir: str | Path, name: str) -> Iterator[SlideBag]:
    """Every complete slide store of a tiling folder that has complete embeddings `name`, in slide order."""
    paths = [p for p in list_store_paths(tile_dir) if is_complete(p)]
    if not paths:
        raise ValueError(f"{tile_dir}: no complete tile stores (a `pathgen tile` output folder?)")
    missing = [p.name for p in paths if not embeddings_complete(p, name)]
    if missing:
        raise ValueError(
            f"{tile_dir}: slide(s) {', '.join(missing[:5])} have no complete embeddings {name!r}; "
            f"run `pathgen embed MODEL {tile_dir} --name {name}`"
        )
    for path in paths:
        store = TileStore(path)
        coords = np.asarray(store.coords, dtype=np.int64)
        yield SlideBag(
            store.slide_id,
            read_embeddings(path, name).astype(np.float32),
            coords,
            dict(store.attrs),
            recorded_identity(path, name).get("encoder", {}),
        )


def atomic_file(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp)` on a temporary sibling of `path`, then rename it into place."""
    with atomic_target(path) as tmp:
        write(tmp)
