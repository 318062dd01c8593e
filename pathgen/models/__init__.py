"""Encoders: a timm factory, and trained models on disk (safetensors + config.json)."""

from pathgen.models.backbone import BackboneConfig, create_backbone
from pathgen.models.io import EncoderConfig, load_encoder, save_encoder

__all__ = ["BackboneConfig", "EncoderConfig", "create_backbone", "load_encoder", "save_encoder"]
