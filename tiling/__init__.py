"""Slides → tissue-filtered tile stores. Torch-free: runs where the slides are.

Public API::

    from tiling import open_store, open_tile_folder
    store = open_store("OUT/tiles.zarr/slide_1")
    batch = store.read([0, 5, 9])         # (3, T, T, 3) uint8
"""

__version__ = "0.1.0"

from tiling.store import TileStore, open_store, open_tile_folder  # noqa: E402

__all__ = ["TileStore", "open_store", "open_tile_folder", "__version__"]
