"""Foreground estimators for GenView: how much of a tile is foreground, and where.

GenView (Li et al., ECCV 2024; docs/methods/genview.md, adaptive noise) takes the top-1 PCA direction v of CLIP patch
tokens (eigh of the covariance of the centred tokens) but scores each token *uncentred*,
s_t = f_t·v. α is the left edge of the first of 200 histogram bins at which the CDF of all fitting
scores reaches 0.65 (so a little over 35 % of fitting tokens are foreground); a tile's foreground
ratio is r = #{t : s_t > α} / N. CLIP cannot be had offline and never saw pathology, so pathgen
offers two estimators (docs/methods/genview.md, "Adapting GenView to pathology"):

* `ForegroundPCA`, the default: the same recipe on the patch tokens of pathgen's own stage-1 SSL
  ViT. The eigenvector's sign is arbitrary; the rule used is saved as `sign_rule`. "hematoxylin"
  (`fit_encoder`, or `fit` given per-token hematoxylin): scores must correlate positively with
  each token's mean hematoxylin concentration, so foreground means nuclei-rich content.
  "minority" (bare tokens, or no hematoxylin anywhere): fewer than half of the tokens lie above
  the mean score, i.e. the smaller cluster is foreground, as objects are on ImageNet.
* `HematoxylinForeground`: the share of pixels whose hematoxylin concentration (colour
  deconvolution) exceeds a threshold. No model and no fit: the second, simpler choice.

Two small interfaces make them pluggable: `TileForeground.foreground_ratio(tiles)` on uint8 tiles
feeds the adaptive noise (`EncoderForeground` is the encoder + ForegroundPCA one), and
`TokenForeground.token_soft_map(tokens, rgb)` gives QualityWeighter its soft maps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from pathgen import __version__
from pathgen.data.augment import rgb_to_hed
from pathgen.models.io import load_encoder

FOREGROUND_CDF = 0.65  # GenView: α at the first histogram bin whose CDF reaches 0.65
HISTOGRAM_BINS = 200
MINMAX_EPS = 1e-7  # GenView's epsilon in min-max and sum normalisation
HEMATOXYLIN_OD = 0.5  # natural-log OD; nuclei ≈ 0.5–2, pale purple ≈ 0.3, eosin / glass < 0.1
PCA_WEIGHTS = "foreground_pca.safetensors"
PCA_CONFIG = "foreground_pca.json"


class TileForeground(Protocol):
    """Tile-level estimator: (B, 3, H, W) uint8 tiles → (B,) foreground ratio in [0, 1]."""

    def foreground_ratio(self, tiles: Tensor) -> Tensor: ...


class TokenForeground(Protocol):
    """Soft foreground map per token: tokens (B, N, C) and the RGB views in [0, 1] → (B, N) in [0, 1]."""

    def token_soft_map(self, tokens: Tensor, rgb: Tensor) -> Tensor: ...


def minmax_per_image(values: Tensor) -> Tensor:
    """(B, N) → (B, N) in [0, 1]: (v − min) / (max − min + 1e-7) within each image (GenView)."""
    low, high = values.amin(-1, keepdim=True), values.amax(-1, keepdim=True)
    return (values - low) / (high - low + MINMAX_EPS)


@torch.no_grad()
def patch_tokens(model: nn.Module, images: Tensor) -> Tensor:
    """(B, N, C) fp32 patch tokens of a timm model: ViT `forward_features` without its prefix tokens
    (`num_prefix_tokens`: class and register tokens), or a CNN's (B, C, h, w) map flattened."""
    features = model.forward_features(images)
    if features.ndim == 4:
        return features.flatten(2).transpose(1, 2).float()
    return features[:, getattr(model, "num_prefix_tokens", 0) :].float()


def tiles_to_rgb(tiles: Tensor) -> Tensor:
    """(B, 3, H, W) uint8 tiles, or floats already in [0, 1], as float RGB in [0, 1]."""
    if tiles.ndim != 4 or tiles.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) RGB tiles, got shape {tuple(tiles.shape)}")
    return tiles.float() / 255.0 if tiles.dtype == torch.uint8 else tiles.float()


