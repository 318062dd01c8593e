"""Pathology augmentations for SSL: multi-crop views, HED stain jitter, rot90/flips, blur, colour.

A recipe is a tuple of plain `ViewSpec`s (one per view, globals first); `MultiCropTransform` turns
one RGB uint8 tile into that many normalised float tensors. Ops run on torch tensors (uint8 for the
crop, float in [0, 1] after) with torchvision.transforms.v2.functional, so they stay fast inside
DataLoader workers on CPU. Every random draw goes through an optional `torch.Generator` (or a seed),
else through torch's global RNG, which DataLoader seeds per worker.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as tnf
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Ruifrok & Johnston (2001) optical-density vectors, rows H, E, DAB (scikit-image's rgb_from_hed).
RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64)
HED_FROM_RGB = torch.linalg.inv(RGB_FROM_HED)
OD_EPS = 1e-6  # floor on intensity before the log, so black pixels have a finite optical density
#: scikit-image's rgb2hed divides −ln(I) by −ln(1e-6) = ln(1e6): one skimage unit is this many natural-log OD units
SKIMAGE_OD_UNIT = math.log(1e6)
#: HED jitter units: "skimage" (rgb2hed's, the unit of the published θ values) or "ln_od" (−ln I, I0 = 1)
HED_UNITS = {"skimage": SKIMAGE_OD_UNIT, "ln_od": 1.0}
SOLARIZE_THRESHOLD = 128 / 255  # DINO / BYOL solarize uint8 pixels >= 128
Seed = torch.Generator | int | None


def as_generator(seed: Seed) -> torch.Generator | None:
    """A generator for `seed`: passed through if one, seeded if an int, None (global RNG) if None."""
    return torch.Generator().manual_seed(seed) if isinstance(seed, int) else seed


def _uniform(low: float, high: float, g: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=g).item()


def _coin(p: float, g: torch.Generator | None) -> bool:
    """True with probability p; always draws, so the random stream does not depend on p."""
    return torch.rand((), generator=g).item() < p


def _randint(n: int, g: torch.Generator | None) -> int:
    return int(torch.randint(n, (), generator=g))


def _optical_density(rgb: torch.Tensor) -> torch.Tensor:
    """(3, H, W) intensities in [0, 1] → (3, H·W) optical densities −ln(I / I0), I0 = 1."""
    return -torch.log(rgb.clamp_min(OD_EPS)).reshape(3, -1)


def rgb_to_hed(rgb: torch.Tensor) -> torch.Tensor:
    """Colour deconvolution: (3, H, W) RGB in [0, 1] → H, E, DAB concentrations in OD units."""
    return (HED_FROM_RGB.T.to(rgb.dtype) @ _optical_density(rgb)).reshape(rgb.shape)


def hed_to_rgb(hed: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_hed`: stain concentrations → RGB in [0, 1] (clipped)."""
    od = (RGB_FROM_HED.T.to(hed.dtype) @ hed.reshape(3, -1)).reshape(hed.shape)
    return torch.exp(-od).clamp_(0.0, 1.0)


