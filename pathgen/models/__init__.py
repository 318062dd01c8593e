"""Encoders: a timm factory, model folders on disk (pathgen, timm, published-encoder recipes), preprocessing."""

from pathgen.models.backbone import BackboneConfig, create_backbone
from pathgen.models.io import EncoderConfig, load_encoder, open_encoder, save_encoder
from pathgen.models.preprocess import mpp_per_input_pixel, preprocess
from pathgen.models.published import RECIPES

__all__ = [
    "RECIPES",
    "BackboneConfig",
    "EncoderConfig",
    "create_backbone",
    "load_encoder",
    "mpp_per_input_pixel",
    "open_encoder",
    "preprocess",
    "save_encoder",
]