def encoder_tokens(model: nn.Module, tiles: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Patch tokens of uint8 tiles, normalised with the encoder's own mean / std, on its device."""
    device = next(model.parameters()).device
    rgb = tiles_to_rgb(tiles).to(device)
    mean_t, std_t = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in (mean, std))
    return patch_tokens(model, (rgb - mean_t) / std_t)


def square_grid(n_tokens: int) -> int:
    """The side of a square token grid of n_tokens (pathgen tiles and views are square)."""
    side = math.isqrt(n_tokens)
    if side * side != n_tokens:
        raise ValueError(f"{n_tokens} tokens do not form a square grid; pass square tiles / views")
    return side


def histogram_threshold(scores: Tensor, foreground_cdf: float = FOREGROUND_CDF, bins: int = HISTOGRAM_BINS) -> float:
    """GenView's α: left edge of the first of `bins` histogram bins at which the CDF reaches foreground_cdf."""
    if not 0.0 < foreground_cdf < 1.0:
        raise ValueError(f"foreground_cdf must be in (0, 1), got {foreground_cdf}")
    counts, edges = np.histogram(scores.double().cpu().numpy(), bins=bins)
    cdf = np.cumsum(counts) / counts.sum()
    return float(edges[int(np.argmax(cdf >= foreground_cdf))])


class _Moments:
    """Float64 running sums of tokens f and token hematoxylin h, for cov(f) and cov(f, h)."""

    def __init__(self) -> None:
        self.n, self.sum_f, self.sum_ff, self.sum_fh, self.sum_h = 0, 0.0, 0.0, None, 0.0

    def add(self, tokens: Tensor, hematoxylin: Tensor | None) -> None:
        f = tokens.reshape(-1, tokens.shape[-1]).double().cpu()
        self.n, self.sum_f, self.sum_ff = self.n + f.shape[0], self.sum_f + f.sum(0), self.sum_ff + f.T @ f
        if hematoxylin is not None:
            h = hematoxylin.reshape(-1).double().cpu()
            if h.shape[0] != f.shape[0]:
                raise ValueError(f"{h.shape[0]} hematoxylin values for {f.shape[0]} tokens; give one per token")
            self.sum_fh = f.T @ h + (0.0 if self.sum_fh is None else self.sum_fh)
            self.sum_h += float(h.sum())

    def mean(self) -> Tensor:
        return self.sum_f / self.n

    def top_direction(self) -> Tensor:
        """Top-1 eigenvector of the (n − 1)-normalised covariance (torch.linalg.eigh, ascending)."""
        if self.n < 2:
            raise ValueError(f"ForegroundPCA needs at least 2 tokens to fit, got {self.n}")
        mean = self.mean()
        covariance = (self.sum_ff - self.n * torch.outer(mean, mean)) / (self.n - 1)
        return torch.linalg.eigh(covariance).eigenvectors[:, -1]

    def hematoxylin_covariance(self, vector: Tensor) -> float | None:
        """cov(f·v, h), or None when no hematoxylin was given."""
        if self.sum_fh is None:
            return None
        return float(vector @ (self.sum_fh - self.mean() * self.sum_h)) / (self.n - 1)


