"""A resolution-matched control for generated-view banks: the same rows, with the real source tile in
place of every generated view.

A bank's views are made at the LDM's resolution (32 px in the toy), and the SSL augmentation then scales
them up to its crop size, so a run with generated views differs from its baseline in two ways: the
views' content (what the generator adds or gets wrong) and their resolution. Training on this bank
instead (same sources, same policy, real pixels resized exactly as the LDM's training tiles are) keeps
the second and removes the first, which separates the two in an ablation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pathgen.diffusion.bank import BankWriter, ViewBank
from pathgen.diffusion.training_data import resize_u8
from tiling.store import open_store

REAL_MODEL = "real source tiles"


def real_view(tile_hwc: np.ndarray, image_size: int) -> np.ndarray:
    """A uint8 (H, W, 3) tile resized to (image_size, image_size, 3) as DiffusionTiles resizes LDM inputs."""
    chw = torch.from_numpy(np.ascontiguousarray(tile_hwc)).permute(2, 0, 1).contiguous()
    return resize_u8(chw, image_size).permute(1, 2, 0).numpy()


def write_real_views_bank(source_bank_dir: str | Path, out_dir: str | Path) -> Path:
    """Copy the rows of a complete bank into `out_dir` with each row's K views replaced by its real
    source tile at the bank's resolution; resumes an unfinished copy and marks it complete last."""

    source = ViewBank(source_bank_dir)
    attrs = source.attrs
    n_views, image_size = int(attrs["n_views"]), int(attrs["image_size"])
    group = source.group
    store_ids, indices = group["source_store_id"][:], group["source_index"][:]
    writer = BankWriter(
        out_dir,
        source.stores,
        store_ids,
        indices,
        {
            "mode": "views",
            "n_views": n_views,
            "image_size": image_size,
            "sampler": {"sampler": "none"},
            "model": REAL_MODEL,
            "seed": 0,
            "settings": {"control_of": str(Path(source_bank_dir).resolve())},
        },
    )
    if not writer.complete:
        stores = {}
        for row in writer.pending_rows():
            store_id = int(store_ids[row])
            if store_id not in stores:
                stores[store_id] = open_store(source.stores[store_id])
            tile = stores[store_id].read(np.array([indices[row]]))[0]
            views = np.repeat(real_view(tile, image_size)[None], n_views, axis=0)
            writer.write_row(int(row), views, seeds=np.zeros(n_views, np.int64))
        writer.finish()
    return Path(out_dir)
