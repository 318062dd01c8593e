"""The view bank: writer/reader round trip, lookups by tile, resume and completeness; the grid picture."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from pathgen.data.views import TileKey
from pathgen.diffusion.bank import BankError, BankWriter, ViewBank, bank_complete
from pathgen.diffusion.image_grid import grid_size, make_grid, write_grid
from pathgen.diffusion.real_bank import write_real_views_bank
from pathgen.diffusion.training_data import DiffusionTiles
from tiling.store import open_tile_folder

K, S = 3, 8
ATTRS = {
    "mode": "interpolate",
    "n_views": K,
    "image_size": S,
    "seed": 0,
    "sampler": {"sampler": "ddim", "steps": 5},
    "settings": {"alpha": [0.2, 0.8]},
    "model": {"dir": "/m", "config": {"block_out_channels": [1, 2]}},
}


def fake_views(row: int) -> np.ndarray:
    return np.full((K, S, S, 3), row * 10, np.uint8) + np.arange(K, dtype=np.uint8)[:, None, None, None]


def make_writer(tmp_path, stores, attrs=None) -> BankWriter:
    return BankWriter(tmp_path / "bank", stores, np.array([0, 0, 1, 1]), np.array([5, 9, 0, 7]), attrs or ATTRS)


@pytest.fixture()
def stores(tmp_path):
    paths = [tmp_path / "tiles.zarr" / "slide_a", tmp_path / "tiles.zarr" / "slide_b"]
    return [str(p) for p in paths]


def test_round_trip_with_lookup_by_tile(tmp_path, stores):
    writer = make_writer(tmp_path, stores)
    assert writer.pending_rows().tolist() == [0, 1, 2, 3]
    for row in range(4):
        writer.write_row(
            row, fake_views(row), seeds=np.arange(K) + row, alpha=np.array([0.1, 0.2, 0.3]), secondary=(1, row)
        )
    writer.finish()
    bank = ViewBank(tmp_path / "bank")
    assert len(bank) == 4 and bank.complete and bank_complete(tmp_path / "bank")
    assert bank.keys()[2] == TileKey(stores[1], 0)
    assert np.array_equal(bank.views(3), fake_views(3))
    assert bank.row_of(TileKey(stores[0], 9)) == 1
    assert bank.row_of(TileKey(os.path.relpath(stores[1]), 7)) == 3  # store paths are compared resolved
    assert bank.row_of(TileKey(stores[0], 6)) is None and bank.lookup(TileKey(stores[0], 6)) is None
    assert np.array_equal(bank.lookup(TileKey(stores[1], 0)), fake_views(2))
    meta = bank.meta(2)
    assert meta["source"] == TileKey(stores[1], 0) and meta["secondary"] == TileKey(stores[1], 2)
    assert np.allclose(meta["alpha"], [0.1, 0.2, 0.3]) and np.allclose(meta["strength"], 1.0)
    assert meta["seed"].tolist() == [2, 3, 4] and meta["done"]
    copy = pickle.loads(pickle.dumps(bank))  # DataLoader workers get a lazily reopened copy
    assert np.array_equal(copy.lookup(TileKey(stores[0], 5)), fake_views(0))


def test_partial_bank_resumes_and_is_never_complete(tmp_path, stores):
    writer = make_writer(tmp_path, stores)
    writer.write_row(1, fake_views(1), np.zeros(K))
    writer.write_row(3, fake_views(3), np.zeros(K))
    with pytest.raises(BankError, match="2 rows not written"):
        writer.finish()
    assert not bank_complete(tmp_path / "bank")
    with pytest.raises(BankError, match="incomplete"):
        ViewBank(tmp_path / "bank")
    partial = ViewBank(tmp_path / "bank", require_complete=False)
    assert partial.lookup(TileKey(stores[0], 5)) is None and partial.lookup(TileKey(stores[0], 9)) is not None
    again = make_writer(tmp_path, stores)  # a re-run reopens the bank and redoes only the missing rows
    assert again.pending_rows().tolist() == [0, 2] and not again.complete
    assert np.array_equal(again.group["views"][1], fake_views(1))
    for row in again.pending_rows():
        again.write_row(int(row), fake_views(int(row)), np.zeros(K))
    again.finish()
    assert make_writer(tmp_path, stores).complete


def test_a_different_run_is_refused_not_mixed_in(tmp_path, stores):
    make_writer(tmp_path, stores)
    with pytest.raises(BankError, match="different n_views"):
        make_writer(tmp_path, stores, {**ATTRS, "n_views": 2})
    with pytest.raises(BankError, match="different source tiles"):
        BankWriter(tmp_path / "bank", stores, np.array([0, 0, 1, 1]), np.array([5, 9, 0, 8]), ATTRS)
    with pytest.raises(BankError, match="must be uint8"):
        make_writer(tmp_path, stores).write_row(0, np.zeros((K, S, S, 3), np.float32), np.zeros(K))
    with pytest.raises(BankError, match="not a view bank"):
        ViewBank(tmp_path / "nothing")


def test_grid_has_the_expected_pixel_size(tmp_path):
    sources = [np.full((16, 16, 3), 200, np.uint8)] * 2  # sources of another size are resized to the cell
    views = [fake_views(1), fake_views(2)]
    path = write_grid(tmp_path / "grid.png", sources, views, pad=2)
    picture = Image.open(path)
    assert picture.size == grid_size(2, K, S, pad=2) == (2 + 4 * (S + 2), 2 + 2 * (S + 2))
    assert np.array(picture)[2 + 1, 2 + S + 2 + 1].tolist() == [10, 10, 10]  # row 0, first view
    labelled = make_grid(sources, views, cell_px=32, labels=[["r0", "v0", "v1", "v2"]] * 2, label_px=11)
    assert labelled.size == grid_size(2, K, 32, pad=2, label_px=11)


def test_interpolation_grid_shows_the_secondary_tile_after_the_primary(tmp_path):
    sources = [np.full((S, S, 3), 200, np.uint8)] * 2
    secondaries = [np.full((S, S, 3), 77, np.uint8)] * 2
    path = write_grid(tmp_path / "grid.png", sources, [fake_views(1), fake_views(2)], pad=2, secondaries=secondaries)
    picture = np.array(Image.open(path))
    assert picture.shape[:2][::-1] == grid_size(2, K, S, pad=2, n_real=2) == (2 + 5 * (S + 2), 2 + 2 * (S + 2))
    assert picture[3, 3].tolist() == [200] * 3 and picture[3, 2 + S + 2 + 1].tolist() == [77] * 3
    assert picture[3, 2 + 2 * (S + 2) + 1].tolist() == [10, 10, 10]  # then the first view
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="one secondary tile per row"):
        make_grid(sources, [fake_views(1), fake_views(2)], secondaries=secondaries[:1])


def test_real_views_bank_copies_rows_with_the_resized_source_tiles(tiny_tiles, tmp_path):
    """The resolution-matched control: same rows and sources as the generated bank, real pixels as views."""
    stores = [str(s.path) for s in open_tile_folder(tiny_tiles).stores]
    generated = tmp_path / "generated"
    writer = BankWriter(
        generated,
        stores,
        np.array([0, 1, 0]),
        np.array([3, 7, 11]),
        {
            "mode": "views",
            "n_views": 2,
            "image_size": 16,
            "sampler": {"sampler": "ddim"},
            "model": "m",
            "seed": 0,
            "settings": {},
        },
    )
    for row in range(3):
        writer.write_row(row, np.full((2, 16, 16, 3), 200, np.uint8), seeds=np.arange(2))
    writer.finish()
    real = ViewBank(write_real_views_bank(generated, tmp_path / "real"))
    assert real.complete and real.keys() == ViewBank(generated).keys()
    dataset = DiffusionTiles([tiny_tiles], 16, flips=False)  # the LDM's training view of the same tiles
    for row, key in enumerate(real.keys()):
        index = next(i for i in range(len(dataset)) if dataset.key(i) == key)
        expected = dataset[index]["tile_u8"].permute(1, 2, 0).numpy()
        assert np.array_equal(real.views(row)[0], expected) and np.array_equal(real.views(row)[1], expected)
    assert write_real_views_bank(generated, tmp_path / "real") == tmp_path / "real"  # complete: nothing redone
