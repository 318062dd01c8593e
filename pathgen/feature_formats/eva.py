"""eva's offline-embeddings layout (kaiko-ai/eva ``ManifestManager`` → ``MultiEmbeddingsClassificationDataset``).

``DIR/manifest.csv`` has eva's columns ``origin, embeddings, target, split`` plus ``wsi_id``
(eva's default ``multi_id`` column); ``embeddings`` is a path relative to DIR of a ``.pt`` file
holding one slide's (N, D) float32 tensor, which eva loads with ``torch.load`` and concatenates
per ``wsi_id``. ``target`` and ``split`` come from the slide-label CSV when one is given.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from pathgen.feature_formats.bags import SlideBag, atomic_file

MANIFEST = "manifest.csv"
COLUMNS = ("origin", "embeddings", "target", "split", "wsi_id")
EMBEDDINGS_DIR = "embeddings"


def write_eva_slide(bag: SlideBag, out: Path) -> str:
    """One slide's .pt file; returns its path relative to `out` for the manifest."""
    relative = f"{EMBEDDINGS_DIR}/{bag.slide_id}.pt"
    atomic_file(out / relative, lambda tmp: torch.save(torch.from_numpy(bag.features), tmp))
    return relative


def write_manifest(out: Path, rows: list[dict]) -> Path:
    """eva's manifest CSV (atomically: it is what marks the export complete)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = out / MANIFEST
    atomic_file(path, lambda tmp: tmp.write_text(buffer.getvalue()))
    return path
