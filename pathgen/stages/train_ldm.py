"""`pathgen train-ldm`: an SSL-embedding-conditioned latent diffusion model learned from tile stores.

The objective is Large-Image-Diffusion's (Graikos et al., CVPR 2024): tiles are encoded to latents
by a frozen VAE, conditioned on the frozen SSL encoder's L2-normalised embedding (read from
`pathgen embed` output, or computed on the fly from the batch's tile), the conditioning is dropped
to the null context with probability p_uncond, and the denoiser regresses the noise added at a
uniform timestep (MSE on eps; optionally weighted per timestep by Min-SNR-γ, Hang et al., "Efficient
Diffusion Training via Min-SNR Weighting Strategy", ICCV 2023: eps-prediction losses times
min(SNR(t), γ) / SNR(t), which stops the low-noise steps, where the conditioning barely matters, from
dominating the gradient). The optimiser follows LID (AdamW, lr 1e-4, no decay, linear warm-up
then constant); an EMA of the denoiser with LitEma's warm-up is what gets exported (ZoomLDM).

A run folder holds ``config.yaml``, ``metrics.jsonl``, ``checkpoints/last.pt`` (which includes the
EMA and, for simplicity of exact resume, the frozen VAE and encoder weights) and, at the end,
``model/`` (`pathgen.diffusion.ldm_io.save_ldm`: EMA denoiser + VAE and encoder copies).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import torch
from diffusers import DDPMScheduler
from torch import Tensor, nn

from pathgen.config import save_config
from pathgen.diffusion.first_stage_cache import FirstStageCache
from pathgen.diffusion.ldm import EMA, ConditionedDenoiser, LDMConfig, prediction_target, scheduler_kwargs
from pathgen.diffusion.ldm_io import save_ldm
from pathgen.diffusion.training_data import DiffusionTiles, evenly_spaced
from pathgen.diffusion.vae import LatentCodec, load_codec
from pathgen.models.embeddings import preprocess
from pathgen.models.io import EncoderConfig, load_encoder
from pathgen.schedules import StepInfo
from pathgen.train import TrainConfig, Trainer

MODEL_DIR = "model"


@dataclass
class LDMOptimConfig(TrainConfig):
    """TrainConfig with Large-Image-Diffusion's optimisation defaults (AdamW 1e-4, warm-up then constant)."""

    batch_size: int = 64
    lr: float = 1e-4
    lr_scaling: str = "none"
    lr_schedule: str = "constant"  # constant (LID: warm-up then constant) | cosine (down to min_lr)
    warmup_steps: int | None = 1000  # when set, replaces warmup_epochs
    warmup_epochs: float = 0.0
    weight_decay: float = 0.0
    weight_decay_end: float = 0.0
    clip_grad: float | None = 1.0
    clip_mode: str = "global"


@dataclass
class LDMTrainConfig:
    """One LDM run: tiles, the frozen VAE and SSL encoder, the denoiser and optimisation."""

    PATH_KEYS: ClassVar[tuple[str, ...]] = ("data", "out", "encoder", "vae")  # saved absolute (pathgen.config)

    data: list[str] = field(default_factory=list)  # `pathgen tile` output folders
    out: str = "runs/ldm"
    encoder: str = ""  # SSL encoder model folder (`pathgen train-ssl` <out>/model): the conditioning
    vae: str = ""  # VAE folder (`pathgen train-vae` <out>/model, or a local diffusers AutoencoderKL)
    embeddings_name: str | None = None  # read `pathgen embed` output of this name; None: embed on the fly
    image_size: int = 256  # pixels per generated tile (tiles are resized to it)
    min_tissue: float = 0.0
    sample_posterior: bool = True  # latents drawn from the VAE posterior (CompVis) rather than its mode
    statistics_tiles: int = 4096  # ldm.standardize_embeddings: tiles (evenly spaced) the mean and std come from
    min_snr_gamma: float | None = None  # Min-SNR-γ loss weights (Hang et al. 2023 use 5); None: plain MSE (LID)
    # keep each training image's VAE posterior and embedding after its first pass (small tile sets: memory grows
    # with tiles × 8 rotations; pathgen.diffusion.first_stage_cache); training is unchanged
    cache_first_stage: bool = False
    ldm: LDMConfig = field(default_factory=LDMConfig)
    train: LDMOptimConfig = field(default_factory=LDMOptimConfig)


def min_snr_weights(alphas_cumprod: Tensor, timesteps: Tensor, gamma: float) -> Tensor:
    """Min-SNR-γ weights of eps-prediction losses at `timesteps`: min(SNR, γ) / SNR, SNR = ᾱ_t / (1 − ᾱ_t)."""
    alpha_bar = alphas_cumprod.to(timesteps.device)[timesteps].double()
    snr = alpha_bar / (1.0 - alpha_bar)
    return (snr.clamp(max=gamma) / snr).float()


