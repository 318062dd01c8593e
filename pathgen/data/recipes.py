"""Augmentation recipes: which views a method sees and how each is augmented.

DINO: Caron et al. 2021 (main_dino.py DataAugmentationDINO). BYOL: Grill et al. 2020. SimCLR:
Chen et al. 2020. "symmetric": SimSiam (Chen & He 2021) / MoCo v2. Pathology additions: rot90 +
vertical flip (no canonical orientation) and HED jitter (Tellez et al. 2018). The operations
themselves live in pathgen.data.augment; which values each shipped config uses, and where they
come from, is in docs/recipes.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from pathgen.data.augment import IMAGENET_MEAN, IMAGENET_STD, MultiCropTransform, ViewSpec

TWO_VIEW_RECIPES = {  # per recipe: colour-jitter strengths, then (blur p, solarize p) of view 1 and 2
    "simclr": ((0.8, 0.8, 0.8, 0.2), ((0.5, 0.0), (0.5, 0.0))),
    "byol": ((0.4, 0.4, 0.2, 0.1), ((1.0, 0.0), (0.1, 0.2))),
    "symmetric": ((0.4, 0.4, 0.4, 0.1), ((0.5, 0.0), (0.5, 0.0))),
}
_PER_VIEW = {"size", "scale", "blur_p", "solarize_p", "vflip_p"}


def _shared(hed_theta: float, hed_p: float, rot90: bool, vflip: bool, view_options: dict) -> dict:
    """ViewSpec fields every view of a recipe shares: pathology switches plus caller overrides."""
    clash = sorted(_PER_VIEW & set(view_options))
    if clash:
        raise ValueError(f"{clash} are set by the recipe or its own arguments, not by view options")
    return {"hed_theta": hed_theta, "hed_p": hed_p, "rot90": rot90, "vflip_p": 0.5 if vflip else 0.0, **view_options}


def dino_multicrop(
    global_size: int = 224,
    local_size: int = 96,
    n_global: int = 2,
    n_local: int = 8,
    global_scale: tuple[float, float] = (0.4, 1.0),
    local_scale: tuple[float, float] = (0.05, 0.4),
    hed_theta: float = 0.05,
    hed_p: float = 0.5,
    rot90: bool = True,
    vflip: bool = True,
    **view_options,
) -> MultiCropTransform:
    """DINO multi-crop (Caron et al. 2021): bicubic RRC, hflip, ColorJitter(0.4, 0.4, 0.2, 0.1)
    p=0.8, grayscale p=0.2; blur σ ~ U(0.1, 2) with p=1.0 on global 1, 0.1 on global 2, 0.5 on
    locals; solarize p=0.2 on global 2 only. Globals alternate the two global recipes when
    n_global > 2. `view_options` are other ViewSpec fields (color_jitter, mean, std, ...)."""
    shared = _shared(hed_theta, hed_p, rot90, vflip, view_options)
    first = ViewSpec(global_size, global_scale, blur_p=1.0, **shared)
    second = ViewSpec(global_size, global_scale, blur_p=0.1, solarize_p=0.2, **shared)
    local = ViewSpec(local_size, local_scale, blur_p=0.5, **shared)
    globals_ = [first if i % 2 == 0 else second for i in range(n_global)]
    return MultiCropTransform(tuple(globals_ + [local] * n_local), n_global)


def two_view(
    size: int = 224,
    scale: tuple[float, float] = (0.2, 1.0),
    recipe: str = "simclr",
    hed_theta: float = 0.05,
    hed_p: float = 0.5,
    rot90: bool = True,
    vflip: bool = True,
    **view_options,
) -> MultiCropTransform:
    """Two views for SimCLR / MoCo / BYOL / SimSiam / Barlow Twins. "simclr": ColorJitter(0.8,
    0.8, 0.8, 0.2), blur p=0.5 on both. "byol": ColorJitter(0.4, 0.4, 0.2, 0.1), blur 1.0 / 0.1
    and solarize 0.0 / 0.2 on view 1 / 2. "symmetric" (SimSiam, MoCo v2): ColorJitter(0.4, 0.4,
    0.4, 0.1), blur p=0.5 on both. All: jitter p=0.8, grayscale p=0.2, hflip, bicubic RRC."""
    if recipe not in TWO_VIEW_RECIPES:
        raise ValueError(f"unknown two-view recipe {recipe!r}; choose one of {sorted(TWO_VIEW_RECIPES)}")
    jitter, probs = TWO_VIEW_RECIPES[recipe]
    shared = {"color_jitter": jitter, **_shared(hed_theta, hed_p, rot90, vflip, view_options)}
    views = tuple(ViewSpec(size, scale, blur_p=blur, solarize_p=sol, **shared) for blur, sol in probs)
    return MultiCropTransform(views, 2)


@dataclass
class AugmentConfig:
    """The augmentation section of an SSL config (plain values, YAML-ready). None = recipe default:
    n_local 8 (dino) / 0, global_scale (0.4, 1) (dino) / (0.2, 1), color_jitter per recipe."""

    recipe: str = "dino"  # dino | simclr | byol | symmetric
    global_size: int = 224
    local_size: int = 96
    n_global: int = 2
    n_local: int | None = None
    global_scale: tuple[float, float] | None = None
    local_scale: tuple[float, float] = (0.05, 0.4)
    hflip_p: float = 0.5
    vflip: bool = True
    rot90: bool = True
    hed_theta: float = 0.05
    hed_p: float = 0.5
    hed_units: str = "skimage"  # what hed_theta's offset is measured in: skimage | ln_od (augment.HEDJitter)
    color_jitter_p: float = 0.8
    color_jitter: tuple[float, float, float, float] | None = None
    grayscale_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def build_transform(cfg: AugmentConfig) -> MultiCropTransform:
    """The multi-crop transform an `AugmentConfig` describes; errors name the offending field."""
    options = {
        name: getattr(cfg, name)
        for name in ("hflip_p", "hed_units", "color_jitter_p", "grayscale_p", "blur_sigma", "mean", "std")
    }
    if cfg.color_jitter is not None:
        options["color_jitter"] = cfg.color_jitter
    shared = dict(hed_theta=cfg.hed_theta, hed_p=cfg.hed_p, rot90=cfg.rot90, vflip=cfg.vflip, **options)
    if cfg.recipe == "dino":
        n_local = 8 if cfg.n_local is None else cfg.n_local
        return dino_multicrop(
            cfg.global_size,
            cfg.local_size,
            cfg.n_global,
            n_local,
            cfg.global_scale or (0.4, 1.0),
            cfg.local_scale,
            **shared,
        )
    if cfg.recipe not in TWO_VIEW_RECIPES:
        raise ValueError(f"augment.recipe {cfg.recipe!r} is unknown; choose dino, {', '.join(TWO_VIEW_RECIPES)}")
    if cfg.n_global != 2 or cfg.n_local:
        raise ValueError(
            f"augment.recipe {cfg.recipe} makes exactly 2 views: set n_global: 2 and n_local: 0 "
            f"(got {cfg.n_global}, {cfg.n_local}) or use recipe dino"
        )
    return two_view(cfg.global_size, cfg.global_scale or (0.2, 1.0), cfg.recipe, **shared)
