"""Trained encoders on disk: ``model.safetensors`` + ``config.json``, loadable with one call.

``config.json`` records the timm name and keyword arguments (so ``timm.create_model`` rebuilds
the architecture), the feature size, and the input contract the encoder was trained on: the input
size in pixels that whole tiles are resized to (``tile_size_px``), the µm per input pixel that gives
(``mpp``: a 224-px tile at 0.5 µm/px fed at 64 px is 1.75) and the input normalisation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from pathgen import __version__

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


@dataclass
class EncoderConfig:
    """What a user of a saved encoder needs to know to feed it tiles."""

    timm_name: str
    embed_dim: int
    timm_kwargs: dict = field(default_factory=dict)
    tile_size_px: int = 224  # input size: tiles are resized (shorter side) and centre-cropped to it
    mpp: float | None = 0.5  # µm per input pixel
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    source: dict = field(default_factory=dict)  # method, run folder, step …
    pathgen_version: str = __version__


def save_encoder(model: nn.Module, config: EncoderConfig, out_dir: str | Path) -> Path:
    """Write the weights and config of an encoder into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS), metadata={"format": "pt"})
    (out_dir / CONFIG).write_text(json.dumps(asdict(config), indent=2))
    return out_dir


def read_encoder_config(model_dir: str | Path) -> EncoderConfig:
    """The config.json of a saved encoder, checked for the fields pathgen needs."""
    path = Path(model_dir) / CONFIG
    try:
        values = json.loads(path.read_text())
        values["mean"], values["std"] = tuple(values["mean"]), tuple(values["std"])
        return EncoderConfig(**values)
    except (OSError, json.JSONDecodeError, TypeError, KeyError) as err:
        raise ValueError(f"{path}: not a pathgen encoder config ({err})") from err


def load_encoder(model_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, EncoderConfig]:
    """The encoder saved in `model_dir`, in eval mode on `device`, and its config."""
    model_dir = Path(model_dir)
    config = read_encoder_config(model_dir)
    model = timm.create_model(config.timm_name, pretrained=False, **config.timm_kwargs)
    model.load_state_dict(load_file(str(model_dir / WEIGHTS)))
    return model.to(device).eval(), config
