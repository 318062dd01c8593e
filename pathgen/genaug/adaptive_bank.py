"""GenView's adaptive noise for a view bank: one img2img strength per source tile, chosen from the
tile's foreground proportion (docs/methods/genview.md, adaptive noise): more foreground → more noise → a more
diverse view;
little or cluttered foreground → little noise, so the semantics survive."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pathgen.genaug.adaptive_noise import AdaptiveNoise
from pathgen.genaug.foreground import EncoderForeground, HematoxylinForeground, TileForeground

FOREGROUNDS = ("pca", "hematoxylin")


def foreground_estimator(kind: str, encoder_dir: str | Path | None, device: torch.device) -> TileForeground:
    """The tile-level estimator: "pca" (GenView's top PCA direction of the SSL encoder's patch tokens,
    fitted by `pathgen.stages.fit_foreground` into `encoder_dir`) or "hematoxylin" (stain density)."""
    if kind == "hematoxylin":
        return HematoxylinForeground()
    if kind != "pca":
        raise ValueError(f"foreground must be one of {FOREGROUNDS}, got {kind!r}")
    if encoder_dir is None or not (Path(encoder_dir) / "foreground_pca.json").is_file():
        raise ValueError(
            f"{encoder_dir}: no foreground_pca.json beside the encoder; fit it with "
            "pathgen.stages.fit_foreground (or use foreground=hematoxylin)"
        )
    return EncoderForeground.from_model_dir(encoder_dir, device)


@torch.no_grad()
def adaptive_strengths(
    tiles_u8: Sequence[np.ndarray], estimator: TileForeground, strengths: Sequence[float], batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """(strength per tile, foreground ratio per tile) for (H, W, 3) uint8 tiles, in order."""
    table = AdaptiveNoise(tuple(strengths))
    ratios = []
    for start in range(0, len(tiles_u8), batch_size):
        batch = torch.from_numpy(np.stack(tiles_u8[start : start + batch_size]).transpose(0, 3, 1, 2).copy())
        ratios.append(estimator.foreground_ratio(batch).float().cpu())
    ratio = torch.cat(ratios).clamp(0.0, 1.0) if ratios else torch.empty(0)
    return table.strength(ratio).numpy().astype(np.float32), ratio.numpy()
