"""`pathgen train-vae`: an AutoencoderKL learned from tile stores, exported with its latent scaling factor.

Losses (no discriminator, no pretrained network, so training works offline and from scratch):
pixel L1 (+ optional L2); an image-gradient term, the multi-scale gradient-difference loss of
Mathieu et al. (ICLR 2016), which penalises exactly what pixel losses let a VAE get away with —
blurred nuclear edges and flattened chromatin texture — at the cost of a few subtractions; an
optional SSIM term (Wang et al. 2004; L1 + SSIM as in Zhao et al., IEEE TCI 2017); an optional feature
term in a frozen SSL encoder's embedding space (`feature_weight`, `feature_encoder`: the round-1 encoder
that conditions the LDM, pathgen.diffusion.feature_loss); and a KL term.
The KL is normalised per pixel value, so `kl_weight` has the meaning of the LDM autoencoders'
1e-6, whose reconstruction loss is a per-pixel sum (Rombach et al. 2022, first-stage configs).

A run folder holds ``config.yaml`` (resolved), ``metrics.jsonl``, ``checkpoints/last.pt`` and at the
end ``model/`` (save_vae: weights + config.json with the scaling factor = 1 / std of the posterior
mode latents over up to `scaling_tiles` training tiles).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import nn

from pathgen.config import check, save_config
from pathgen.diffusion.feature_loss import EncoderFeatureLoss
from pathgen.diffusion.training_data import DiffusionTiles, evenly_spaced
from pathgen.diffusion.vae import VAEConfig, build_vae, save_vae
from pathgen.schedules import StepInfo
from pathgen.train import TrainConfig, Trainer

MODEL_DIR = "model"


@dataclass
class VAETrainLoop(TrainConfig):
    """TrainConfig with autoencoder defaults (LDM first stage: Adam betas (0.5, 0.9), lr 4.5e-6 per
    image = 1.15e-3 per 256 under linear scaling, no weight decay, no warm-up)."""

    epochs: float = 50.0
    batch_size: int = 16
    lr: float = 1.15e-3
    min_lr: float = 1e-6
    warmup_epochs: float = 0.0
    weight_decay: float = 0.0
    weight_decay_end: float = 0.0
    betas: tuple[float, float] = (0.5, 0.9)
    clip_grad: float | None = 1.0
    clip_mode: str = "global"
    checkpoint_every: int = 1000
    log_every: int = 10


@dataclass
class VAETrainConfig:
    """One VAE run: tiles, architecture, loss weights and optimisation."""

    PATH_KEYS: ClassVar[tuple[str, ...]] = ("data", "out", "feature_encoder")  # saved absolute (pathgen.config)

    data: list[str] = field(default_factory=list)  # `pathgen tile` output folders
    out: str = "runs/vae"
    image_size: int = 256  # tiles are resized (antialiased) to this when their size differs
    vae: VAEConfig = field(default_factory=VAEConfig)
    l1_weight: float = 1.0
    l2_weight: float = 0.0
    gradient_weight: float = 0.5  # multi-scale image-gradient L1 (the offline perceptual substitute)
    gradient_scales: int = 3  # full, 1/2 and 1/4 resolution
    ssim_weight: float = 0.0  # 1 - SSIM (11-px Gaussian window, sigma 1.5)
    kl_weight: float = 1e-6  # on the KL per pixel value (LDM's 1e-6 on a per-pixel-sum reconstruction loss)
    feature_weight: float = 0.0  # centred cosine distance in feature_encoder's embedding space
    feature_encoder: str = ""  # SSL encoder folder for the feature loss (gensis: round 1's encoder)
    feature_centre_tiles: int = 256  # training tiles whose mean unit embedding centres the feature loss
    scaling_tiles: int = 1024  # training tiles whose posterior-mode latents set the scaling factor
    min_tissue: float = 0.0
    flips: bool = True  # random rot90 / flips (the dihedral group)
    train: VAETrainLoop = field(default_factory=VAETrainLoop)

    def __post_init__(self) -> None:
        """Refuse a tile size the VAE cannot halve down to its latent grid (it failed mid-run)."""
        factor = 2 ** max(0, len(self.vae.block_out_channels) - 1)
        check(
            self.image_size >= factor and self.image_size % factor == 0,
            "image_size",
            f"{self.image_size} must be a positive multiple of the VAE's downsampling factor {factor} "
            "(2 ** (len(vae.block_out_channels) - 1))",
        )


def image_gradients(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical finite differences of (B, C, H, W) images."""
    return images[..., :, 1:] - images[..., :, :-1], images[..., 1:, :] - images[..., :-1, :]


