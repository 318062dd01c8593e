"""`pathgen embed MODEL OUT`: an encoder's features for every tile of a tiling output folder.

Features go beside the tiles, into each slide's group: ``tiles.zarr/<slide>/embeddings/<name>``
(float32, (N, D), row i = tile i), marked complete only once written, so a killed run redoes
just the slides it had not finished and a re-run skips the rest. Each set records what made it
(the encoder config and the SHA-256 of its weights file): a re-run under the same name with a
different encoder is refused (or, with ``overwrite``, re-embedded) instead of reported as done.
Under ``torchrun`` the slides are split across ranks (slide i goes to rank i mod W), each slide
written by one rank.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import zarr
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pathgen.distributed import setup_distributed
from pathgen.models.folder import weights_sha256
from pathgen.models.io import EncoderConfig, build_encoder, open_encoder
from pathgen.models.preprocess import mpp_per_input_pixel, preprocess, resize_and_crop
from pathgen.run_log import stderr_is_terminal
from tiling.store import TileStore, complete_store_paths

__all__ = [
    "embed_folder",
    "embed_store",
    "embedding_identity",
    "embeddings_complete",
    "preprocess",
    "read_embeddings",
    "resize_and_crop",
    "write_embeddings",
]

EMBEDDINGS_GROUP = "embeddings"


class _StoreTiles(Dataset):
    """The tiles of one store as uint8 (3, T, T) tensors."""

    def __init__(self, store: TileStore):
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.store[index].transpose(2, 0, 1)))


@torch.no_grad()
def embed_store(
    model: torch.nn.Module,
    config: EncoderConfig,
    store: TileStore,
    device: torch.device,
    batch_size: int = 256,
    num_workers: int = 2,
) -> np.ndarray:
    """(N, D) float32 features of every tile of one store, in tile order."""
    loader = DataLoader(_StoreTiles(store), batch_size=batch_size, num_workers=num_workers, shuffle=False)
    features = [model(preprocess(batch.to(device, non_blocking=True), config)).float().cpu() for batch in loader]
    return torch.cat(features).numpy()


def embedding_path(store_path: Path, name: str) -> Path:
    """Where the features of encoder `name` for one slide are written."""
    return store_path / EMBEDDINGS_GROUP / name


def embeddings_complete(store_path: Path, name: str) -> bool:
    """True when that slide's features were written to the end."""
    try:
        return zarr.open_array(embedding_path(store_path, name), mode="r").attrs.get("complete") is True
    except (FileNotFoundError, ValueError, zarr.errors.BaseZarrError):
        return False


def embedding_identity(config: EncoderConfig, weights: Path) -> dict:
    """What made a set of embeddings: the encoder's SHA-256 weights hash and its config."""
    return {"weights_sha256": weights_sha256(weights), "encoder": asdict(config)}


def write_embeddings(
    store_path: Path, name: str, features: np.ndarray, model_config: EncoderConfig, identity: dict | None = None
) -> None:
    """Write one slide's features with what made them, then mark them complete."""
    group = zarr.open_group(store_path / EMBEDDINGS_GROUP, mode="a")
    array = group.create_array(
        name,
        data=features.astype(np.float32),
        chunks=(max(1, min(len(features), 4096)), features.shape[1]),
        overwrite=True,
    )
    identity = identity or {"encoder": asdict(model_config)}
    array.attrs.update({**identity, "complete": True})


def recorded_identity(store_path: Path, name: str) -> dict:
    """The identity attrs of a complete embedding set (``weights_sha256`` absent for sets written before it)."""
    attrs = dict(zarr.open_array(embedding_path(store_path, name), mode="r").attrs)
    return {k: attrs[k] for k in ("weights_sha256", "encoder") if k in attrs}


def same_encoder(recorded: dict, identity: dict) -> bool:
    """True when a recorded set was made by the encoder of `identity` (by weights hash; older sets by config)."""
    if "weights_sha256" in recorded:
        return recorded["weights_sha256"] == identity["weights_sha256"]
    old, new = recorded.get("encoder", {}), identity["encoder"]
    return all(old.get(k) == new.get(k) for k in ("timm_name", "embed_dim", "source"))


def read_embeddings(store_path: str | Path, name: str) -> np.ndarray:
    """The (N, D) features of encoder `name` for one slide store."""
    store_path = Path(store_path)
    if not embeddings_complete(store_path, name):
        raise ValueError(f"{embedding_path(store_path, name)}: no complete embeddings; run `pathgen embed`")
    return zarr.open_array(embedding_path(store_path, name), mode="r")[:]


def _slides_to_embed(paths: list[Path], name: str, identity: dict, overwrite: bool) -> list[Path]:
    """The stores still to embed; a complete set of another encoder under `name` is refused unless `overwrite`."""
    todo = []
    for path in paths:
        if not embeddings_complete(path, name):
            todo.append(path)
        elif not same_encoder(recorded_identity(path, name), identity):
            if not overwrite:
                raise ValueError(
                    f"{embedding_path(path, name)}: embeddings {name!r} were made by another encoder "
                    f"(weights differ); choose another --name, or pass --overwrite to re-embed"
                )
            todo.append(path)
    return todo


def embed_folder(
    model_dir: str | Path,
    tile_dir: str | Path,
    name: str | None = None,
    device: str = "auto",
    batch_size: int = 256,
    num_workers: int = 2,
    progress: bool = True,
    overwrite: bool = False,
    allow_pickle: bool = False,
) -> dict[str, int]:
    """Embed every complete store of a tiling output folder; returns counts of embedded / skipped slides.

    `model_dir` is any encoder argument (`pathgen.models.io.open_encoder`). Under torchrun each rank
    embeds its share of the slides and the counts are summed over ranks.
    """
    source = open_encoder(model_dir, allow_pickle)
    name = name or source.name
    context = setup_distributed(device)
    identity = embedding_identity(source.config, source.weights)
    paths = complete_store_paths(tile_dir)
    todo = _slides_to_embed(paths, name, identity, overwrite)
    mine = todo[context.rank :: context.world_size]
    model = build_encoder(source, context.device, allow_pickle) if mine else None
    identity = embedding_identity(source.config, source.weights)  # embed_dim as built
    for path in tqdm(mine, unit="slide", disable=not (progress and stderr_is_terminal()) or not context.is_main):
        store = TileStore(path)
        _warn_on_mpp_mismatch(store, source.config)
        features = embed_store(model, source.config, store, context.device, batch_size, num_workers)
        write_embeddings(path, name, features, source.config, identity)
    embedded = _sum_over_ranks(len(mine), context.device)
    return {"embedded": embedded, "skipped": len(paths) - len(todo)}


def _sum_over_ranks(count: int, device: torch.device) -> int:
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return count
    total = torch.tensor([count], dtype=torch.int64, device=device)
    dist.all_reduce(total)
    return int(total.item())


def _warn_on_mpp_mismatch(store: TileStore, config: EncoderConfig) -> None:
    tiling = store.attrs["tiling"]
    tiles_mpp = mpp_per_input_pixel(tiling["target_mpp"], tiling["tile_size_px"], config.input_size_px, config.crop_pct)
    if config.mpp and abs(tiles_mpp - config.mpp) > 0.01 * config.mpp:
        print(
            f"pathgen embed: warning: {store.path} tiles give {tiles_mpp:.3g} µm per input pixel but the encoder "
            f"was trained at {config.mpp:.3g}",
            file=sys.stderr,
        )
