"""How fast the benchmark engine is, against its limits, in one run.

1. Feature extraction: `pathgen.eval.features.extract_patch_features` on an in-memory patch
   split (uint8 96×96 → resize → normalise → encoder) in images/s, against the bare model
   forward on the same already-preprocessed batches (the limit); the ratio is the share of the
   limit the pipeline reaches.
2. MIL: ABMIL seconds per epoch on Camelyon16-sized bags (400 bags × 10,000 × 384-d random
   features at --scale 1; --scale 0.05 shrinks bags and tiles for a quick run), with eva's batch
   of 32 bags, against the bare forward+backward of the same padded batches.

    python benchmarks/perf/bench_speed.py --encoder random:vit_small_patch16_224 --device cuda
    python benchmarks/perf/bench_speed.py --scale 0.05            # a quick CPU check
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from pathgen.eval.datasets import PatchSplit
from pathgen.eval.features import FrozenEncoder, extract_patch_features
from pathgen.eval.mil import MILConfig, build_mil_model, fit_mil, pad_bags
from pathgen.models.embeddings import preprocess


class MemorySplit(PatchSplit):
    """Random uint8 images held in memory, so reading costs nothing and the pipeline shows."""

    def __init__(self, n: int, size: int) -> None:
        super().__init__("train", np.zeros(n, np.int64), ("a", "b"), "memory")
        self.data = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)

    def image(self, index: int) -> np.ndarray:
        return self.data[index]

    def images(self, indices) -> np.ndarray:
        return self.data[np.asarray(list(indices))]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def feature_speed(encoder: FrozenEncoder, n: int, batch_size: int) -> tuple[float, float]:
    """(pipeline images/s, bare forward images/s) on the same images."""
    split = MemorySplit(n, 96)
    extract_patch_features(encoder, MemorySplit(batch_size, 96), batch_size)  # warm-up: load, cudnn
    sync(encoder.device)
    start = time.perf_counter()
    extract_patch_features(encoder, split, batch_size)
    sync(encoder.device)
    pipeline = n / (time.perf_counter() - start)
    batches = [
        preprocess(
            torch.from_numpy(split.data[i : i + batch_size]).permute(0, 3, 1, 2).to(encoder.device), encoder.config
        )
        for i in range(0, n, batch_size)
    ]
    sync(encoder.device)
    start = time.perf_counter()
    with torch.no_grad():
        for batch in batches:
            encoder.model(batch)
    sync(encoder.device)
    return pipeline, n / (time.perf_counter() - start)


def mil_speed(n_bags: int, n_tiles: int, dim: int, device: str) -> tuple[float, float]:
    """(fit_mil seconds per epoch, bare forward+backward seconds per epoch) for ABMIL, batch 32."""
    rng = np.random.default_rng(0)
    bags = [rng.standard_normal((n_tiles, dim), dtype=np.float32) for _ in range(n_bags)]
    labels = np.arange(n_bags) % 2
    epochs = 2
    cfg = MILConfig(max_epochs=epochs, patience=None, val_every_steps=10**9)
    start = time.perf_counter()
    fit_mil((bags, labels), (bags[:2], labels[:2]), 2, cfg, device=device)
    sync(torch.device(device))
    fitted = (time.perf_counter() - start) / epochs
    model = build_mil_model(cfg, dim, 2).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    padded = [pad_bags(bags[i : i + cfg.batch_size], device) for i in range(0, n_bags, cfg.batch_size)]
    y = [torch.as_tensor(labels[i : i + cfg.batch_size], device=device) for i in range(0, n_bags, cfg.batch_size)]
    sync(torch.device(device))
    start = time.perf_counter()
    for (x, mask), target in zip(padded, y):
        loss = model.loss(model(x, mask), target, mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sync(torch.device(device))
    return fitted, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="random:vit_small_patch16_224")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink bags and tiles per bag (0.05: quick)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        encoder = FrozenEncoder(args.encoder, cache, args.device)
        n = max(args.batch_size, int(args.images * min(1.0, args.scale * 4)))
        pipeline, bare = feature_speed(encoder, n, args.batch_size)
    print(
        f"features  {encoder.name} on {args.device}: pipeline {pipeline:,.0f} img/s, bare forward {bare:,.0f} img/s, "
        f"ratio {pipeline / bare:.2f} ({n} images, batch {args.batch_size})"
    )
    n_bags, n_tiles = max(4, round(400 * args.scale)), max(10, round(10_000 * args.scale))
    fitted, bare_epoch = mil_speed(n_bags, n_tiles, 384, args.device)
    print(
        f"MIL ABMIL {n_bags} bags × {n_tiles} tiles × 384: fit_mil {fitted:.2f} s/epoch, bare forward+backward "
        f"{bare_epoch:.2f} s/epoch, ratio {bare_epoch / fitted:.2f}"
    )


if __name__ == "__main__":
    main()