class LDMObjective(nn.Module):
    """The trainable denoiser (+ its EMA) beside the frozen codec and encoder; forward gives the MSE loss on the
    prediction target (eps, v or x0)."""

    def __init__(
        self,
        denoiser: ConditionedDenoiser,
        codec: LatentCodec,
        encoder: nn.Module | None,
        encoder_config: EncoderConfig,
        sample_posterior: bool = True,
        min_snr_gamma: float | None = None,
        cache_first_stage: bool = False,
    ):
        super().__init__()
        cfg = denoiser.cfg
        self.denoiser, self.codec, self.encoder = denoiser, codec.requires_grad_(False), encoder
        if encoder is not None:
            encoder.requires_grad_(False).eval()
        self.encoder_config, self.sample_posterior = encoder_config, sample_posterior
        self.ema = EMA(denoiser, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.scheduler = DDPMScheduler(**scheduler_kwargs(cfg))
        self.p_uncond = cfg.p_uncond
        if min_snr_gamma is not None and (min_snr_gamma <= 0 or cfg.prediction_type != "epsilon"):
            raise ValueError(f"min_snr_gamma {min_snr_gamma} needs a positive γ and ldm.prediction_type epsilon")
        self.min_snr_gamma = min_snr_gamma
        self.first_stage = FirstStageCache(codec, self.embed) if cache_first_stage else None

    def param_groups(self) -> list[dict]:
        """Only the denoiser trains: matrices with weight decay, 1-D tensors without."""
        params = [p for p in self.denoiser.parameters() if p.requires_grad]
        return [
            {"params": [p for p in params if p.ndim > 1]},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]

    def train(self, mode: bool = True) -> LDMObjective:
        """Train mode for the denoiser only; the codec, encoder and EMA stay in eval mode."""
        super().train(mode)
        for frozen in (self.codec, self.encoder, self.ema):
            if frozen is not None:
                frozen.eval()
        return self

    @torch.no_grad()
    def embed(self, tiles_u8: Tensor) -> Tensor:
        """The frozen encoder's embedding of uint8 (B, 3, H, W) tiles (as `pathgen embed` computes it)."""
        if self.encoder is None:
            raise ValueError("no encoder to embed tiles on the fly; the batch must carry 'embedding'")
        return self.encoder(preprocess(tiles_u8, self.encoder_config)).float()

    def forward(self, batch: dict[str, Tensor], info: StepInfo | None = None) -> dict[str, Tensor]:
        """One LID step: latents, conditioning dropped with p_uncond, noise at uniform t, MSE on the target."""
        if self.first_stage is not None and "pixels_key" in batch:
            mean, std, embeddings = self.first_stage.lookup(batch)
            latents = self.codec.scaled_latents(mean, std, sample=self.sample_posterior).float()
        else:
            latents = self.codec.encode(batch["image"], sample=self.sample_posterior).float()
            embeddings = batch["embedding"] if "embedding" in batch else self.embed(batch["tile_u8"])
        n = len(latents)
        drop = torch.rand(n, device=latents.device) < self.p_uncond
        context = self.denoiser.context(embeddings.float(), drop)
        # drawn by shape, not randn_like: the VAE's latents may come channels-last, and the draws must not
        # depend on their memory layout (cached latents are contiguous)
        noise = torch.randn(latents.shape, device=latents.device, dtype=latents.dtype)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (n,), device=latents.device)
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        prediction = self.denoiser(noisy, timesteps, context)
        target = prediction_target(self.scheduler, latents, noise, timesteps)
        squared = (prediction.float() - target).pow(2).mean(dim=(1, 2, 3))
        loss = (squared * self.loss_weights(timesteps)).mean()
        return {"loss": loss, "uncond_fraction": drop.float().mean()}

    def loss_weights(self, timesteps: Tensor) -> Tensor:
        """Per-sample loss weights: 1, or Min-SNR-γ's (min_snr_weights)."""
        if self.min_snr_gamma is None:
            return torch.ones(len(timesteps), device=timesteps.device)
        return min_snr_weights(self.scheduler.alphas_cumprod, timesteps, self.min_snr_gamma)

    def after_step(self, info: StepInfo) -> None:
        """Update the EMA of the denoiser after each optimizer step."""
        if self.ema is not None:
            self.ema.update(self.denoiser)

    def export_denoiser(self) -> ConditionedDenoiser:
        """The weights to sample with: the EMA copy when there is one."""
        return self.ema.shadow if self.ema is not None else self.denoiser


