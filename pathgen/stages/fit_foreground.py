"""Fit GenView's foreground direction on an encoder's patch tokens over a tiling output folder, and
save it beside the encoder (``foreground_pca.safetensors`` + ``.json``), where the quality-weighted
loss and the adaptive-noise generation find it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pathgen.data.tiles import TileDataset
from pathgen.distributed import pick_device
from pathgen.genaug.foreground import ForegroundPCA
from pathgen.models.io import load_encoder


def fit_foreground(
    model_dir: str | Path,
    tile_dirs: list[str | Path],
    max_tiles: int = 2048,
    batch_size: int = 64,
    min_tissue: float = 0.0,
    seed: int = 0,
    device: str = "auto",
) -> ForegroundPCA:
    """Fit the PCA on up to `max_tiles` tiles (a seeded sample), save it into `model_dir`, return it.

    GenView fits on 10,000 images; a couple of thousand tiles give a stable top direction for the
    small token dimensions of pathology ViTs (the direction is a covariance eigenvector).
    """
    model, config = load_encoder(model_dir, pick_device(device))
    if not hasattr(model, "forward_features"):
        raise ValueError(f"{model_dir}: the foreground PCA needs an encoder with patch tokens (a timm model)")
    dataset = TileDataset(tile_dirs, min_tissue=min_tissue)
    chosen = np.random.default_rng(seed).permutation(len(dataset))[:max_tiles]
    device_ = next(model.parameters()).device
    batches = [
        torch.stack([dataset[int(i)] for i in chosen[start : start + batch_size]]).to(device_)
        for start in range(0, len(chosen), batch_size)
    ]
    with torch.no_grad():
        pca = ForegroundPCA.fit_encoder(model, batches, config.mean, config.std)
    pca.save(model_dir)
    return pca
