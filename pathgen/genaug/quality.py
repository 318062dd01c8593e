"""GenView's quality-driven contrastive loss: weigh each positive pair by its view quality.

Li et al., "GenView", ECCV 2024 (docs/methods/genview.md, quality-weighted loss; genview
mmpretrain/models/selfsup/mocov3.py).
For each view, a frozen scorer gives patch tokens T (N, C) and a soft foreground map m (N,) in
[0, 1] (GenView: the min-max normalised PCA projection of the tokens). Then

    a_fg = m / (Σ m + ε),  a_bg = (1 − m) / (Σ (1 − m) + ε),  ε = 1e-7
    z_fg = Σ_t a_fg,t T_t,  z_bg = Σ_t a_bg,t T_t
    q_i = cos(z_fg¹, z_fg²) − cos(z_bg¹, z_bg²)
    w = B · softmax(γ q) over the local batch (mean 1), detached, γ = 1 by default

so a pair whose foregrounds agree and whose backgrounds differ counts more. The SSL loss averages
w_i·ℓ_i (pathgen.ssl.losses.weighting), the same w in both symmetric terms.

Scorer and normalisation. GenView's scorer is a frozen OpenCLIP ConvNeXt that sees the augmented
training views themselves, and its SSL views are normalised with CLIP's mean / std, so the scorer
gets exactly the backbone's input. In pathgen the scorer is a saved pathgen encoder (default: the
stage-1 SSL ViT with its ForegroundPCA), and the views are normalised with the SSL recipe's
mean / std. When those differ from the scorer's EncoderConfig, each view is mapped back to RGB
(x·σ_view + μ_view) and renormalised with the scorer's statistics, an exact per-channel affine
map; equal statistics pass the views through untouched. The RGB views, clamped to [0, 1], also
feed soft maps that need pixels (HematoxylinForeground).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pathgen.data.augment import IMAGENET_MEAN, IMAGENET_STD
from pathgen.genaug.foreground import ForegroundPCA, TokenForeground, patch_tokens
from pathgen.models.io import load_encoder

EPS = 1e-7  # GenView's epsilon in the sum normalisation of the soft maps


def pool_foreground_background(tokens: Tensor, soft_map: Tensor) -> tuple[Tensor, Tensor]:
    """(B, N, C) tokens and (B, N) soft map in [0, 1] → (B, C) foreground and background features."""
    foreground, background = soft_map.float(), 1.0 - soft_map.float()
    a_fg = foreground / (foreground.sum(-1, keepdim=True) + EPS)
    a_bg = background / (background.sum(-1, keepdim=True) + EPS)
    tokens = tokens.float()
    return torch.einsum("bn,bnc->bc", a_fg, tokens), torch.einsum("bn,bnc->bc", a_bg, tokens)


def cosine(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine similarity as GenView computes it: Σ normalize(a)·normalize(b)."""
    return (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1)


def pair_quality(tokens_1: Tensor, tokens_2: Tensor, map_1: Tensor, map_2: Tensor) -> Tensor:
    """(B,) q = s_fg − s_bg for the two views of each sample (tokens (B, N, C), maps (B, N))."""
    fg_1, bg_1 = pool_foreground_background(tokens_1, map_1)
    fg_2, bg_2 = pool_foreground_background(tokens_2, map_2)
    return cosine(fg_1, fg_2) - cosine(bg_1, bg_2)


def quality_weights(quality: Tensor, gamma: float = 1.0) -> Tensor:
    """(B,) w = B · softmax(γ q): positive, summing to B (mean 1), all 1 when every q is equal; detached."""
    quality = quality.detach().float()
    return quality.shape[0] * torch.softmax(gamma * quality, dim=0)


