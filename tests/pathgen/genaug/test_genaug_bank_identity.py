"""Banks find their tiles by store identity (moved tile folders still match; older banks by path),
bank views depend only on the sample (not on the order views are asked for), train-ssl refuses a bank
that covers too few training tiles, and stores of mixed µm/px or tile sizes are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from torch.utils.data import DataLoader

from pathgen.config import load_config
from pathgen.data.recipes import dino_multicrop
from pathgen.data.tiles import TileDataset
from pathgen.data.views import MixedSourceViews, TileKey
from pathgen.diffusion.bank import BankWriter, ViewBank, bank_path, store_identity
from pathgen.genaug.sources import BankViewSource, check_bank_coverage
from pathgen.stages.train_ssl import SSLConfig, build_dataset
from tiling.store import list_store_paths, open_tile_folder

ROWS, K = 10, 3


def _bank(folder: Path, tiles: Path) -> Path:
    """A bank of ROWS tiles of the folder's first store; view k of row r is filled with 10·r + k + 1."""
    store = open_tile_folder(tiles).stores[0]
    writer = BankWriter(
        folder,
        [str(store.path)],
        np.zeros(ROWS, np.int32),
        np.arange(ROWS, dtype=np.int32),
        {"mode": "views", "n_views": K, "image_size": 32, "sampler": {}, "model": {}},
    )
    for row in range(ROWS):
        writer.write_row(
            row, np.stack([np.full((32, 32, 3), 10 * row + k + 1, np.uint8) for k in range(K)]), seeds=np.arange(K)
        )
    writer.finish()
    return folder


def _moved_copy(tiles: Path, where: Path) -> Path:
    moved = where / "moved_tiles"
    shutil.copytree(tiles, moved)
    return moved


def test_a_bank_finds_its_tiles_after_the_tile_folder_moved(tmp_path, tiny_tiles):
    bank = ViewBank(_bank(tmp_path / "bank", tiny_tiles))
    first = list_store_paths(tiny_tiles)[0]
    moved = _moved_copy(tiny_tiles, tmp_path)
    moved_store = moved / first.relative_to(tiny_tiles)
    assert store_identity(moved_store) == store_identity(first) == bank.attrs["store_ids"][0]
    assert bank.row_of(TileKey(str(moved_store), 4)) == 4
    assert bank.lookup(TileKey(str(moved_store), 4))[2, 0, 0, 0] == 43
    assert bank.row_of(TileKey(str(moved_store), ROWS)) is None  # not a source
    assert bank.meta(4)["source"] == TileKey(str(moved_store), 4)  # named where it lies now
    other = list_store_paths(tiny_tiles)[1]
    assert store_identity(other) != store_identity(first) and bank.row_of(TileKey(str(other), 4)) is None


def test_an_older_bank_without_identities_is_matched_by_path(tmp_path, tiny_tiles):
    bank_dir = _bank(tmp_path / "bank", tiny_tiles)
    group = zarr.open_group(bank_path(bank_dir), mode="r+")
    del group.attrs["store_ids"]
    first = list_store_paths(tiny_tiles)[0]
    moved_store = _moved_copy(tiny_tiles, tmp_path) / first.relative_to(tiny_tiles)
    bank = ViewBank(bank_dir)
    assert bank.row_of(TileKey(str(first), 4)) == 4
    assert bank.row_of(TileKey(str(moved_store), 4)) is None


def _views(source: BankViewSource, key: TileKey, view: int, seed: int) -> int | None:
    variant = source(key, view, torch.Generator().manual_seed(seed))
    return None if variant is None else int(variant[0, 0, 0])


def test_a_views_source_depends_only_on_its_own_sample(tmp_path, tiny_tiles):
    source = BankViewSource(_bank(tmp_path / "bank", tiny_tiles), p=1.0)
    store = str(open_tile_folder(tiny_tiles).stores[0].path)
    tile_a, tile_b = TileKey(store, 2), TileKey(store, 7)
    fresh_b = _views(BankViewSource(source.bank.bank_dir, p=1.0), tile_b, 1, seed=11)
    assert fresh_b is not None and fresh_b // 10 == 7  # one of tile B's own variants
    assert _views(source, tile_a, 0, seed=5) is None  # view 0 of A (real) ...
    assert _views(source, tile_b, 1, seed=11) == fresh_b  # ... then view 1 of B: B's variant, not A's
    order = [(tile_a, 1, 5), (tile_b, 2, 11), (tile_a, 2, 5), (tile_b, 0, 11), (tile_b, 1, 11), (tile_a, 0, 5)]
    asked_mixed = [_views(source, *request) for request in order]
    asked_alone = [_views(BankViewSource(source.bank.bank_dir, p=1.0), *request) for request in order]
    assert asked_mixed == asked_alone
    assert asked_mixed[0] // 10 == 2 and asked_mixed[2] == asked_mixed[0]  # one variant per sample


