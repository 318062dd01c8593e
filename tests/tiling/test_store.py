"""The tile store: shard layout, round trip for both codecs, completeness, and the folder index."""

import numpy as np
import pytest
import zarr

from tiling.config import StoreConfig
from tiling.store import (
    StoreError,
    StoreLayout,
    create_store,
    is_complete,
    mark_complete,
    open_store,
    open_tile_folder,
    write_shard,
)


def _tiles(n: int, size: int = 32) -> np.ndarray:
    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    tiles = np.broadcast_to(ramp[None, None, :, None], (n, size, size, 3)).copy()
    tiles[:, 0, 0, 0] = np.arange(n)  # tell tiles apart
    return tiles


def _write(group_path, tiles, cfg, complete=True):
    layout = StoreLayout(len(tiles), tiles.shape[1], cfg.tiles_per_shard)
    coords = np.stack([np.arange(len(tiles)) * 10, np.zeros(len(tiles))], axis=1)
    create_store(
        group_path,
        layout,
        coords,
        np.linspace(0, 1, len(tiles)),
        np.zeros((8, 8, 3), np.uint8),
        np.ones((8, 8), bool),
        {"slide": {"name": "x"}},
        cfg,
    )
    for shard in range(layout.n_shards):
        write_shard(group_path, layout, shard, tiles[layout.shard_slice(shard)])
    if complete:
        mark_complete(group_path, {"n_tiles": len(tiles)})
    return layout


def test_layout_shards():
    layout = StoreLayout(n_tiles=20, tile_size_px=32, tiles_per_shard=8)
    assert layout.n_shards == 3
    assert layout.shard_slice(2) == slice(16, 20)


def test_zstd_round_trip_is_lossless_and_sharded(tmp_path):
    tiles = _tiles(20)
    group = tmp_path / "tiles.zarr" / "s1"
    _write(group, tiles, StoreConfig(tiles_per_shard=8))
    store = open_store(group)
    assert len(store) == 20
    np.testing.assert_array_equal(store.read(np.arange(20)), tiles)
    np.testing.assert_array_equal(store.read([19, 3, 3]), tiles[[19, 3, 3]])
    np.testing.assert_array_equal(store[7], tiles[7])
    assert store.coords[3].tolist() == [30, 0]
    shard_files = [p for p in (group / "tiles").rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert len(shard_files) == 3  # 20 tiles → 3 files, not 20
    assert store.array("tissue_mask").dtype == np.uint8
    meta = zarr.open_array(group / "tiles", mode="r").metadata.to_dict()
    assert meta["codecs"][0]["name"] == "sharding_indexed"


def test_jpeg_codec_round_trip_is_close(tmp_path):
    rng = np.random.default_rng(0)
    tiles = np.clip(_tiles(5, 64).astype(int) + rng.integers(-3, 4, (5, 64, 64, 3)), 0, 255).astype(np.uint8)
    group = tmp_path / "tiles.zarr" / "s1"
    _write(group, tiles, StoreConfig(codec="jpeg", jpeg_quality=95, tiles_per_shard=4))
    decoded = open_store(group).read(np.arange(5))
    assert decoded.shape == tiles.shape
    assert np.abs(decoded.astype(int) - tiles).mean() < 3


def test_incomplete_store_is_refused(tmp_path):
    group = tmp_path / "tiles.zarr" / "s1"
    _write(group, _tiles(4), StoreConfig(tiles_per_shard=2), complete=False)
    assert not is_complete(group)
    with pytest.raises(StoreError, match="incomplete"):
        open_store(group)


def test_out_of_range_read_names_the_store(tmp_path):
    group = tmp_path / "tiles.zarr" / "s1"
    _write(group, _tiles(4), StoreConfig(tiles_per_shard=2))
    with pytest.raises(IndexError, match="s1"):
        open_store(group).read([4])


def test_wrong_shard_shape_is_refused(tmp_path):
    group = tmp_path / "tiles.zarr" / "s1"
    layout = _write(group, _tiles(4), StoreConfig(tiles_per_shard=2), complete=False)
    with pytest.raises(ValueError, match="shard 1"):
        write_shard(group, layout, 1, _tiles(3))


def test_folder_indexes_complete_stores_only(tmp_path):
    _write(tmp_path / "tiles.zarr" / "a", _tiles(3), StoreConfig())
    _write(tmp_path / "tiles.zarr" / "b", _tiles(5), StoreConfig())
    _write(tmp_path / "tiles.zarr" / "c", _tiles(2), StoreConfig(), complete=False)
    folder = open_tile_folder(tmp_path)
    assert len(folder) == 8
    assert [p.name for p in folder.skipped_incomplete] == ["c"]
    store, local = folder.locate(4)
    assert store.slide_id == "b" and local == 1
    assert folder[4][0, 0, 0] == 1
    with pytest.raises(IndexError):
        folder.locate(8)


def test_store_pickles_without_open_handles(tmp_path):
    import pickle

    group = tmp_path / "tiles.zarr" / "s1"
    tiles = _tiles(4)
    _write(group, tiles, StoreConfig())
    store = open_store(group)
    store.read([0])
    clone = pickle.loads(pickle.dumps(store))
    assert clone._tiles is None
    np.testing.assert_array_equal(clone[2], tiles[2])


def test_not_a_tile_folder(tmp_path):
    with pytest.raises(StoreError, match="tiles.zarr"):
        open_tile_folder(tmp_path)


@pytest.mark.parametrize("codec", ["zstd", "jpeg"])
def test_direct_shard_files_agree_with_zarr_both_ways(tmp_path, codec):
    from tiling.shards import ShardReader

    rng = np.random.default_rng(1)
    tiles = rng.integers(0, 256, (11, 16, 16, 3), dtype=np.uint8)
    tiles[..., 1] = 128  # some structure for JPEG
    cfg = StoreConfig(codec=codec, tiles_per_shard=4)
    ours = tmp_path / "tiles.zarr" / "ours"
    _write(ours, tiles, cfg)  # written by tiling.shards
    via_zarr = zarr.open_array(ours / "tiles", mode="r")[:]
    np.testing.assert_array_equal(via_zarr, open_store(ours).read(np.arange(11)))
    theirs = tmp_path / "tiles.zarr" / "theirs"
    layout = _write(theirs, tiles, cfg, complete=False)
    zarr.open_array(theirs / "tiles", mode="r+")[:] = tiles  # written by zarr itself
    np.testing.assert_array_equal(ShardReader(theirs / "tiles").read(np.arange(layout.n_tiles)), via_zarr)
    if codec == "zstd":
        np.testing.assert_array_equal(via_zarr, tiles)


def test_foreign_layout_is_read_through_zarr(tmp_path):
    group = tmp_path / "tiles.zarr" / "s1"
    tiles = _tiles(6)
    _write(group, tiles, StoreConfig(tiles_per_shard=2))
    zarr.open_group(group, mode="r+").create_array("tiles", data=tiles, chunks=(2, 32, 32, 3), overwrite=True)
    np.testing.assert_array_equal(open_store(group).read([5, 0]), tiles[[5, 0]])