def gradient_loss(reconstruction: torch.Tensor, target: torch.Tensor, scales: int = 3) -> torch.Tensor:
    """Mean L1 between the image gradients of two batches, averaged over `scales` dyadic resolutions."""
    total = reconstruction.new_zeros(())
    for scale in range(scales):
        if scale:
            reconstruction, target = F.avg_pool2d(reconstruction, 2), F.avg_pool2d(target, 2)
        for rec_d, tgt_d in zip(image_gradients(reconstruction), image_gradients(target)):
            total = total + (rec_d - tgt_d).abs().mean()
        if min(target.shape[-2:]) < 4:
            return total / (scale + 1)
    return total / max(scales, 1)


def ssim(
    x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5, data_range: float = 2.0
) -> torch.Tensor:
    """Mean structural similarity (Wang et al. 2004) of two (B, C, H, W) batches, Gaussian window, valid region."""
    window = min(window, *x.shape[-2:])
    coords = torch.arange(window, dtype=x.dtype, device=x.device) - (window - 1) / 2
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).view(1, 1, 1, -1).repeat(x.shape[1], 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(t, kernel, groups=t.shape[1])
        return F.conv2d(t, kernel.transpose(-1, -2), groups=t.shape[1])

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    return (((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))).mean()


class VAEObjective(nn.Module):
    """The Trainer's model: encode, sample the posterior, decode, and weigh the losses."""

    def __init__(self, vae: AutoencoderKL, cfg: VAETrainConfig, feature_loss: EncoderFeatureLoss | None = None):
        super().__init__()
        self.vae, self.cfg, self.feature_loss = vae, cfg, feature_loss
        if cfg.feature_weight and feature_loss is None:
            raise ValueError("feature_weight > 0 needs an EncoderFeatureLoss")

    def forward(self, batch: dict, info: StepInfo | None = None) -> dict[str, torch.Tensor]:
        """{"loss", "rec_l1", "rec_l2", "kl" (+ "grad", "ssim", "feature" when weighted)} for a batch
        {"image": (B, 3, S, S) in [-1, 1]}."""
        images, cfg = batch["image"], self.cfg
        posterior = self.vae.encode(images).latent_dist
        reconstruction = self.vae.decode(posterior.sample()).sample.float()
        images = images.float()
        rec_l1 = (reconstruction - images).abs().mean()
        rec_l2 = (reconstruction - images).pow(2).mean()
        kl = posterior.kl().float().mean()  # nats per sample (summed over latent values)
        loss = cfg.l1_weight * rec_l1 + cfg.l2_weight * rec_l2 + cfg.kl_weight * kl / images[0].numel()
        outputs = {"rec_l1": rec_l1, "rec_l2": rec_l2, "kl": kl}
        if cfg.gradient_weight:
            outputs["grad"] = gradient_loss(reconstruction, images, cfg.gradient_scales)
            loss = loss + cfg.gradient_weight * outputs["grad"]
        if cfg.ssim_weight:
            outputs["ssim"] = ssim(reconstruction, images)
            loss = loss + cfg.ssim_weight * (1 - outputs["ssim"])
        if cfg.feature_weight:
            outputs["feature"] = self.feature_loss(reconstruction, images)
            loss = loss + cfg.feature_weight * outputs["feature"]
        return {"loss": loss, **outputs}


def build_dataset(cfg: VAETrainConfig) -> DiffusionTiles:
    """The training tiles (flipped / rotated, resized to image_size)."""
    if not cfg.data:
        raise ValueError("no training data: give data=OUT (a `pathgen tile` output folder, or a list of them)")
    return DiffusionTiles(cfg.data, cfg.image_size, min_tissue=cfg.min_tissue, seed=cfg.train.seed, flips=cfg.flips)


@torch.no_grad()
def latent_std(
    vae: AutoencoderKL,
    dataset: DiffusionTiles,
    max_tiles: int = 1024,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
) -> tuple[float, int]:
    """Std of the posterior-mode latents over up to `max_tiles` evenly spaced tiles, and how many were used."""
    was_training = vae.training
    vae.eval()
    indices = evenly_spaced(len(dataset), max_tiles)
    dataset.set_epoch(0)
    total, total_sq, count = 0.0, 0.0, 0
    for start in range(0, len(indices), batch_size):
        images = torch.stack([dataset[int(i)]["image"] for i in indices[start : start + batch_size]]).to(device)
        latents = vae.encode(images.to(vae.dtype)).latent_dist.mode().double()
        total, total_sq, count = (
            total + latents.sum().item(),
            total_sq + latents.pow(2).sum().item(),
            count + latents.numel(),
        )
    vae.train(was_training)
    mean = total / count
    return float(np.sqrt(max(total_sq / count - mean**2, 1e-12))), len(indices)


def build_feature_loss(cfg: VAETrainConfig, dataset: DiffusionTiles) -> EncoderFeatureLoss | None:
    """The feature loss of `cfg.feature_encoder`, centred on up to `feature_centre_tiles` evenly spaced
    training tiles; None when feature_weight is 0."""
    if not cfg.feature_weight:
        return None
    if not cfg.feature_encoder:  # checked here, not in the config: `pathgen gensis` sets it from round 1
        raise ValueError(f"feature_weight {cfg.feature_weight} needs feature_encoder=MODEL (an SSL encoder folder)")
    loss = EncoderFeatureLoss.from_folder(cfg.feature_encoder)
    dataset.set_epoch(0)
    indices = evenly_spaced(len(dataset), cfg.feature_centre_tiles)
    loss.set_centre(torch.stack([dataset[int(i)]["image"] for i in indices]))
    return loss


def train_vae(cfg: VAETrainConfig, resume: bool = False) -> Path:
    """Train, checkpointing into `cfg.out`, then save the VAE and its scaling factor; returns the model folder."""
    run_dir = Path(cfg.out)
    dataset = build_dataset(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    torch.manual_seed(cfg.train.seed)
    objective = VAEObjective(build_vae(cfg.vae), cfg, build_feature_loss(cfg, dataset))
    trainer = Trainer(cfg.train, objective, dataset, run_dir)
    trainer.fit(resume=resume)
    if trainer.dist.is_main:
        std, n_tiles = latent_std(objective.vae, dataset, cfg.scaling_tiles, cfg.train.batch_size, trainer.dist.device)
        source = {
            "run": str(run_dir.resolve()),
            "step": trainer.step,
            "data": list(cfg.data),
            "latent_std": std,
            "scaling_tiles": n_tiles,
            "losses": _loss_weights(cfg),
        }
        save_vae(objective.vae, cfg.vae, 1.0 / std, run_dir / MODEL_DIR, source=source, image_size=cfg.image_size)
    trainer.dist.barrier()
    return run_dir / MODEL_DIR


def _loss_weights(cfg: VAETrainConfig) -> dict:
    names = ("l1_weight", "l2_weight", "gradient_weight", "gradient_scales", "ssim_weight", "kl_weight")
    names += ("feature_weight", "feature_encoder")
    return {name: value for name, value in asdict(cfg).items() if name in names}
