"""The first stage of latent diffusion: a diffusers AutoencoderKL and its latent scaling factor.

A pathgen VAE folder holds ``model.safetensors`` + ``config.json`` ({"kind": "pathgen-vae", "format_version",
"vae": VAEConfig, "scaling_factor", "image_size", "source", "pathgen_version"}), read and written through
`pathgen.models.folder` (folders without a format_version are version 1 and still load). `load_codec` also reads a
local diffusers AutoencoderKL folder (``config.json`` with ``"_class_name": "AutoencoderKL"`` +
``diffusion_pytorch_model.safetensors``, e.g. the ``vae/`` of a Stable Diffusion checkout) with the
scaling factor of its own config. Weights are read from safetensors only, and nothing is downloaded.
The scaling factor follows Rombach et al. (CVPR 2022, LDM §4.3.2 / App. G): latents are multiplied
by 1 / (their standard deviation on training data) so the diffusion model sees roughly unit variance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from torch import nn

from pathgen import __version__
from pathgen.models.folder import (
    CONFIG,
    FORMAT_VERSION,
    WEIGHTS,
    check_kind,
    load_weights,
    read_config,
    save_weights,
    write_config,
)

KIND = "pathgen-vae"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"


@dataclass
class VAEConfig:
    """Architecture of an AutoencoderKL: len(block_out_channels) - 1 = log2 of the downsampling factor."""

    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 16


def build_vae(cfg: VAEConfig) -> AutoencoderKL:
    """A randomly initialised AutoencoderKL (RGB in, RGB out) with the architecture of `cfg`."""
    levels = len(cfg.block_out_channels)
    if levels < 1 or any(c % cfg.norm_num_groups for c in cfg.block_out_channels):
        raise ValueError(
            f"vae.block_out_channels {cfg.block_out_channels} must be non-empty and each a multiple "
            f"of vae.norm_num_groups ({cfg.norm_num_groups})"
        )
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
    )


class LatentCodec(nn.Module):
    """A frozen VAE and its latent scaling factor: images in [-1, 1] <-> scaled latents.

    `encode` returns (posterior mode or sample - shift_factor) * scaling_factor; `decode` inverts
    it. shift_factor is 0 except for diffusers VAEs that declare one (SD3 / Flux style).
    """

    def __init__(
        self, vae: AutoencoderKL, scaling_factor: float, source: dict | None = None, shift_factor: float = 0.0
    ):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.scaling_factor = float(scaling_factor)
        self.shift_factor = float(shift_factor)
        self.source = dict(source or {})

    @property
    def latent_channels(self) -> int:
        """Channels of a latent (C in (B, C, S/f, S/f))."""
        return int(self.vae.config.latent_channels)

    @property
    def downsample_factor(self) -> int:
        """Pixels per latent cell along one side (f)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def train(self, mode: bool = True) -> LatentCodec:
        """The codec stays frozen in eval mode whatever its parent module does."""
        return super().train(False)

    @torch.no_grad()
    def encode(
        self, images: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False
    ) -> torch.Tensor:
        """Images (B, 3, S, S) in [-1, 1] → scaled latents (B, C, S/f, S/f): the posterior mode, or a sample."""
        posterior = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        latents = posterior.sample(generator) if sample else posterior.mode()
        return (latents - self.shift_factor) * self.scaling_factor

    @torch.no_grad()
    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (mean, std) of the VAE posterior of images (B, 3, S, S) in [-1, 1], unscaled: what
        `scaled_latents` turns into the latents `encode` gives, so a caller may keep them."""
        posterior = self.vae.encode(images.to(self.vae.dtype)).latent_dist
        return posterior.mean, posterior.std

    def scaled_latents(self, mean: torch.Tensor, std: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """Scaled latents from posterior parameters: the mode, or a sample drawn as `encode` draws it
        (mean + std × one standard normal draw of the mean's shape from the global generator)."""
        latents = mean + std * torch.randn(mean.shape, device=mean.device, dtype=mean.dtype) if sample else mean
        return (latents - self.shift_factor) * self.scaling_factor

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents → images (B, 3, S, S) clamped to [-1, 1]."""
        latents = latents.to(self.vae.dtype) / self.scaling_factor + self.shift_factor
        return self.vae.decode(latents).sample.clamp(-1.0, 1.0)


def save_vae(
    vae: AutoencoderKL,
    cfg: VAEConfig,
    scaling_factor: float,
    out_dir: str | Path,
    source: dict | None = None,
    image_size: int | None = None,
) -> Path:
    """Write a VAE folder (weights + config.json) that `load_codec` reads; works for a random-init VAE too."""
    out_dir = Path(out_dir)
    (out_dir / CONFIG).unlink(missing_ok=True)  # config.json marks the folder complete: written last
    save_weights(vae.state_dict(), out_dir / WEIGHTS)
    config = {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "vae": asdict(cfg),
        "scaling_factor": float(scaling_factor),
        "image_size": image_size,
        "source": dict(source or {}),
        "pathgen_version": __version__,
    }
    write_config(out_dir, config)
    return out_dir


def load_codec(path: str | Path, device: str | torch.device = "cpu") -> LatentCodec:
    """The frozen codec of a pathgen VAE folder or a local diffusers AutoencoderKL folder, in eval mode."""
    path = Path(path)
    if (path / "vae" / CONFIG).is_file() and not (path / CONFIG).is_file():
        path = path / "vae"  # a diffusers pipeline checkout: its VAE lives in vae/
    config = _read_config(path)
    if config.get("kind") == KIND:
        codec = _load_pathgen(path, config)
    elif config.get("_class_name") == "AutoencoderKL":
        codec = _load_diffusers(path, config)
    else:
        raise ValueError(
            f"{path}: neither a pathgen VAE folder (config.json kind {KIND!r} + {WEIGHTS}) nor a "
            f"diffusers AutoencoderKL folder (config.json _class_name AutoencoderKL + "
            f"{DIFFUSERS_WEIGHTS}); train one with `pathgen train-vae`"
        )
    return codec.to(device)


def _read_config(path: Path) -> dict:
    if not (path / CONFIG).is_file():
        raise ValueError(
            f"{path}: no {CONFIG}; expected a pathgen VAE folder (`pathgen train-vae` writes "
            f"<out>/model) or a local diffusers AutoencoderKL folder"
        )
    return read_config(path)


def _load_pathgen(path: Path, config: dict) -> LatentCodec:
    check_kind(config, KIND, path)
    try:
        cfg = VAEConfig(**config["vae"])
        scaling_factor = float(config["scaling_factor"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path / CONFIG}: not a valid pathgen VAE config ({err})") from err
    if not (path / WEIGHTS).is_file():
        raise ValueError(f"{path}: no {WEIGHTS} beside config.json")
    vae = build_vae(cfg)
    state = load_weights(path / WEIGHTS)
    try:
        vae.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path / WEIGHTS}: weights do not fit the config's architecture ({err})") from err
    source = {
        **config.get("source", {}),
        "format": KIND,
        "path": str(path.resolve()),
        "image_size": config.get("image_size"),
        "vae": asdict(cfg),
    }
    return LatentCodec(vae, scaling_factor, source)


def _load_diffusers(path: Path, config: dict) -> LatentCodec:
    if not (path / DIFFUSERS_WEIGHTS).is_file():
        raise ValueError(
            f"{path}: diffusers AutoencoderKL folder without {DIFFUSERS_WEIGHTS} (pathgen reads "
            f"safetensors weights only; convert .bin weights with save_pretrained(safe_serialization=True))"
        )
    load_weights(path / DIFFUSERS_WEIGHTS)  # a corrupt file is one line naming it, before diffusers reads it
    try:
        vae = AutoencoderKL.from_pretrained(
            str(path), local_files_only=True, use_safetensors=True, low_cpu_mem_usage=False
        )
    except (OSError, ValueError, RuntimeError, TypeError) as err:
        raise ValueError(
            f"{path}: diffusers cannot load this AutoencoderKL folder ({str(err).splitlines()[0]})"
        ) from err
    source = {"format": "diffusers", "path": str(path.resolve()), "image_size": vae.config.sample_size}
    shift = config.get("shift_factor")
    return LatentCodec(vae, float(vae.config.scaling_factor), source, shift_factor=float(shift or 0.0))
