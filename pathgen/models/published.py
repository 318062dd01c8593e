"""Named recipes for published pathology encoders that ship timm weights.

A recipe fixes what the weights alone do not say: the timm architecture and its keyword
arguments, the preprocessing the authors use at inference, and the embedding their paper
defines (CLS token, or Virchow2's CLS token concatenated with the mean of the patch tokens,
register tokens excluded). Pathgen never downloads: the user passes the weights file they
downloaded from the model's Hub page, as ``<recipe>:<path>`` (e.g. ``uni2-h:/models/uni2h``).
Every value below and its source is listed in docs/encoders.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# bioptimus model cards (H-optimus-0 / H-optimus-1): their own stain statistics
HOPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
HOPTIMUS_STD = (0.211883, 0.230117, 0.177517)
# both H-optimus releases share the architecture
HOPTIMUS_KWARGS = {"img_size": 224, "global_pool": "token", "init_values": 1e-5, "dynamic_img_size": True}
# what a test stand-in may shrink: the layer count and the width, never the kind of layer or token
REDUCIBLE_KWARGS = frozenset({"depth", "embed_dim", "num_heads"})


@dataclass(frozen=True)
class Recipe:
    """One published encoder: architecture, inference preprocessing, embedding, and where each fact is from."""

    name: str
    timm_name: str
    timm_kwargs: dict
    embed_dim: int
    input_size_px: int = 224
    interpolation: str = "bilinear"
    crop_pct: float = 1.0  # shorter side resized to input_size_px / crop_pct, then centre-cropped
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pooling: str = "model"  # "model": timm's pooled output (CLS here); "cls+mean_patch": Virchow's
    mpp: float | None = 0.5  # µm per input pixel the model card recommends
    sources: tuple[str, ...] = field(default_factory=tuple)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "uni",
            "vit_large_patch16_224",
            {"img_size": 224, "patch_size": 16, "init_values": 1e-5, "dynamic_img_size": True},
            embed_dim=1024,
            sources=(
                "https://huggingface.co/MahmoodLab/UNI",
                (
                    "Chen et al., Towards a general-purpose foundation model for computational pathology, "
                    "Nature Medicine 2024"
                ),
                "github.com/mahmoodlab/TRIDENT trident/patch_encoder_models/load.py (UNIInferenceEncoder)",
            ),
        ),
        Recipe(
            "uni2-h",
            "vit_giant_patch14_224",
            {
                "img_size": 224,
                "patch_size": 14,
                "depth": 24,
                "num_heads": 24,
                "init_values": 1e-5,
                "embed_dim": 1536,
                "mlp_ratio": 2.66667 * 2,
                "no_embed_class": True,
                "mlp_layer": "swiglu_packed",
                "act_layer": "silu",
                "reg_tokens": 8,
                "dynamic_img_size": True,
            },
            embed_dim=1536,
            sources=(
                "https://huggingface.co/MahmoodLab/UNI2-h",
                "github.com/mahmoodlab/TRIDENT trident/patch_encoder_models/load.py (UNIv2InferenceEncoder)",
            ),
        ),
        Recipe(
            "virchow2",
            "vit_huge_patch14_224",
            {
                "img_size": 224,
                "init_values": 1e-5,
                "reg_tokens": 4,
                "mlp_ratio": 5.3375,
                "global_pool": "",
                "dynamic_img_size": True,
                "mlp_layer": "swiglu_packed",
                "act_layer": "silu",
            },
            embed_dim=2560,
            interpolation="bicubic",
            pooling="cls+mean_patch",
            sources=(
                "https://huggingface.co/paige-ai/Virchow2",
                (
                    "Zimmermann et al., Virchow2: Scaling Self-Supervised Mixed Magnification Models in Pathology, "
                    "arXiv:2408.00738"
                ),
                "github.com/mahmoodlab/TRIDENT trident/patch_encoder_models/load.py (Virchow2InferenceEncoder)",
            ),
        ),
        Recipe(
            "h-optimus-0",
            "vit_giant_patch14_reg4_dinov2",
            HOPTIMUS_KWARGS,
            embed_dim=1536,
            mean=HOPTIMUS_MEAN,
            std=HOPTIMUS_STD,
            sources=(
                "https://huggingface.co/bioptimus/H-optimus-0",
                "github.com/mahmoodlab/TRIDENT trident/patch_encoder_models/load.py (HOptimus0InferenceEncoder)",
            ),
        ),
        Recipe(
            "h-optimus-1",
            "vit_giant_patch14_reg4_dinov2",
            HOPTIMUS_KWARGS,
            embed_dim=1536,
            mean=HOPTIMUS_MEAN,
            std=HOPTIMUS_STD,
            sources=(
                "https://huggingface.co/bioptimus/H-optimus-1",
                "github.com/mahmoodlab/TRIDENT trident/patch_encoder_models/load.py (HOptimus1InferenceEncoder)",
            ),
        ),
        Recipe(
            "prov-gigapath",
            "vit_giant_patch14_dinov2",
            {
                "img_size": 224,
                "in_chans": 3,
                "patch_size": 16,
                "embed_dim": 1536,
                "depth": 40,
                "num_heads": 24,
                "mlp_ratio": 5.33334,
                "dynamic_img_size": True,
            },
            embed_dim=1536,
            interpolation="bicubic",
            crop_pct=224 / 256,
            sources=(
                "https://huggingface.co/prov-gigapath/prov-gigapath",
                ("Xu et al., A whole-slide foundation model for digital pathology from real-world data, Nature 2024"),
                "github.com/prov-gigapath/prov-gigapath demo/3_load_tile_encoder.py",
            ),
        ),
    )
}


def find_recipe(name: str) -> Recipe | None:
    """The recipe called `name` (case-insensitive), or None."""
    return RECIPES.get(name.lower())


def split_recipe_spec(spec: str) -> tuple[Recipe, str] | None:
    """``<recipe>:<weights path>`` → (recipe, path); None when `spec` does not start with a recipe name."""
    name, sep, path = spec.partition(":")
    recipe = find_recipe(name) if sep else None
    return (recipe, path) if recipe is not None else None


def recipe_kwargs(recipe: Recipe, reduced: dict | None = None) -> dict:
    """The recipe's timm kwargs, with `reduced` (depth / width only: test stand-ins) applied."""
    reduced = dict(reduced or {})
    extra = sorted(set(reduced) - REDUCIBLE_KWARGS)
    if extra:
        raise ValueError(f"recipe {recipe.name}: only {sorted(REDUCIBLE_KWARGS)} may be reduced, not {extra}")
    return {**recipe.timm_kwargs, **reduced}
