"""Saved latent diffusion models: one self-contained folder, rebuilt with one call.

``model_dir/`` holds ``model.safetensors`` (the EMA denoiser: UNet + embedding projection),
``config.json`` ({"kind": "pathgen-ldm", "format_version", "ldm": LDMConfig, "embed_dim", "latent_channels",
"latent_size", "image_size", "source", "pathgen_version"}), ``vae/`` (a copy of the VAE folder) and
``encoder/`` (a copy of the SSL encoder folder whose embeddings condition the model), so the folder
can move or be shared without the runs it came from.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from pathgen import __version__
from pathgen.diffusion.ldm import ConditionedDenoiser, LDMConfig
from pathgen.diffusion.vae import LatentCodec, load_codec
from pathgen.models.embeddings import preprocess
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
from pathgen.models.io import EncoderConfig, load_encoder

KIND = "pathgen-ldm"
VAE_DIR = "vae"
ENCODER_DIR = "encoder"
STATISTICS = ("conditioner.embedding_mean", "conditioner.embedding_std")  # absent from older folders


@dataclass
class LoadedLDM:
    """Everything needed to sample: the EMA denoiser, the frozen codec and the frozen conditioning encoder."""

    denoiser: ConditionedDenoiser  # EMA weights, eval mode
    codec: LatentCodec
    encoder: nn.Module  # frozen SSL encoder, eval mode
    encoder_config: EncoderConfig
    config: LDMConfig
    image_size: int  # pixels generated (= latent_size * codec.downsample_factor)
    latent_size: int
    model_dir: Path

    @property
    def device(self) -> torch.device:
        """Where the denoiser's weights are."""
        return next(self.denoiser.parameters()).device

    @torch.no_grad()
    def embed(self, tiles_u8_bchw: Tensor) -> Tensor:
        """The float32 (B, D) conditioning embedding of real uint8 (B, 3, H, W) tiles (encoder on preprocess())."""
        images = preprocess(tiles_u8_bchw.to(self.device), self.encoder_config)
        return self.encoder(images).float()


def save_ldm(
    denoiser: ConditionedDenoiser,
    out_dir: str | Path,
    vae_dir: str | Path,
    encoder_dir: str | Path,
    image_size: int,
    source: dict | None = None,
) -> Path:
    """Write a self-contained LDM folder: `denoiser`'s weights (pass the EMA copy) + config + VAE and encoder copies."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _copy_folder(Path(vae_dir), out_dir / VAE_DIR)
    _copy_folder(Path(encoder_dir), out_dir / ENCODER_DIR)
    (out_dir / CONFIG).unlink(missing_ok=True)  # config.json marks the folder complete: written last
    save_weights({k: v.float() for k, v in denoiser.state_dict().items()}, out_dir / WEIGHTS)
    config = {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "ldm": asdict(denoiser.cfg),
        "embed_dim": denoiser.embed_dim,
        "latent_channels": denoiser.latent_channels,
        "latent_size": denoiser.latent_size,
        "image_size": int(image_size),
        "source": dict(source or {}),
        "pathgen_version": __version__,
    }
    write_config(out_dir, config)
    return out_dir


def _copy_folder(src: Path, dst: Path) -> None:
    if not (src / CONFIG).is_file() and not (src / VAE_DIR / CONFIG).is_file():
        raise ValueError(f"{src}: not a model folder (no {CONFIG}); cannot copy it into the LDM folder")
    if dst.exists() and dst.resolve() == src.resolve():
        return
    shutil.copytree(src, dst, dirs_exist_ok=True)


def read_ldm_config(model_dir: str | Path) -> dict:
    """The config.json of an LDM folder, checked for its kind; the "ldm" entry becomes an LDMConfig."""
    path = Path(model_dir) / CONFIG
    config = read_config(model_dir)
    check_kind(config, KIND, Path(model_dir))
    try:
        config["ldm"] = LDMConfig(**config["ldm"])
        for key in ("embed_dim", "latent_channels", "latent_size", "image_size"):
            config[key] = int(config[key])
    except (TypeError, KeyError, ValueError, AttributeError) as err:
        raise ValueError(f"{path}: not a pathgen LDM folder ({err}); `pathgen train-ldm` writes <out>/model") from err
    return config


def load_ldm(model_dir: str | Path, device: str | torch.device = "cpu") -> LoadedLDM:
    """The LDM saved in `model_dir` (denoiser, codec, encoder), frozen and in eval mode on `device`."""
    model_dir = Path(model_dir)
    config = read_ldm_config(model_dir)
    codec = load_codec(model_dir / VAE_DIR, device)
    encoder, encoder_config = load_encoder(model_dir / ENCODER_DIR, device)
    encoder.requires_grad_(False)
    if encoder_config.embed_dim != config["embed_dim"]:
        raise ValueError(
            f"{model_dir / ENCODER_DIR}: encoder gives {encoder_config.embed_dim}-d embeddings but the "
            f"denoiser was trained on {config['embed_dim']}-d ones"
        )
    if codec.latent_channels != config["latent_channels"]:
        raise ValueError(
            f"{model_dir / VAE_DIR}: VAE latents have {codec.latent_channels} channels, the denoiser "
            f"expects {config['latent_channels']}"
        )
    denoiser = ConditionedDenoiser(config["ldm"], config["embed_dim"], config["latent_channels"], config["latent_size"])
    state = load_weights(model_dir / WEIGHTS)
    try:
        for name in STATISTICS:  # folders saved before embedding standardisation existed: mean 0, std 1
            state.setdefault(name, denoiser.state_dict()[name])
        denoiser.load_state_dict(state)
    except (OSError, RuntimeError) as err:
        raise ValueError(f"{model_dir / WEIGHTS}: cannot load the denoiser weights ({err})") from err
    denoiser = denoiser.to(device).eval().requires_grad_(False)
    return LoadedLDM(
        denoiser, codec, encoder, encoder_config, config["ldm"], config["image_size"], config["latent_size"], model_dir
    )
