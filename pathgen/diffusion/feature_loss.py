"""A VAE loss in a frozen SSL encoder's embedding space: keep what the conditioning encoder sees.

Pixel, gradient and SSIM losses reward a reconstruction that is close in pixels; the latent diffusion
model downstream is conditioned on (and its views are judged by) an SSL encoder's embedding, which
pixel losses do not protect: the toy f4 VAE's reconstructions reached PSNR 23 dB while retrieving their
own source among 64 only about half of the time (docs/generation.md). The feature loss is the
perceptual-loss idea (Johnson et al., ECCV 2016; LPIPS, Zhang et al., CVPR 2018) with the pipeline's own
round-1 encoder in place of a downloaded ImageNet network, so training stays offline.

The distance is the one source retrieval scores (pathgen.generation_metrics.fidelity): both embeddings
are put on the unit sphere, the real tiles' mean unit embedding (`centre`) is subtracted and the rest is
normalised again, then the loss is 1 - cosine. A small SSL encoder's embeddings share one direction
(random tile pairs: cosine ~0.998), so the raw cosine is ~1 for any two tiles and gives no gradient
worth having; centring removes that shared direction.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pathgen.models.io import load_encoder
from pathgen.models.preprocess import resize_and_crop


def centred_unit(features: Tensor, centre: Tensor, eps: float = 1e-12) -> Tensor:
    """Rows on the unit sphere, minus `centre`, on the unit sphere again (as source retrieval scores them)."""
    return F.normalize(F.normalize(features, dim=-1, eps=eps) - centre, dim=-1, eps=eps)


def centred_cosine_distance(features: Tensor, targets: Tensor, centre: Tensor) -> Tensor:
    """Mean over rows of 1 - cosine(centred_unit(features), centred_unit(targets)); 0 for identical rows."""
    return (1.0 - (centred_unit(features, centre) * centred_unit(targets, centre)).sum(dim=-1)).mean()


class EncoderFeatureLoss(nn.Module):
    """Centred cosine distance between a frozen encoder's embeddings of reconstructions and of their inputs.

    Images are in the VAE's range [-1, 1]; they go through the encoder's own input contract (resize and
    crop to its input size, mean / std normalisation) with differentiable float ops, as `pathgen embed`
    prepares uint8 tiles. The encoder stays frozen and in eval mode whatever its parent does.
    """

    def __init__(self, encoder: nn.Module, encoder_config, centre: Tensor | None = None):  # noqa: ANN001
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.encoder_config = encoder_config
        mean = torch.tensor(encoder_config.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(encoder_config.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        dim = int(encoder_config.embed_dim)
        self.register_buffer("centre", torch.zeros(dim) if centre is None else centre.float().clone())

    @classmethod
    def from_folder(cls, model_dir: str | Path, device: str | torch.device = "cpu") -> EncoderFeatureLoss:
        """The loss for an SSL encoder folder (`pathgen train-ssl` <out>/model); centre set later."""
        encoder, config = load_encoder(model_dir, device)
        return cls(encoder, config).to(device)

    def train(self, mode: bool = True) -> EncoderFeatureLoss:
        """The encoder stays in eval mode (frozen BatchNorm / dropout) whatever its parent module does."""
        return super().train(False)

    def embed(self, images: Tensor) -> Tensor:
        """Embeddings (B, D) of (B, 3, H, W) images in [-1, 1], differentiable with respect to the images."""
        cfg = self.encoder_config
        images = resize_and_crop((images.float() + 1.0) / 2.0, cfg.input_size_px, cfg.interpolation, cfg.crop_pct)
        return self.encoder((images - self.mean) / self.std).float()

    @torch.no_grad()
    def set_centre(self, images: Tensor, batch_size: int = 64) -> None:
        """Centre = mean unit embedding of real images (B, 3, H, W) in [-1, 1] (fidelity.unit_centre)."""
        units = [F.normalize(self.embed(images[i : i + batch_size]), dim=-1) for i in range(0, len(images), batch_size)]
        self.centre.copy_(torch.cat(units).mean(dim=0))

    def forward(self, reconstruction: Tensor, target: Tensor) -> Tensor:
        """Centred cosine distance between the embeddings of `reconstruction` and (no gradient) `target`."""
        with torch.no_grad():
            target_features = self.embed(target)
        return centred_cosine_distance(self.embed(reconstruction), target_features, self.centre)
