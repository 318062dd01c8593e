"""GenView's adaptive view generation: more foreground, more noise (Li et al., ECCV 2024; docs/methods/genview.md,
adaptive noise).

GenView bins a tile's foreground ratio r with edges [0, .2, .4, .6, .8, 1] and
`digitize(r, edges, right=True) − 1`, clamped, so r ∈ [0, .2] → level 0, (.2, .4] → 1, …,
(.8, 1] → 4, and gives Stable unCLIP noise_level 100·level (0…400 of 1000). A large foreground
can take a strong perturbation and stay on-topic; a small or scattered one keeps its semantics
only under little noise.

unCLIP's noise_level noises the CLIP *image embedding* the generator is conditioned on; the image
itself is always sampled from pure noise. pathgen's generator is an embedding-conditioned LDM used
img2img (SDEdit: noise the source latent to a fraction `strength` of the schedule, then denoise
under the tile's own SSL embedding), so the knob that controls how far a view departs from its
source is the img2img strength. The default table [0.3, 0.4, 0.5, 0.6, 0.7] keeps GenView's
shape — five equal steps of 0.1, the 100/1000 per bin of unCLIP, over a span of 0.4 — offset
so that level 0 still makes a new view: at low strength img2img returns little more than the tile
with new fine texture (a near copy of the real view it is paired with), while near 1 the source
layout is gone and the view is a free sample from the embedding, where a scattered foreground is
easily lost. SDEdit (Meng et al., ICLR 2022) describes this realism / faithfulness trade-off in
the starting time t0 = strength. The end points are a judgement, not a measured optimum for
pathgen's LDM: tune them on generated-view quality. The table is configurable; any
non-decreasing table keeps the strength monotone in r, and a constant one turns the adaptivity
off (an ablation).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

GENVIEW_BIN_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
GENVIEW_NOISE_LEVELS = (0, 100, 200, 300, 400)  # Stable unCLIP noise_level per level, of 1000
DEFAULT_STRENGTHS = (0.3, 0.4, 0.5, 0.6, 0.7)  # img2img strength per level (this module's docstring)


def noise_level_index(
    ratio: Tensor | float | Sequence[float], bin_edges: Sequence[float] = GENVIEW_BIN_EDGES
) -> Tensor:
    """Level 0…len(bin_edges) − 2 of each foreground ratio in [0, 1]: digitize(right=True) − 1, clamped.

    torch.bucketize with right=False is numpy's digitize with right=True (edges[i−1] < r ≤ edges[i]).
    """
    ratio = torch.as_tensor(ratio)
    ratio = ratio if ratio.is_floating_point() else ratio.float()
    if torch.isnan(ratio).any() or (ratio < 0).any() or (ratio > 1).any():
        raise ValueError(f"foreground ratios must lie in [0, 1], got min {ratio.min().item()} max {ratio.max().item()}")
    edges = torch.tensor(bin_edges, dtype=ratio.dtype, device=ratio.device)
    return (torch.bucketize(ratio, edges) - 1).clamp(0, len(bin_edges) - 2)


@dataclass(frozen=True)
class AdaptiveNoise:
    """Foreground ratio → GenView level → img2img strength, vectorised over a batch.

    Args:
        strengths: img2img strength in [0, 1] per level, non-decreasing (default 0.3 … 0.7).
        bin_edges: Increasing level edges from 0 to 1, one more than `strengths` (GenView's).
    """

    strengths: tuple[float, ...] = DEFAULT_STRENGTHS
    bin_edges: tuple[float, ...] = GENVIEW_BIN_EDGES

    def __post_init__(self) -> None:
        edges, strengths = list(self.bin_edges), list(self.strengths)
        if len(edges) != len(strengths) + 1 or edges[0] != 0.0 or edges[-1] != 1.0:
            raise ValueError(
                f"bin_edges must run from 0 to 1 with one more entry than strengths; got {edges} "
                f"for {len(strengths)} strengths"
            )
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise ValueError(f"bin_edges must increase, got {edges}")
        if any(b < a for a, b in itertools.pairwise(strengths)) or not all(0.0 <= s <= 1.0 for s in strengths):
            raise ValueError(f"strengths must be non-decreasing values in [0, 1], got {strengths}")

    def level(self, ratio: Tensor | float | Sequence[float]) -> Tensor:
        """(…) foreground ratios → (…) long level indices."""
        return noise_level_index(ratio, self.bin_edges)

    def strength(self, ratio: Tensor | float | Sequence[float]) -> Tensor:
        """(…) foreground ratios → (…) float img2img strengths."""
        levels = self.level(ratio)
        return torch.tensor(self.strengths, dtype=torch.float32, device=levels.device)[levels]

    def genview_noise_level(self, ratio: Tensor | float | Sequence[float]) -> Tensor:
        """(…) ratios → GenView's unCLIP noise_level (0…400), for reference and logging."""
        levels = noise_level_index(ratio, GENVIEW_BIN_EDGES)
        return torch.tensor(GENVIEW_NOISE_LEVELS, device=levels.device)[levels]
