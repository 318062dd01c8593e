"""Method registry: name → (method class, config dataclass), and a builder from a plain dict."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from pathgen.config import from_dict
from pathgen.ssl.barlow import BarlowConfig, BarlowTwins
from pathgen.ssl.base import SSLMethod
from pathgen.ssl.byol import BYOL, BYOLConfig
from pathgen.ssl.dino import DINO, DINOConfig
from pathgen.ssl.mocov2 import MoCoV2, MoCoV2Config
from pathgen.ssl.mocov3 import MoCoV3, MoCoV3Config
from pathgen.ssl.simclr import SimCLR, SimCLRConfig
from pathgen.ssl.simsiam import SimSiam, SimSiamConfig

METHODS: dict[str, tuple[type[SSLMethod], type]] = {
    "dino": (DINO, DINOConfig),
    "simclr": (SimCLR, SimCLRConfig),
    "mocov2": (MoCoV2, MoCoV2Config),
    "mocov3": (MoCoV3, MoCoV3Config),
    "byol": (BYOL, BYOLConfig),
    "simsiam": (SimSiam, SimSiamConfig),
    "barlow": (BarlowTwins, BarlowConfig),
}


def build_config(name: str, cfg_dict: dict[str, Any] | None = None) -> Any:
    """The config dataclass of method `name`, defaults overridden by `cfg_dict`.

    Raises:
        ValueError: for an unknown method name or a key the config does not have (the message
            names the key and lists the valid ones, so a YAML typo does not pass silently).
    """
    if name not in METHODS:
        raise ValueError(f"unknown SSL method {name!r}; choose one of {sorted(METHODS)}")
    config_class = METHODS[name][1]
    valid_keys = [field.name for field in dataclasses.fields(config_class)]
    for key in cfg_dict or {}:
        if key not in valid_keys:
            raise ValueError(f"unknown key {key!r} in the {name} config; valid keys: {valid_keys}")
    return from_dict(config_class, dict(cfg_dict or {}), prefix="method_options.")


def build_method(name: str, backbone: nn.Module, embed_dim: int, cfg_dict: dict[str, Any] | None = None) -> SSLMethod:
    """Build method `name` (a key of METHODS) around `backbone` with config values from `cfg_dict`."""
    config = build_config(name, cfg_dict)
    return METHODS[name][0](backbone, embed_dim, config)