class ForegroundPCA:
    """GenView's foreground direction: top PCA vector, its sign rule and the threshold α.

    Args:
        vector: (C,) unit direction v, oriented so foreground scores high.
        mean: (C,) token mean of the fitting set (kept for reference, as GenView does; the
            score s_t = f_t·v does not subtract it).
        threshold: α; a token is foreground when s_t > α.
        sign_rule: How v was oriented: "hematoxylin", "minority" or "given".
        foreground_cdf: The CDF level α was taken at.
        n_tokens: Number of tokens fitted.
    """

    def __init__(
        self,
        vector: Tensor,
        mean: Tensor,
        threshold: float,
        sign_rule: str = "given",
        foreground_cdf: float = FOREGROUND_CDF,
        n_tokens: int = 0,
    ):
        if vector.ndim != 1 or mean.shape != vector.shape:
            raise ValueError(f"vector and mean must both be (C,), got {tuple(vector.shape)} and {tuple(mean.shape)}")
        self.vector, self.mean = vector.float(), mean.float()
        self.threshold, self.sign_rule = float(threshold), sign_rule
        self.foreground_cdf, self.n_tokens = foreground_cdf, n_tokens

    @classmethod
    def fit(
        cls,
        tokens: Tensor,
        token_hematoxylin: Tensor | None = None,
        foreground_cdf: float = FOREGROUND_CDF,
        bins: int = HISTOGRAM_BINS,
    ) -> ForegroundPCA:
        """Fit on tokens (…, C) held in memory; `token_hematoxylin` (…,) orients v (else the minority rule)."""
        moments = _Moments()
        moments.add(tokens, token_hematoxylin)
        vector = moments.top_direction()
        return cls._oriented(
            moments, vector, tokens.reshape(-1, tokens.shape[-1]).double().cpu() @ vector, foreground_cdf, bins
        )

    @classmethod
    def fit_encoder(
        cls,
        model: nn.Module,
        tile_batches: Iterable[Tensor],
        mean: Sequence[float],
        std: Sequence[float],
        hematoxylin: HematoxylinForeground | None = None,
        foreground_cdf: float = FOREGROUND_CDF,
        bins: int = HISTOGRAM_BINS,
    ) -> ForegroundPCA:
        """Fit on the patch tokens of a frozen encoder (put in eval mode) over (B, 3, H, W) uint8 tiles.

        Streams: pass 1 sums the token moments (float64), pass 2 keeps only the scores for the
        histogram, so `tile_batches` must be re-iterable (a list, a DataLoader), never a generator.
        Each token's hematoxylin is the mean concentration over its image cell, which orients v.
        `mean` / `std` are the encoder's input normalisation (its EncoderConfig).
        """
        hematoxylin, moments = hematoxylin or HematoxylinForeground(), _Moments()
        model.eval()
        for tiles in tile_batches:
            tokens = encoder_tokens(model, tiles, mean, std)
            moments.add(tokens, hematoxylin.token_concentration(tiles, tokens.shape[1]))
        vector = moments.top_direction()
        scores = [encoder_tokens(model, tiles, mean, std).double().cpu() @ vector for tiles in tile_batches]
        scores = torch.cat([s.reshape(-1) for s in scores]) if scores else torch.empty(0, dtype=torch.float64)
        if scores.numel() != moments.n:
            raise ValueError(
                f"tile_batches gave {moments.n} tokens on the first pass and {scores.numel()} on the "
                "second; pass a re-iterable (a list or a DataLoader), not a generator"
            )
        return cls._oriented(moments, vector, scores, foreground_cdf, bins)

    @classmethod
    def _oriented(
        cls, moments: _Moments, vector: Tensor, scores: Tensor, foreground_cdf: float, bins: int
    ) -> ForegroundPCA:
        covariance = moments.hematoxylin_covariance(vector)
        if covariance:  # neither None nor exactly 0 (no hematoxylin anywhere)
            sign, rule = (1.0 if covariance > 0 else -1.0), "hematoxylin"
        else:
            sign, rule = (1.0 if (scores > scores.mean()).double().mean() <= 0.5 else -1.0), "minority"
        threshold = histogram_threshold(sign * scores, foreground_cdf, bins)
        return cls(sign * vector, moments.mean(), threshold, rule, foreground_cdf, moments.n)

    def project(self, tokens: Tensor) -> Tensor:
        """Uncentred scores s_t = f_t·v: (…, N, C) → (…, N)."""
        return tokens.float() @ self.vector.to(tokens.device)

    def foreground_ratio(self, tokens: Tensor) -> Tensor:
        """(B, N, C) → (B,) share of tokens with s_t > α."""
        return (self.project(tokens) > self.threshold).float().mean(-1)

    def soft_foreground(self, tokens: Tensor) -> Tensor:
        """(B, N, C) → (B, N) min-max normalised scores within each image (GenView's soft map)."""
        return minmax_per_image(self.project(tokens))

    def token_soft_map(self, tokens: Tensor, rgb: Tensor) -> Tensor:
        """TokenForeground: the soft map from the tokens themselves (`rgb` unused)."""
        return self.soft_foreground(tokens)

    def save(self, out_dir: str | Path) -> Path:
        """Write foreground_pca.safetensors (vector, mean) and foreground_pca.json into out_dir."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({"vector": self.vector.contiguous(), "mean": self.mean.contiguous()}, str(out_dir / PCA_WEIGHTS))
        config = {
            "threshold": self.threshold,
            "sign_rule": self.sign_rule,
            "foreground_cdf": self.foreground_cdf,
            "n_tokens": self.n_tokens,
            "dim": int(self.vector.numel()),
            "pathgen_version": __version__,
        }
        (out_dir / PCA_CONFIG).write_text(json.dumps(config, indent=2))
        return out_dir

    @classmethod
    def load(cls, model_dir: str | Path) -> ForegroundPCA:
        """The ForegroundPCA saved in model_dir (often the encoder's own model folder)."""
        model_dir = Path(model_dir)
        try:
            config = json.loads((model_dir / PCA_CONFIG).read_text())
            tensors = load_file(str(model_dir / PCA_WEIGHTS))
            return cls(
                tensors["vector"],
                tensors["mean"],
                config["threshold"],
                config["sign_rule"],
                config["foreground_cdf"],
                config["n_tokens"],
            )
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(
                f"{model_dir}: no readable foreground PCA ({err}); fit one with "
                "ForegroundPCA.fit_encoder and save it there"
            ) from err


@dataclass(frozen=True)
class HematoxylinForeground:
    """Foreground = hematoxylin-rich (nuclei) pixels, by Ruifrok–Johnston colour deconvolution.

    Args:
        threshold_od: Hematoxylin concentration (natural-log optical density, as
            pathgen.data.augment.rgb_to_hed) above which a pixel counts as foreground.
    """

    threshold_od: float = HEMATOXYLIN_OD

    def concentration(self, tiles: Tensor) -> Tensor:
        """(B, 3, H, W) uint8 tiles (or RGB in [0, 1]) → (B, H, W) hematoxylin concentration."""
        rgb = tiles_to_rgb(tiles)
        batch, _, height, width = rgb.shape
        stacked = rgb.transpose(0, 1).reshape(3, batch * height, width)  # one (3, B·H, W) image
        return rgb_to_hed(stacked)[0].reshape(batch, height, width)

    def foreground_ratio(self, tiles: Tensor) -> Tensor:
        """TileForeground: (B,) share of pixels with hematoxylin above the threshold."""
        return (self.concentration(tiles) > self.threshold_od).float().mean((1, 2))

    def soft_foreground(self, tiles: Tensor, grid: int) -> Tensor:
        """(B, grid²) share of foreground pixels in each cell of a grid × grid token grid (average pooling)."""
        mask = (self.concentration(tiles) > self.threshold_od).float()[:, None]
        return F.adaptive_avg_pool2d(mask, grid).flatten(1)

    def token_concentration(self, tiles: Tensor, n_tokens: int) -> Tensor:
        """(B, N) mean hematoxylin concentration in each cell of a square grid of N tokens."""
        return F.adaptive_avg_pool2d(self.concentration(tiles)[:, None], square_grid(n_tokens)).flatten(1)

    def token_soft_map(self, tokens: Tensor, rgb: Tensor) -> Tensor:
        """TokenForeground: the pooled pixel mask of the views on the tokens' square grid."""
        return self.soft_foreground(rgb, square_grid(tokens.shape[1])).to(tokens.device)


class EncoderForeground:
    """TileForeground from a frozen encoder and its ForegroundPCA: the default estimator.

    Args:
        model: Frozen timm encoder (eval mode) whose tokens the PCA was fitted on.
        pca: Its ForegroundPCA.
        mean, std: The encoder's input normalisation.
    """

    def __init__(self, model: nn.Module, pca: ForegroundPCA, mean: Sequence[float], std: Sequence[float]):
        self.model, self.pca, self.mean, self.std = model.eval().requires_grad_(False), pca, mean, std

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, device: str | torch.device = "cpu") -> EncoderForeground:
        """The encoder saved in model_dir and the ForegroundPCA saved beside it."""
        model, config = load_encoder(model_dir, device)
        return cls(model, ForegroundPCA.load(model_dir), config.mean, config.std)

    def foreground_ratio(self, tiles: Tensor) -> Tensor:
        """(B, 3, H, W) uint8 tiles → (B,) share of patch tokens above α (on the encoder's device)."""
        return self.pca.foreground_ratio(encoder_tokens(self.model, tiles, self.mean, self.std))
