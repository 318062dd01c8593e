"""`pathgen embed MODEL OUT`: a saved encoder's features for every tile of a tiling output folder.

Features go beside the tiles, into each slide's group: ``tiles.zarr/<slide>/embeddings/<name>``
(float32, (N, D), row i = tile i), marked complete only once written, so a killed run redoes
just the slides it had not finished and a re-run skips the rest.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import zarr
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from pathgen.distributed import pick_device
from pathgen.models.io import EncoderConfig, load_encoder
from pathgen.run_log import stderr_is_terminal
from tiling.store import TileStore, is_complete, list_store_paths

EMBEDDINGS_GROUP = "embeddings"


class _StoreTiles(Dataset):
    """The tiles of one store as uint8 (3, T, T) tensors."""

    def __init__(self, store: TileStore):
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.store[index].transpose(2, 0, 1)))


def resize_and_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Shorter side resized to `size` (bilinear, antialiased), then a centred `size` square: eva's
    ResizeAndCrop (torchvision Resize(size) + CenterCrop(size)); square tiles are only resized."""
    height, width = images.shape[-2:]
    if (height, width) == (size, size):
        return images
    scale = size / min(height, width)
    new_hw = (max(size, round(height * scale)), max(size, round(width * scale)))
    images = F.interpolate(images, size=new_hw, mode="bilinear", antialias=True, align_corners=False)
    top, left = (new_hw[0] - size) // 2, (new_hw[1] - size) // 2
    return images[..., top:top + size, left:left + size]


def preprocess(tiles_u8: torch.Tensor, config: EncoderConfig) -> torch.Tensor:
    """uint8 (B, 3, H, W) images → the normalised float input the encoder was trained on."""
    images = resize_and_crop(tiles_u8.float().div_(255.0), config.tile_size_px)
    mean = torch.tensor(config.mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(config.std, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


@torch.no_grad()
def embed_store(model: torch.nn.Module, config: EncoderConfig, store: TileStore, device: torch.device,
                batch_size: int = 256, num_workers: int = 2) -> np.ndarray:
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


def write_embeddings(store_path: Path, name: str, features: np.ndarray, model_config: EncoderConfig) -> None:
    """Write one slide's features, then mark them complete."""
    group = zarr.open_group(store_path / EMBEDDINGS_GROUP, mode="a")
    array = group.create_array(name, data=features.astype(np.float32), chunks=(max(1, min(len(features), 4096)),
                                                                               features.shape[1]), overwrite=True)
    array.attrs.update({"encoder": model_config.__dict__, "complete": True})


def read_embeddings(store_path: str | Path, name: str) -> np.ndarray:
    """The (N, D) features of encoder `name` for one slide store."""
    store_path = Path(store_path)
    if not embeddings_complete(store_path, name):
        raise ValueError(f"{embedding_path(store_path, name)}: no complete embeddings; run `pathgen embed`")
    return zarr.open_array(embedding_path(store_path, name), mode="r")[:]


def embed_folder(model_dir: str | Path, tile_dir: str | Path, name: str | None = None, device: str = "auto",
                 batch_size: int = 256, num_workers: int = 2, progress: bool = True) -> dict[str, int]:
    """Embed every complete store of a tiling output folder; returns counts of embedded / skipped slides."""
    name = name or Path(model_dir).resolve().name
    torch_device = pick_device(device)
    model, config = load_encoder(model_dir, torch_device)
    counts = {"embedded": 0, "skipped": 0}
    paths = [p for p in list_store_paths(tile_dir) if is_complete(p)]
    for path in tqdm(paths, unit="slide", disable=not (progress and stderr_is_terminal())):
        if embeddings_complete(path, name):
            counts["skipped"] += 1
            continue
        store = TileStore(path)
        _warn_on_mpp_mismatch(store, config)
        write_embeddings(path, name, embed_store(model, config, store, torch_device, batch_size, num_workers), config)
        counts["embedded"] += 1
    return counts


def _warn_on_mpp_mismatch(store: TileStore, config: EncoderConfig) -> None:
    tiling = store.attrs["tiling"]
    # tiles are resized to the encoder's input, so compare µm per input pixel
    tiles_mpp = tiling["target_mpp"] * tiling["tile_size_px"] / config.tile_size_px
    if config.mpp and abs(tiles_mpp - config.mpp) > 0.01 * config.mpp:
        print(f"pathgen embed: warning: {store.path} tiles give {tiles_mpp:.3g} µm per input pixel but the encoder "
              f"was trained at {config.mpp:.3g}", file=sys.stderr)