def build_objective(cfg: LDMTrainConfig, device: str | torch.device = "cpu") -> LDMObjective:
    """Frozen codec and encoder from their folders, a fresh denoiser (seeded by train.seed) around them."""
    if not cfg.vae or not cfg.encoder:
        raise ValueError("give vae=VAE_FOLDER and encoder=ENCODER_FOLDER (the frozen first stage and conditioning)")
    codec = load_codec(cfg.vae, device)
    encoder, encoder_config = load_encoder(cfg.encoder, device)
    factor = codec.downsample_factor
    if cfg.image_size % factor:
        raise ValueError(f"image_size {cfg.image_size} is not a multiple of the VAE's downsampling factor {factor}")
    torch.manual_seed(cfg.train.seed)
    denoiser = ConditionedDenoiser(cfg.ldm, encoder_config.embed_dim, codec.latent_channels, cfg.image_size // factor)
    keep_encoder = encoder if cfg.embeddings_name is None else None
    return LDMObjective(
        denoiser,
        codec,
        keep_encoder,
        encoder_config,
        cfg.sample_posterior,
        cfg.min_snr_gamma,
        cfg.cache_first_stage,
    )


def build_dataset(cfg: LDMTrainConfig, embed_dim: int) -> DiffusionTiles:
    """The training tiles (h/v flips and rot90), with `pathgen embed` rows when embeddings_name is set."""
    if not cfg.data:
        raise ValueError("no training data: give data=OUT (a `pathgen tile` output folder, or a list of them)")
    dataset = DiffusionTiles(
        cfg.data, cfg.image_size, cfg.min_tissue, seed=cfg.train.seed, embeddings_name=cfg.embeddings_name
    )
    if cfg.embeddings_name is not None and len(dataset) and dataset.embedding(0).shape[0] != embed_dim:
        raise ValueError(
            f"embeddings {cfg.embeddings_name!r} are {dataset.embedding(0).shape[0]}-d but the encoder "
            f"{cfg.encoder} gives {embed_dim}-d; embed the tiles with that encoder"
        )
    return dataset


@torch.no_grad()
def training_embeddings(
    objective: LDMObjective, dataset: DiffusionTiles, max_tiles: int, batch_size: int = 64
) -> Tensor:
    """(N, D) embeddings of up to `max_tiles` evenly spaced training tiles, as the denoiser will see them."""
    if len(dataset) < 2:
        raise ValueError(f"embedding statistics need at least 2 training tiles, got {len(dataset)}")
    indices = evenly_spaced(len(dataset), max_tiles)
    rows = []
    for start in range(0, len(indices), batch_size):
        items = [dataset[int(i)] for i in indices[start : start + batch_size]]
        if "embedding" in items[0]:
            rows.append(torch.stack([item["embedding"] for item in items]).float())
        else:
            rows.append(objective.embed(torch.stack([item["tile_u8"] for item in items])).cpu())
    return torch.cat(rows)


def set_embedding_statistics(objective: LDMObjective, embeddings: Tensor) -> None:
    """Standardise the conditioning of the denoiser (and of its EMA copy) with these training embeddings."""
    objective.denoiser.conditioner.set_statistics(embeddings)
    if objective.ema is not None:
        objective.ema.shadow.conditioner.set_statistics(embeddings)


def resolve_schedule(train: LDMOptimConfig, steps_per_epoch: int) -> LDMOptimConfig:
    """The Trainer's view of the LR schedule: warm-up in epochs, and min_lr = lr for a constant schedule."""
    if train.lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"train.lr_schedule must be constant or cosine, got {train.lr_schedule!r}")
    warmup = train.warmup_epochs if train.warmup_steps is None else train.warmup_steps / steps_per_epoch
    return replace(train, warmup_epochs=warmup, min_lr=train.lr if train.lr_schedule == "constant" else train.min_lr)


def train_ldm(cfg: LDMTrainConfig, resume: bool = False) -> Path:
    """Train, checkpointing into `cfg.out`, then save the EMA model folder; returns it."""
    run_dir = Path(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    objective = build_objective(cfg)
    dataset = build_dataset(cfg, objective.denoiser.embed_dim)
    if cfg.ldm.standardize_embeddings:
        set_embedding_statistics(objective, training_embeddings(objective, dataset, cfg.statistics_tiles))
    trainer = Trainer(cfg.train, objective, dataset, run_dir)
    trainer.cfg = resolve_schedule(cfg.train, trainer.steps_per_epoch)
    trainer.fit(resume=resume)
    model_dir = run_dir / MODEL_DIR
    if trainer.dist.is_main:
        source = {
            "run": str(run_dir.resolve()),
            "step": trainer.step,
            "data": [str(Path(d).resolve()) for d in cfg.data],
            "embeddings_name": cfg.embeddings_name,
            "ema": objective.ema is not None,
        }
        save_ldm(objective.export_denoiser(), model_dir, cfg.vae, cfg.encoder, cfg.image_size, source)
    trainer.dist.barrier()
    return model_dir
