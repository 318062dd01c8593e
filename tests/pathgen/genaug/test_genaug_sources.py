"""Bank views as augmentations: the mixing probability and policies are honoured over many draws,
and the Gen-SIS interpolation sample carries the bank's secondary tile and α."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pathgen.data.recipes import dino_multicrop
from pathgen.data.tiles import TileDataset
from pathgen.data.views import AugmentedViews, MixedSourceViews, TileKey
from pathgen.diffusion.bank import BankWriter
from pathgen.genaug.gensis_dino import GenSISDINO
from pathgen.genaug.sources import BankViewSource, InterpolationViews
from pathgen.ssl.base import StepInfo
from pathgen.ssl.dino import DINOConfig
from tiling.store import open_tile_folder

N_ROWS, K = 12, 3


def _bank(tmp_path, tiny_tiles, mode: str = "views") -> tuple:
    store = open_tile_folder(tiny_tiles).stores[0]
    writer = BankWriter(
        tmp_path / mode,
        [str(store.path)],
        np.zeros(N_ROWS, np.int32),
        np.arange(N_ROWS, dtype=np.int32),
        {"mode": mode, "n_views": K, "image_size": 32, "sampler": {}, "model": {}},
    )
    for row in range(N_ROWS):
        views = np.stack([np.full((32, 32, 3), 10 * (k + 1), np.uint8) for k in range(K)])
        secondary = (0, N_ROWS + row) if mode == "interpolate" else None
        alpha = np.array([0.25, 0.5, 0.75], np.float32) if mode == "interpolate" else None
        writer.write_row(row, views, seeds=np.arange(K), alpha=alpha, secondary=secondary)
    writer.finish()
    return tmp_path / mode, store


def _swapped_views(source: BankViewSource, key: TileKey, n_views: int, seed: int) -> list[int]:
    rng = torch.Generator().manual_seed(seed)
    return [i for i in range(n_views) if source(key, i, rng) is not None]


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_generativessl_swaps_every_later_view_with_probability_p(tmp_path, tiny_tiles, p):
    bank_dir, store = _bank(tmp_path, tiny_tiles)
    source = BankViewSource(bank_dir, p=p, policy="generativessl")
    draws = [_swapped_views(source, TileKey(str(store.path), 3), 4, seed) for seed in range(1000)]
    assert all(d in ([], [1, 2, 3]) for d in draws)  # view 0 always real; one coin per sample
    rate = np.mean([bool(d) for d in draws])
    assert abs(rate - p) <= 3 * np.sqrt(p * (1 - p) / 1000) + 1e-9


def test_genview_swaps_exactly_one_global_view(tmp_path, tiny_tiles):
    bank_dir, store = _bank(tmp_path, tiny_tiles)
    source = BankViewSource(bank_dir, p=0.5, policy="genview", n_global=2)
    draws = [_swapped_views(source, TileKey(str(store.path), 5), 4, seed) for seed in range(1000)]
    assert all(d in ([], [0], [1]) for d in draws)  # never (generated, generated), never a local crop
    counts = {tuple(d): draws.count(d) for d in ([], [0], [1])}
    assert abs(counts[()] / 1000 - 0.5) < 0.06 and abs(counts[(0,)] - counts[(1,)]) < 100


def test_tiles_without_a_row_stay_real_and_variants_are_uniform(tmp_path, tiny_tiles):
    bank_dir, store = _bank(tmp_path, tiny_tiles)
    source = BankViewSource(bank_dir, p=1.0)
    assert _swapped_views(source, TileKey(str(store.path), N_ROWS + 1), 3, 0) == []
    picked = []
    for seed in range(900):
        rng = torch.Generator().manual_seed(seed)
        source(TileKey(str(store.path), 0), 0, rng)
        picked.append(int(source(TileKey(str(store.path), 0), 1, rng)[0, 0, 0]))
    assert sorted(set(picked)) == [10, 20, 30] and min(picked.count(v) for v in (10, 20, 30)) > 250


def test_bad_settings_are_refused(tmp_path, tiny_tiles):
    bank_dir, _ = _bank(tmp_path, tiny_tiles)
    with pytest.raises(ValueError, match="genaug.p"):
        BankViewSource(bank_dir, p=1.5)
    with pytest.raises(ValueError, match="policy"):
        BankViewSource(bank_dir, policy="always")
    with pytest.raises(ValueError, match="interpolate-mode"):
        InterpolationViews(AugmentedViews(dino_multicrop(32, 16, 2, 2)), dino_multicrop(32, 16, 2, 2), bank_dir)


def test_interpolation_sample_trains_gen_dino_through_a_dataloader(tmp_path, tiny_tiles):
    bank_dir, store = _bank(tmp_path, tiny_tiles, mode="interpolate")
    transform = dino_multicrop(32, 16, 2, 2)
    mixed = MixedSourceViews(transform, BankViewSource(_bank(tmp_path / "v", tiny_tiles)[0], p=1.0))
    provider = InterpolationViews(mixed, transform, bank_dir)
    dataset = TileDataset([tiny_tiles], provider.views)
    first = dataset[0] if dataset.key(0).store == str(store.path) else None
    rows = [i for i in range(len(dataset)) if dataset.key(i).store == str(store.path) and dataset.key(i).index < N_ROWS]
    item = dataset[rows[0]]
    assert item["has_interp"] and float(item["alpha"]) in (0.25, 0.5, 0.75)
    np.testing.assert_allclose(
        item["secondary"],
        transform.view(0, store[N_ROWS + dataset.key(rows[0]).index], _replay_rng(dataset, rows[0])),
        atol=0,
    )
    outside = [i for i in range(len(dataset)) if dataset.key(i).index >= N_ROWS][0]
    assert not dataset[outside]["has_interp"]
    del first
    batch = next(iter(DataLoader(torch.utils.data.Subset(dataset, rows[:4] + [outside]), batch_size=5)))
    method = GenSISDINO(_vit(), 192, DINOConfig(out_dim=32, hidden_dim=16, bottleneck_dim=8, n_global=2, n_local=2))
    out = method(batch, StepInfo(step=0, total_steps=1, epoch=0.0))
    assert torch.isfinite(out["loss"]) and out["disentangle_loss"] > 0


def _replay_rng(dataset: TileDataset, index: int) -> torch.Generator:
    """The generator state InterpolationViews used for the secondary view (after the base views,
    the variant pick and the interpolated view) — replayed to check the pixels."""
    rng = dataset.generator(index)
    provider = dataset.transform.__self__
    provider.base.views(dataset.tile(index), dataset.key(index), rng)
    torch.rand((), generator=rng)
    row = provider.bank.row_of(dataset.key(index))
    variant = provider.bank.views(row)[0]
    provider.transform.view(0, variant, rng)
    return rng


def _vit() -> torch.nn.Module:
    import timm

    torch.manual_seed(0)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=0,
        img_size=32,
        patch_size=8,
        dynamic_img_size=True,
        depth=1,
    )