def perturb_stains(rgb: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Set each stain concentration c to α·c + β (per H, E, DAB channel) and return RGB in [0, 1].

    Concentrations and β are in natural-log optical-density units (see `HEDJitter` for skimage's).

    RGB → OD → HED, the affine change and HED → OD fold into one 3×3 matrix and an offset, so the
    image is touched by one log, one matmul and one exp.
    """
    mix = RGB_FROM_HED.T @ torch.diag(alpha.double()) @ HED_FROM_RGB.T
    shift = RGB_FROM_HED.T @ beta.double()
    od = torch.addmm(shift.to(rgb.dtype)[:, None], mix.to(rgb.dtype), _optical_density(rgb))
    return torch.exp(od.neg_()).clamp_(0.0, 1.0).reshape(rgb.shape)


class HEDJitter:
    """Stain augmentation in HED space (Tellez et al. 2018, "Whole-slide mitosis detection in H&E
    breast histology using PHH3 as a reference"; also Tellez et al. 2019, MedIA).

    With probability p, each stain channel s gets s' = α·s + β with α ~ U(1−θ, 1+θ) and
    β ~ U(−θ, θ); θ = 0.05 is "HED-light", 0.2 "HED-strong". `theta` may be one value or one per
    channel (H, E, DAB). Input and output: a (3, H, W) float tensor in [0, 1]; θ = 0 gives the input back.

    `units` says what β is measured in, since α is unit-free but β is not. "skimage" (default):
    scikit-image's rgb2hed concentrations, −ln(I) / ln(10⁶), the units of the common
    rgb2hed → α·s + β → hed2rgb implementations and so of the θ values in the literature;
    "ln_od": natural-log optical density −ln(I), 13.8× smaller for the same θ (θ = 0.05 moves RGB
    by 3.55 / 255 on average on CAMELYON16 tiles, against 37.7 in skimage units; docs/recipes.md).
    """

    def __init__(self, theta: float | Sequence[float] = 0.05, p: float = 1.0, units: str = "skimage"):
        thetas = (float(theta),) * 3 if isinstance(theta, (int, float)) else tuple(map(float, theta))
        if len(thetas) != 3 or min(thetas) < 0 or not 0.0 <= p <= 1.0:
            raise ValueError(f"HEDJitter needs theta >= 0 (one value or three) and p in [0, 1], got {theta}, {p}")
        if units not in HED_UNITS:
            raise ValueError(f"HEDJitter units must be one of {sorted(HED_UNITS)}, got {units!r}")
        self.theta, self.p, self.units = thetas, p, units

    def __call__(self, rgb: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not _coin(self.p, generator):
            return rgb
        theta = torch.tensor(self.theta, dtype=torch.float64)
        alpha = 1.0 + theta * (2 * torch.rand(3, generator=generator, dtype=torch.float64) - 1)
        beta = theta * (2 * torch.rand(3, generator=generator, dtype=torch.float64) - 1)
        return perturb_stains(rgb, alpha, beta * HED_UNITS[self.units])


class RandomRot90:
    """Rotate by k·90° with k uniform in {0, 1, 2, 3}: H&E tiles have no canonical orientation."""

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.rot90(image, _randint(4, generator), dims=(-2, -1)).contiguous()


class RandomFlip:
    """Horizontal flip with probability `horizontal_p`, then vertical flip with `vertical_p`."""

    def __init__(self, horizontal_p: float = 0.5, vertical_p: float = 0.5):
        self.horizontal_p, self.vertical_p = horizontal_p, vertical_p

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if _coin(self.horizontal_p, generator):
            image = F.horizontal_flip(image)
        if _coin(self.vertical_p, generator):
            image = F.vertical_flip(image)
        return image


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (radius ⌈3σ⌉, reflect padding) of a (C, H, W) float image.

    Same result as torchvision's gaussian_blur with kernel 2⌈3σ⌉+1, but as shifted adds:
    0.3–0.6 ms against 4–8 ms for its 2-D convolution on a 224² image on one CPU thread.
    """
    height, width = image.shape[-2:]
    radius = max(1, min(math.ceil(3 * sigma), height - 1, width - 1))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights = (weights / weights.sum()).tolist()
    padded = tnf.pad(image[None], (radius,) * 4, mode="reflect")[0]
    rows = torch.zeros(image.shape[0], height + 2 * radius, width, dtype=image.dtype)
    for i, weight in enumerate(weights):
        rows.add_(padded[..., i : i + width], alpha=weight)
    out = torch.zeros_like(image)
    for i, weight in enumerate(weights):
        out.add_(rows[..., i : i + height, :], alpha=weight)
    return out


_HUE_OFFSETS = torch.tensor([5.0, 3.0, 1.0]).view(3, 1, 1)


def adjust_hue(image: torch.Tensor, hue_factor: float) -> torch.Tensor:
    """Shift the HSV hue of a (3, H, W) float image by `hue_factor` turns (torchvision's meaning).

    Equal to torchvision's adjust_hue to ~1e-6 but 2× faster on CPU: value and chroma are kept,
    so RGB comes straight back from the shifted hue sector without building an HSV image.
    """
    red, green, blue = image.unbind(0)
    value = torch.maximum(torch.maximum(red, green), blue)
    low = torch.minimum(torch.minimum(red, green), blue)
    chroma = value - low
    inv = torch.where(chroma > 0, chroma, 1.0).reciprocal_()
    sector = torch.where(
        value == red,
        (green - blue).mul_(inv),
        torch.where(value == green, (blue - red).mul_(inv).add_(2), (red - green).mul_(inv).add_(4)),
    )
    k = (sector.add_(6 * hue_factor) + _HUE_OFFSETS).remainder_(6)
    return value - chroma * torch.minimum(k, 4 - k).clamp_(0, 1)


def color_jitter(image: torch.Tensor, strength: Sequence[float], g: torch.Generator | None) -> torch.Tensor:
    """torchvision ColorJitter semantics: brightness, contrast, saturation factors ~ U(1−s, 1+s),
    hue shift ~ U(−h, h), applied in a random order."""
    b, c, s, h = strength
    factors = (
        _uniform(max(0.0, 1 - b), 1 + b, g),
        _uniform(max(0.0, 1 - c), 1 + c, g),
        _uniform(max(0.0, 1 - s), 1 + s, g),
        _uniform(-h, h, g),
    )
    ops = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, adjust_hue)
    for i in torch.randperm(4, generator=g).tolist():
        if strength[i] > 0:
            image = ops[i](image, factors[i])
    return image


def crop_box(
    height: int, width: int, scale: Sequence[float], ratio: Sequence[float], g: torch.Generator | None
) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (top, left, h, w): area share ~ U(scale), log-aspect ~ U(log ratio),
    10 tries, then a centre crop at the nearest allowed aspect ratio (as torchvision does)."""
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        area = height * width * _uniform(scale[0], scale[1], g)
        aspect = math.exp(_uniform(log_low, log_high, g))
        w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return _randint(height - h + 1, g), _randint(width - w + 1, g), h, w
    w, h = width, height
    if width / height < ratio[0]:
        h = round(width / ratio[0])
    elif width / height > ratio[1]:
        w = round(height * ratio[1])
    return (height - h) // 2, (width - w) // 2, h, w


@dataclass(frozen=True)
class ViewSpec:
    """How one view is made: crop, geometry, stain and colour changes, normalisation (plain data)."""

    size: int
    scale: tuple[float, float]
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    vflip_p: float = 0.0
    rot90: bool = False
    hed_theta: float = 0.0
    hed_p: float = 0.0
    hed_units: str = "skimage"  # what HED jitter's β is measured in: skimage | ln_od (HEDJitter)
    color_jitter_p: float = 0.8
    color_jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        probs = (
            self.hflip_p,
            self.vflip_p,
            self.hed_p,
            self.color_jitter_p,
            self.grayscale_p,
            self.blur_p,
            self.solarize_p,
        )
        if any(not 0.0 <= p <= 1.0 for p in probs):
            raise ValueError(f"view probabilities must lie in [0, 1], got {probs}")
        if not 0 < self.scale[0] <= self.scale[1] <= 1 or self.size < 1:
            raise ValueError(f"view size {self.size} / scale {self.scale}: need size >= 1, 0 < lo <= hi <= 1")
        if self.hed_units not in HED_UNITS:
            raise ValueError(f"hed_units must be one of {sorted(HED_UNITS)}, got {self.hed_units!r}")
        if not 0 <= self.color_jitter[3] <= 0.5 or min(self.blur_sigma) <= 0:
            raise ValueError(
                f"hue jitter must lie in [0, 0.5] and blur sigma > 0, got {self.color_jitter}, {self.blur_sigma}"
            )


def as_chw_uint8(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A tile as a (3, H, W) uint8 tensor: from a numpy (H, W, 3) uint8 array or a (3, H, W) tensor."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected a (H, W, 3) uint8 RGB array, got {image.dtype} {image.shape}")
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    if isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3:
        return image
    raise ValueError(
        f"expected a (3, H, W) uint8 tensor or a (H, W, 3) uint8 array, got {type(image).__name__} "
        f"{getattr(image, 'dtype', '')} {tuple(getattr(image, 'shape', ()))}"
    )


def augment_view(tile: torch.Tensor, spec: ViewSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    """One view of a (3, H, W) uint8 tile, in DINO's order: bicubic RandomResizedCrop, flips and
    rot90, HED jitter, colour jitter, grayscale, blur, solarize, normalise → (3, size, size) float."""
    g = generator
    top, left, h, w = crop_box(tile.shape[-2], tile.shape[-1], spec.scale, spec.ratio, g)
    view = F.resized_crop(
        tile, top, left, h, w, [spec.size, spec.size], interpolation=F.InterpolationMode.BICUBIC, antialias=True
    )
    view = RandomFlip(spec.hflip_p, spec.vflip_p)(view, g)
    if spec.rot90:
        view = RandomRot90()(view, g)
    view = view.float().div_(255)
    if spec.hed_theta > 0 and spec.hed_p > 0:
        view = HEDJitter(spec.hed_theta, spec.hed_p, spec.hed_units)(view, g)
    if _coin(spec.color_jitter_p, g):
        view = color_jitter(view, spec.color_jitter, g)
    if _coin(spec.grayscale_p, g):
        view = F.rgb_to_grayscale(view, num_output_channels=3)
    if _coin(spec.blur_p, g):
        view = gaussian_blur(view, _uniform(spec.blur_sigma[0], spec.blur_sigma[1], g))
    if _coin(spec.solarize_p, g):
        view = F.solarize(view, SOLARIZE_THRESHOLD)
    return F.normalize(view, list(spec.mean), list(spec.std))


@dataclass(frozen=True)
class MultiCropTransform:
    """Tile → list of views (global crops first, then local crops), one `ViewSpec` per view."""

    views: tuple[ViewSpec, ...]
    n_global: int

    @property
    def n_local(self) -> int:
        """How many local crops follow the global ones."""
        return len(self.views) - self.n_global

    def __len__(self) -> int:
        return len(self.views)

    def view(self, index: int, image: np.ndarray | torch.Tensor, generator: Seed = None) -> torch.Tensor:
        """View number `index` made from `image` (used to give single views another source image)."""
        return augment_view(as_chw_uint8(image), self.views[index], as_generator(generator))

    def __call__(self, image: np.ndarray | torch.Tensor, generator: Seed = None) -> list[torch.Tensor]:
        """All views of one tile, each a normalised (3, size, size) float tensor."""
        tile, g = as_chw_uint8(image), as_generator(generator)
        return [augment_view(tile, spec, g) for spec in self.views]