class QualityWeighter:
    """GenView pair weights from a frozen scorer: a plain callable for `SSLMethod.pair_weighter`.

    Deliberately not an nn.Module, so the scorer never joins the SSL method's state dict, optimizer
    groups, train() / eval() switches or DDP; it follows the views to their device on first use.

    Args:
        scorer: Frozen timm encoder giving patch tokens (a ViT; a CNN's feature map works too).
        foreground: Soft-map source, TokenForeground (the scorer's ForegroundPCA by default).
        gamma: γ, the inverse temperature of the softmax (GenView 1).
        view_mean, view_std: Normalisation of the SSL views (the recipe's ViewSpec mean / std).
        scorer_mean, scorer_std: The scorer's input normalisation (default: the views').
    """

    def __init__(
        self,
        scorer: nn.Module,
        foreground: TokenForeground,
        gamma: float = 1.0,
        view_mean: Sequence[float] = IMAGENET_MEAN,
        view_std: Sequence[float] = IMAGENET_STD,
        scorer_mean: Sequence[float] | None = None,
        scorer_std: Sequence[float] | None = None,
    ):
        self.scorer = scorer.eval().requires_grad_(False)
        self.foreground, self.gamma = foreground, gamma
        self.view_mean, self.view_std = (
            torch.tensor(view_mean).view(1, 3, 1, 1),
            torch.tensor(view_std).view(1, 3, 1, 1),
        )
        self.scorer_mean = self.view_mean if scorer_mean is None else torch.tensor(scorer_mean).view(1, 3, 1, 1)
        self.scorer_std = self.view_std if scorer_std is None else torch.tensor(scorer_std).view(1, 3, 1, 1)
        self.same_normalisation = torch.equal(self.scorer_mean, self.view_mean) and torch.equal(
            self.scorer_std, self.view_std
        )

    @classmethod
    def from_model_dir(
        cls,
        model_dir: str | Path,
        view_mean: Sequence[float] = IMAGENET_MEAN,
        view_std: Sequence[float] = IMAGENET_STD,
        gamma: float = 1.0,
        foreground: TokenForeground | None = None,
        device: str | torch.device = "cpu",
    ) -> QualityWeighter:
        """The encoder saved in model_dir as scorer, with its ForegroundPCA unless `foreground` is given."""
        scorer, config = load_encoder(model_dir, device)
        foreground = foreground if foreground is not None else ForegroundPCA.load(model_dir)
        return cls(scorer, foreground, gamma, view_mean, view_std, config.mean, config.std)

    def _tokens_and_map(self, view: Tensor) -> tuple[Tensor, Tensor]:
        """Scorer tokens (B, N, C) and soft foreground map (B, N) of one batch of normalised views."""
        device = view.device
        if next(self.scorer.parameters()).device != device:
            self.scorer.to(device)
        view = view.float()
        rgb = view * self.view_std.to(device) + self.view_mean.to(device)
        scorer_input = (
            view if self.same_normalisation else ((rgb - self.scorer_mean.to(device)) / self.scorer_std.to(device))
        )
        tokens = patch_tokens(self.scorer, scorer_input)  # under the caller's autocast, like GenView
        with torch.autocast(device_type=device.type, enabled=False):
            return tokens, self.foreground.token_soft_map(tokens, rgb.clamp(0.0, 1.0)).float()

    @torch.no_grad()
    def scores(self, view_1: Tensor, view_2: Tensor) -> Tensor:
        """(B,) quality q = s_fg − s_bg of each pair of views (B, 3, H, W)."""
        tokens_1, map_1 = self._tokens_and_map(view_1)
        tokens_2, map_2 = self._tokens_and_map(view_2)
        with torch.autocast(device_type=view_1.device.type, enabled=False):
            return pair_quality(tokens_1, tokens_2, map_1, map_2)

    @torch.no_grad()
    def weights(self, view_1: Tensor, view_2: Tensor) -> Tensor:
        """(B,) detached loss weights B·softmax(γ q) for the pairs (view_1[i], view_2[i])."""
        return quality_weights(self.scores(view_1, view_2), self.gamma)

    def __call__(self, views: list[Tensor]) -> Tensor:
        """SSLMethod.pair_weighter: weights of the first two (global) views."""
        if len(views) < 2:
            raise ValueError(f"QualityWeighter needs two views per sample, got {len(views)}")
        return self.weights(views[0], views[1])
