"""DiffusionTiles: model-range images, deterministic dihedral augmentation, resizing, embeddings rows."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pathgen.cli import main
from pathgen.diffusion.images import to_model_range
from pathgen.diffusion.training_data import DiffusionTiles
from pathgen.models.embeddings import read_embeddings

EMBEDDINGS = "tiny"


@pytest.fixture(scope="module")
def embedded_tiles(tiny_tiles, tiny_encoder, tmp_path_factory) -> Path:
    """A private copy of the tiny tiles with `pathgen embed` output named "tiny"."""
    folder = tmp_path_factory.mktemp("diffusion_data") / "tiles"
    shutil.copytree(tiny_tiles, folder)
    assert (
        main(
            [
                "embed",
                str(tiny_encoder),
                str(folder),
                "--name",
                EMBEDDINGS,
                "--workers",
                "0",
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    return folder


def _d4(tile: torch.Tensor) -> list[torch.Tensor]:
    """The 8 rotations / reflections of a (C, H, W) tile."""
    turns = [torch.rot90(tile, k, dims=(-2, -1)) for k in range(4)]
    return turns + [torch.flip(t, dims=(-1,)) for t in turns]


def _original(dataset: DiffusionTiles, index: int) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(dataset.tiles.tile(index).transpose(2, 0, 1)))


def test_items_are_model_range_images_of_the_tiles(tiny_tiles):
    dataset = DiffusionTiles([tiny_tiles], image_size=32)
    assert len(dataset) == sum(len(store) for store in dataset.stores)
    item = dataset[5]
    assert set(item) == {"image", "tile_u8", "pixels_key"}
    assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
    assert item["tile_u8"].shape == (3, 32, 32) and item["tile_u8"].dtype == torch.uint8
    assert -1.0 <= item["image"].min() and item["image"].max() <= 1.0
    torch.testing.assert_close(item["image"], to_model_range(item["tile_u8"][None])[0])
    assert any(torch.equal(item["tile_u8"], view) for view in _d4(_original(dataset, 5)))
    assert dataset.key(5) == dataset.tiles.key(5)
    assert int(item["pixels_key"]) // 8 == 5  # the tile; the rest is its rotation / reflection (test_first_stage_cache)


def test_resize_is_antialiased_bilinear(tiny_tiles):
    dataset = DiffusionTiles([tiny_tiles], image_size=16, flips=False)
    item = dataset[3]
    assert item["image"].shape == (3, 16, 16)
    expected = F.interpolate(_original(dataset, 3)[None].float(), size=(16, 16), mode="bilinear", antialias=True)
    assert (item["tile_u8"].float() - expected[0].round()).abs().max() <= 1.0


def test_augmentation_is_deterministic_per_seed_epoch_index(tiny_tiles):
    first, second = DiffusionTiles([tiny_tiles], 32, seed=3), DiffusionTiles([tiny_tiles], 32, seed=3)
    for epoch in (0, 2):
        first.set_epoch(epoch)
        second.set_epoch(epoch)
        for index in (0, 17, 200):
            assert torch.equal(first[index]["tile_u8"], second[index]["tile_u8"])
    clone = pickle.loads(pickle.dumps(first))  # what a DataLoader worker receives
    assert torch.equal(clone[17]["image"], first[17]["image"])


def test_flips_cover_the_dihedral_group_and_change_with_epoch(tiny_tiles):
    dataset = DiffusionTiles([tiny_tiles], 32, min_tissue=0.5)
    plain = DiffusionTiles([tiny_tiles], 32, min_tissue=0.5, flips=False)
    seen, changed = set(), 0
    for index in range(0, len(dataset), max(1, len(dataset) // 64)):
        views = _d4(_original(dataset, index))
        assert torch.equal(plain[index]["tile_u8"], views[0])
        if len({v.numpy().tobytes() for v in views}) < 8:
            continue  # a symmetric tile: its transform cannot be told apart
        before = dataset[index]["tile_u8"]
        seen.add(next(k for k, v in enumerate(views) if torch.equal(before, v)))
        dataset.set_epoch(1)
        changed += not torch.equal(dataset[index]["tile_u8"], before)
        dataset.set_epoch(0)
    assert len(seen) >= 6, f"only transforms {sorted(seen)} drawn"
    assert changed >= 20


def test_embedding_rows_match_read_embeddings(embedded_tiles):
    dataset = DiffusionTiles([embedded_tiles], 32, embeddings_name=EMBEDDINGS)
    for index in (0, 150, len(dataset) - 1):
        key = dataset.key(index)
        item = dataset[index]
        expected = read_embeddings(key.store, EMBEDDINGS)[key.index]
        assert item["embedding"].dtype == torch.float32
        np.testing.assert_array_equal(item["embedding"].numpy(), expected)
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._embeddings == {} and torch.equal(clone[150]["embedding"], dataset[150]["embedding"])


def test_missing_embeddings_name_the_store(tiny_tiles):
    with pytest.raises(ValueError, match=r"tiles\.zarr.*no complete embeddings 'absent'.*run `pathgen embed`"):
        DiffusionTiles([tiny_tiles], 32, embeddings_name="absent")


def test_missing_tiles_folder_is_an_error(tmp_path):
    with pytest.raises(Exception, match="tile"):
        DiffusionTiles([tmp_path / "nowhere"], 32)
