"""Frozen-encoder features, computed once per (encoder, dataset, split) and cached on disk.

Cache layout (every file written under a temporary name, then renamed, so a killed run never
leaves a half file that a re-run would trust):

    CACHE/encoders/random-<timm name>/          a `random:<name>` encoder saved as a model folder
    CACHE/<encoder id>/<dataset key>/<split>.npy        (N, D) float32 features, row i = image i
    CACHE/<encoder id>/<dataset key>/<split>.meta.json  n, dim, a hash of the labels, encoder config
    CACHE/tiles/<dataset key>-<tiling hash>/            `pathgen tile` output of a slide dataset
                                                        (features inside, under the encoder id)

The encoder id is the model folder's name plus a short hash of its config.json and its weights
file's size and mtime, so retraining into the same folder gives new features. The dataset key is
the dataset name plus a short hash of its resolved root and reader options.

Encoders are a pathgen or timm model folder or ``<recipe>:<weights>`` (`pathgen.models.io.open_encoder`),
or ``random:<timm name>``,
a randomly initialised baseline (seed 0; 224 px tiles, ImageNet mean/std). Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pathgen.eval.datasets import PatchSplit, SlideDataset
from pathgen.eval.datasets.feature_folder import PREFIX as FEATURES_PREFIX
from pathgen.eval.datasets.feature_folder import feature_h5_dir, read_feature_bags
from pathgen.models.backbone import BackboneConfig, backbone_kwargs, create_backbone
from pathgen.models.embeddings import embed_folder, preprocess, read_embeddings
from pathgen.models.io import (
    CONFIG,
    WEIGHTS,
    EncoderConfig,
    load_encoder,
    open_encoder,
    save_encoder,
)
from tiling.config import TilingConfig
from tiling.pipeline import run_tiling
from tiling.store import TILES_DIR, TileStore, is_complete

RANDOM_PREFIX = "random:"
RANDOM_TILE_PX = 224


def short_hash(*parts: Any) -> str:
    """8 hex digits of SHA-1 over the JSON of `parts` (stable across runs and machines)."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8]


def atomic_write(path: Path, write) -> None:
    """Write `path` through `write(file)` into a temporary sibling, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def materialise_random(spec: str, cache_dir: Path) -> Path:
    """The model folder of `random:<timm name>` (written once, seed 0), so every path sees a folder."""
    name = spec[len(RANDOM_PREFIX) :]
    folder = cache_dir / "encoders" / f"random-{name}"
    if (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file():
        return folder
    cfg = BackboneConfig(name=name, img_size=RANDOM_TILE_PX)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model, dim = create_backbone(cfg)
    config = EncoderConfig(
        timm_name=name,
        embed_dim=dim,
        timm_kwargs=backbone_kwargs(cfg),
        input_size_px=RANDOM_TILE_PX,
        mpp=None,
        source={"method": "random init", "seed": 0},
    )
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    save_encoder(model, config, tmp)
    if folder.exists():  # another process got there first; its weights are the same (seed 0)
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, folder)
    return folder


def split_label(spec: str) -> tuple[str | None, str]:
    """``NAME=SPEC`` → (NAME, SPEC), so two folders both called ``model`` get their own table rows; a spec
    without a plain-name prefix comes back unlabelled."""
    label, sep, rest = spec.partition("=")
    if sep and label and "/" not in label and all(c.isalnum() or c in "_.-" for c in label):
        return label, rest
    return None, spec


class FrozenEncoder:
    """An encoder folder with its cache id; the model itself is loaded only when features are missing."""

    def __init__(self, spec: str | Path, cache_dir: str | Path, device: str = "cpu") -> None:
        label, self.spec = split_label(str(spec))
        self.cache_dir, self.device = Path(cache_dir), torch.device(device)
        self.feature_folder: Path | None = None
        if self.spec.startswith(FEATURES_PREFIX):  # features another tool extracted: slide tasks only
            self.feature_folder = feature_h5_dir(self.spec[len(FEATURES_PREFIX) :])
            self.name = label or self.feature_folder.resolve().name
            self.encoder_id, self.model_dir, self.config = f"features-{self.name}", None, None
            self._model = None
            return
        random_init = self.spec.startswith(RANDOM_PREFIX)
        # a random-init baseline is materialised as a folder; otherwise a pathgen / timm folder or <recipe>:<weights>
        self.model_dir = materialise_random(self.spec, self.cache_dir) if random_init else self.spec
        source = open_encoder(self.model_dir)
        self.name = label or (self.spec if random_init else source.name)
        self.config: EncoderConfig = source.config
        weights = source.weights.stat()
        config_file = Path(self.model_dir) / CONFIG
        described = config_file.read_text() if config_file.is_file() else json.dumps(asdict(self.config), default=str)
        digest = short_hash(described, weights.st_size, weights.st_mtime_ns)
        self.encoder_id = f"{source.name}-{digest}"
        self._model: torch.nn.Module | None = None

    @property
    def model(self) -> torch.nn.Module:
        """The encoder network, loaded on first use."""
        if self.feature_folder is not None:
            raise ValueError(f"{self.spec}: a feature folder serves slide-level tasks only (its features are fixed)")
        if self._model is None:
            self._model, _ = load_encoder(self.model_dir, self.device)
        return self._model

    @torch.no_grad()
    def __call__(self, images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) → (B, D) float32 features on the CPU."""
        return self.model(preprocess(images_u8.to(self.device), self.config)).float().cpu()