def test_bank_views_are_the_same_with_two_dataloader_workers(tmp_path, tiny_tiles):
    transform = dino_multicrop(32, 16, 2, 0)
    source = BankViewSource(_bank(tmp_path / "bank", tiny_tiles), p=0.5)
    dataset = TileDataset([tiny_tiles], MixedSourceViews(transform, source).views, seed=3)
    subset = torch.utils.data.Subset(dataset, list(range(ROWS)))

    def batches(workers: int) -> list[torch.Tensor]:
        loader = DataLoader(subset, batch_size=5, num_workers=workers, collate_fn=lambda items: items)
        return [torch.stack([views[1] for views in batch]) for batch in loader]

    for one, two in zip(batches(0), batches(2)):
        torch.testing.assert_close(one, two, rtol=0, atol=0)


def test_train_ssl_reports_bank_coverage_and_refuses_too_little(tmp_path, tiny_tiles):
    bank_dir = _bank(tmp_path / "bank", tiny_tiles)
    moved = _moved_copy(tiny_tiles, tmp_path)
    dataset = TileDataset([moved])
    keys = [dataset.key(i) for i in range(len(dataset))]
    share = check_bank_coverage(bank_dir, keys, 0.0, "genaug.bank")
    assert share == pytest.approx(ROWS / len(dataset))
    words = [
        f"data={moved}",
        f"genaug.bank={bank_dir}",
        "backbone.img_size=32",
        "augment.global_size=32",
        "augment.local_size=16",
    ]
    cfg = load_config(SSLConfig, "configs/ssl/simclr_tiny.yaml", [*words, "genaug.min_bank_coverage=0.5"])
    with pytest.raises(
        ValueError,
        match=rf"only {ROWS} of {len(dataset)} training tiles .* below "
        r"genaug.min_bank_coverage=0.5",
    ):
        build_dataset(cfg)
    unrelated = tmp_path / "unrelated_tiles"
    shutil.copytree(tiny_tiles, unrelated)
    for store in list_store_paths(unrelated):  # other slides: their checksums differ
        _edit_attrs(store, lambda attrs: attrs["slide"].update(quick_sha256="0" * 64))
    cfg = load_config(SSLConfig, "configs/ssl/simclr_tiny.yaml", [*words, f"data={unrelated}"])
    with pytest.raises(ValueError, match=r"only 0 of \d+ training tiles \(0.0%\)"):
        build_dataset(cfg)


def _edit_attrs(store: Path, change) -> None:  # noqa: ANN001
    meta = store / "zarr.json"
    doc = json.loads(meta.read_text())
    change(doc["attributes"])
    meta.write_text(json.dumps(doc))


def test_stores_of_mixed_mpp_or_tile_size_are_refused_naming_them(tmp_path, tiny_tiles):
    half = tmp_path / "tiles_0.5"
    shutil.copytree(tiny_tiles, half)
    for store in list_store_paths(half):
        _edit_attrs(store, lambda attrs: attrs["tiling"].update(target_mpp=0.5))
    with pytest.raises(
        ValueError,
        match=r"differ in µm/px or tile size \(1.0 µm/px, 32 px: .*; 0.5 µm/px, 32 px: "
        rf".*{half.name}.*allow_mixed_tiling=true",
    ):
        TileDataset([tiny_tiles, half])
    assert len(TileDataset([tiny_tiles, half], allow_mixed_tiling=True)) == 2 * len(TileDataset([tiny_tiles]))
    cfg = load_config(
        SSLConfig,
        "configs/ssl/simclr_tiny.yaml",
        [f"data=[{tiny_tiles}, {half}]", "backbone.img_size=32", "augment.global_size=32", "augment.local_size=16"],
    )
    with pytest.raises(ValueError, match="allow_mixed_tiling"):
        build_dataset(cfg)
    cfg.allow_mixed_tiling = True
    assert len(build_dataset(cfg)) == 2 * len(TileDataset([tiny_tiles]))
