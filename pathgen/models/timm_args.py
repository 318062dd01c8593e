"""The trust boundary between a model folder's config.json and ``timm.create_model``.

A folder's keyword arguments are data from disk, and some timm arguments act on the file system
(``checkpoint_path`` opens a file, ``pretrained_cfg_overlay`` can point at one) or change what is
built beyond the architecture. Only the architecture arguments a pathgen, timm or recipe folder
needs are let through (an explicit allow-list); anything else is refused with one line naming the
file and the key. Layer classes (SwiGLU MLPs, SiLU) are written by name in JSON and mapped to
classes here, from a fixed table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from timm.layers import GluMlp, Mlp, SwiGLU, SwiGLUPacked
from torch import nn

ARCHITECTURE_KWARGS = frozenset(
    {
        # vision transformers
        "img_size",
        "patch_size",
        "in_chans",
        "embed_dim",
        "depth",
        "num_heads",
        "mlp_ratio",
        "qkv_bias",
        "qk_norm",
        "init_values",
        "class_token",
        "no_embed_class",
        "reg_tokens",
        "pos_embed",
        "pre_norm",
        "fc_norm",
        "dynamic_img_size",
        "dynamic_img_pad",
        "global_pool",
        "act_layer",
        "mlp_layer",
        "norm_layer",
        # regularisation that does not change the weights' shapes
        "drop_rate",
        "drop_path_rate",
        "pos_drop_rate",
        "proj_drop_rate",
        "attn_drop_rate",
        # convolutional networks
        "output_stride",
        # the head: pathgen encoders are always built headless
        "num_classes",
    }
)

LAYERS: dict[str, type[nn.Module]] = {
    "mlp": Mlp,
    "swiglu": SwiGLU,
    "swiglu_packed": SwiGLUPacked,
    "glu_mlp": GluMlp,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "layernorm": nn.LayerNorm,
}
LAYER_KWARGS = ("act_layer", "mlp_layer", "norm_layer")


def check_timm_kwargs(kwargs: Any, source: str | Path) -> dict[str, Any]:
    """`kwargs` from a config file, checked against the allow-list (one error naming `source` and the key)."""
    if not isinstance(kwargs, dict):
        raise ValueError(
            f"{source}: timm keyword arguments must be a JSON object, "  # noqa: TRY004 -- a bad file
            f"not {type(kwargs).__name__}"
        )
    refused = sorted(key for key in kwargs if key not in ARCHITECTURE_KWARGS)
    if refused:
        raise ValueError(
            f"{source}: timm argument(s) {', '.join(refused)} not allowed in a model folder "
            f"(only architecture arguments are, e.g. img_size, depth, reg_tokens)"
        )
    for key in LAYER_KWARGS:
        value = kwargs.get(key)
        if value is not None and value not in LAYERS:
            raise ValueError(f"{source}: {key} {value!r} is not one of {', '.join(sorted(LAYERS))}")
    if kwargs.get("num_classes", 0) != 0:
        raise ValueError(f"{source}: num_classes must be 0 (pathgen encoders are built without a head)")
    return dict(kwargs)


def build_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Checked JSON kwargs → the keyword arguments for `timm.create_model` (layer names become classes)."""
    built = {**kwargs, "num_classes": 0}
    for key in LAYER_KWARGS:
        if isinstance(built.get(key), str):
            built[key] = LAYERS[built[key]]
    return built