def dataset_key(name: str, root: str | Path, options: dict | None = None) -> str:
    """Cache folder name of a dataset read from `root` with reader `options`."""
    return f"{name}-{short_hash(str(Path(root).resolve()), options or {})}"


class _Batches(Dataset):
    """Consecutive index blocks of a PatchSplit as uint8 (B, 3, H, W) tensors (one HDF5 read each)."""

    def __init__(self, split: PatchSplit, batch_size: int) -> None:
        self.split, self.starts = split, list(range(0, len(split), batch_size))
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> torch.Tensor | list[torch.Tensor]:
        start = self.starts[index]
        images = self.split.images(range(start, min(start + self.batch_size, len(self.split))))
        if isinstance(images, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
        return [torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)))[None] for im in images]


def extract_patch_features(
    encoder: FrozenEncoder, split: PatchSplit, batch_size: int = 256, num_workers: int = 0
) -> np.ndarray:
    """(N, D) float32 features of every image of `split`, in order (images of mixed size one by one)."""
    loader = DataLoader(_Batches(split, batch_size), batch_size=None, num_workers=num_workers, persistent_workers=False)
    chunks = []
    for batch in loader:
        parts = batch if isinstance(batch, list) else [batch]
        chunks.extend(encoder(part) for part in parts)
    return torch.cat(chunks).numpy()


def _labels_hash(labels: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()[:12]


def patch_features(
    encoder: FrozenEncoder, split: PatchSplit, key: str, batch_size: int = 256, num_workers: int = 0
) -> np.ndarray:
    """Cached features of one split: read if a complete matching entry exists, else extract and write."""
    folder = encoder.cache_dir / encoder.encoder_id / key
    npy, meta_path = folder / f"{split.name}.npy", folder / f"{split.name}.meta.json"
    expected = {"n": len(split), "labels_sha1": _labels_hash(split.labels), "encoder_id": encoder.encoder_id}
    if meta_path.is_file() and npy.is_file():
        meta = json.loads(meta_path.read_text())
        if all(meta.get(k) == v for k, v in expected.items()):
            return np.load(npy)
    features = extract_patch_features(encoder, split, batch_size, num_workers)
    atomic_write(npy, lambda f: np.save(f, features))
    meta = {**expected, "dim": int(features.shape[1]), "source": split.source, "encoder": asdict(encoder.config)}
    atomic_write(meta_path, lambda f: f.write(json.dumps(meta, indent=2, default=str).encode()))
    return features


def tiling_key(key: str, tiling: TilingConfig) -> str:
    """Tile folder name: the dataset key plus a hash of what changes the tiles (not workers/shard/qc)."""
    values = {k: v for k, v in asdict(tiling).items() if k not in ("workers", "shard", "qc")}
    return f"{key}-{short_hash(values)}"


def slide_features(
    encoder: FrozenEncoder,
    dataset: SlideDataset,
    key: str,
    tiling: TilingConfig,
    batch_size: int = 256,
    num_workers: int = 0,
    progress: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Bags {slide_id: (N, D)} and tile coords {slide_id: (N, 2) level-0 x, y} of every slide.

    Tiles with `tiling.pipeline.run_tiling` into CACHE/tiles/<key>-<tiling hash> and embeds with
    `pathgen.models.embeddings.embed_folder` under the encoder id; both skip what an earlier run finished.
    """
    if encoder.feature_folder is not None:
        return read_feature_bags(encoder.feature_folder, [record.slide_id for record in dataset.records])
    tile_dir = encoder.cache_dir / "tiles" / tiling_key(key, tiling)
    run_tiling([record.path for record in dataset.records], tile_dir, tiling, progress=progress)
    stores = {record.slide_id: tile_dir / TILES_DIR / record.slide_id for record in dataset.records}
    missing = [slide for slide, path in stores.items() if not is_complete(path)]
    if missing:
        raise ValueError(
            f"{tile_dir}: slide(s) {', '.join(missing[:5])} were not tiled (no tissue or unreadable); "
            f"see {tile_dir}/manifest and qc/, or lower tiling.min_tissue"
        )
    embed_folder(
        encoder.model_dir, tile_dir, encoder.encoder_id, str(encoder.device), batch_size, num_workers, progress=progress
    )
    bags = {slide: read_embeddings(path, encoder.encoder_id) for slide, path in stores.items()}
    coords = {slide: TileStore(path).coords for slide, path in stores.items()}
    return bags, coords
