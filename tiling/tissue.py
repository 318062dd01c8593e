"""Tissue mask on a low-resolution RGB thumbnail, and per-tile tissue fractions from it.

The detector follows the usual saturation recipe (e.g. CLAM, Lu et al. 2021): tissue is
coloured, glass is grey-white. Steps, all at the thumbnail's resolution:

1. HSV; pixels brighter than ``max_value`` (glass) or darker than ``NEAR_BLACK_VALUE``
   (scanner borders, debris) are never tissue.
2. Pen ink (blue, green, red, black marker) is found with hue/saturation/value rules, small
   specks are dropped and the rest is grown by ``pen_dilate_um`` to catch stroke halos.
3. Saturation, median-filtered over ``MEDIAN_UM`` against JPEG/sensor noise, is cut at a
   threshold: Otsu over every pixel that is neither near-black nor ink, floored at
   ``min_saturation`` so that a blank slide gives an empty mask rather than noise.
4. Morphology: closing, opening, fill small holes, drop ink again, drop small regions.

Lengths (µm) and areas (mm²) in ``TissueConfig`` are converted to pixels with the
thumbnail's actual mpp, so one setting means the same on every scanner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import rank, threshold_otsu
from skimage.morphology import footprint_rectangle

from tiling.config import TissueConfig
from tiling.row_strips import by_row_strips

NEAR_BLACK_VALUE = 0.1  # HSV value below this is scanner border / debris, never tissue
MEDIAN_UM = 40.0  # median filter on saturation: JPEG / sensor noise on tinted glass
MIN_INK_MM2 = 0.01  # ink blobs smaller than this (~100 µm square) are stain noise, not marker

# Pen-ink colour model, on (hue in degrees, saturation 0..1, value 0..1); docs/tiling_ink_and_geometry.md gives
# the sources. H&E occupies one hue band, purple (hematoxylin, ~250-290°) through pink (eosin,
# ~300-340°); marker inks are pigments outside it, or darker than any stain:
# * green and teal (yellow-green to cyan, 75-215°): no H&E stain has these hues, so a modest
#   saturation suffices (dark-green / teal strokes reach only 0.3-0.6 at 190-210°);
# * blue (215-245°), bluer than hematoxylin and far more saturated;
# * red and pinkish red (340-20°, wrapping through 0°): marker red is redder than eosin and,
#   being a pigment over glass or tissue, both saturated and bright; eosin is pinker and paler
#   (s ~0.2-0.45), blood is red but dark;
# * black and dark-purple marker: darker than any stained tissue on a thumbnail, or dark and grey.
# Checked on realistic colours (tests/tiling/test_tissue.py): eosin (230,150,190) h=330 s=.35;
# hematoxylin (90,60,140) h=262 s=.57; blue ink (30,60,170) h=227 s=.82; green (40,140,60)
# h=132 s=.71; teal (60,110,120) h=190 s=.5; red (200,30,40) h=356 s=.85; pink-red marker
# (225,95,125) h=346 s=.58; black (30,30,30) v=.12; glass (240,238,242) s=.02.
GREEN_HUE = (75.0, 215.0)
GREEN_MIN_SAT = 0.15
BLUE_HUE = (215.0, 245.0)  # hematoxylin is purple (red > green), h > 250
BLUE_MIN_SAT = 0.5
RED_HUE = (340.0, 20.0)  # wraps through 0; eosin sits at 300-340
RED_MIN_SAT = 0.5  # eosin ~0.2-0.45; pinkish-red marker 0.54-0.73, red marker > 0.8
RED_MIN_VALUE = 0.6  # blood is red and saturated but darker; marker pigment over tissue is bright
BLACK_MAX_VALUE = 0.3  # darker than stained tissue on a thumbnail: black / dark-purple marker, folds
BLACK_GREY_VALUE, BLACK_GREY_SAT = 0.45, 0.25  # dark *and* grey; dense nuclei stay purple


@dataclass
class TissueMask:
    """What the detector found on one thumbnail (all masks share the thumbnail's shape)."""

    tissue: np.ndarray  # bool (H, W): final tissue mask
    ink: np.ndarray  # bool (H, W): pen ink after dilation (all False if remove_pen is off)
    saturation_threshold: float  # saturation cut actually used (Otsu, floored)


def detect_tissue(thumbnail: np.ndarray, thumbnail_mpp: float, cfg: TissueConfig) -> TissueMask:
    """Tissue and pen-ink masks of an RGB uint8 thumbnail read at ``thumbnail_mpp`` µm/px.

    ``thumbnail_mpp`` is the resolution actually read (pyramid levels rarely hit
    ``cfg.thumbnail_mpp`` exactly); all physical sizes in ``cfg`` are converted with it.
    """
    _check_thumbnail(thumbnail, thumbnail_mpp)
    hsv = by_row_strips(_hsv, 0, thumbnail, out_row_axis=1)  # the local steps run on row strips in threads
    median_px = _odd_px(MEDIAN_UM, thumbnail_mpp)
    sat = by_row_strips(lambda channel: _median(channel, median_px), median_px // 2, hsv[1])
    val = hsv[2]
    usable = val >= NEAR_BLACK_VALUE
    ink = _pen_ink(hsv, thumbnail_mpp, cfg)
    # Ink is left out of the Otsu statistics even when it is kept in the mask: its very
    # saturated pixels would otherwise pull the cut above eosin.
    threshold = saturation_threshold(sat[usable & ~ink], cfg.min_saturation)
    if not cfg.remove_pen:
        ink = np.zeros_like(ink)
    candidate = usable & ~ink & (val <= cfg.max_value) & (sat > threshold)
    tissue = clean_mask(candidate, ink, thumbnail_mpp, cfg)
    return TissueMask(tissue=tissue, ink=ink, saturation_threshold=threshold)


def _hsv(thumbnail: np.ndarray) -> np.ndarray:
    """HSV planes (3, H, W) in float32 (hue, saturation, value, each 0..1), as skimage's rgb2hsv defines them.

    The same float32 values as converting the image to 0..1 floats first, found faster: max, min and
    which channel is largest come from the uint8 channels (the conversion is monotonic), and each
    plane is computed in place.
    """
    red8, green8, blue8 = (np.ascontiguousarray(thumbnail[..., c]) for c in range(3))
    top = np.maximum(np.maximum(red8, green8), blue8)
    out = np.empty((3, *top.shape), np.float32)
    hue, saturation, value = out
    _to_unit(top, out=value)
    delta = _to_unit(np.minimum(np.minimum(red8, green8), blue8))
    np.subtract(value, delta, out=delta)
    saturation.fill(0)
    np.divide(delta, value, out=saturation, where=top > 0)
    red, green, blue = (_to_unit(channel) for channel in (red8, green8, blue8))
    is_red = top == red8
    is_green = ~is_red & (top == green8)
    sector = np.where(is_red, green - blue, np.where(is_green, blue - red, red - green))
    np.divide(sector, np.where(delta > 0, delta, np.float32(1)), out=sector)
    sector += np.where(is_red, np.float32(0), np.where(is_green, np.float32(2), np.float32(4)))
    sector /= np.float32(6)  # now in [-1/6, 5/6]: "% 1" only adds 1 to the negatives (what remainder computes)
    np.add(sector, np.float32(1), out=sector, where=sector < 0)
    hue.fill(0)
    np.copyto(hue, sector, where=delta > 0)
    return out


def _to_unit(levels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 levels → float32 in 0..1, exactly ``levels.astype(np.float32) / 255``."""
    if out is None:
        out = np.empty(levels.shape, np.float32)
    np.copyto(out, levels)
    out /= np.float32(255)
    return out


def _median(channel: np.ndarray, size: int) -> np.ndarray:
    """Square median filter of a 0..1 channel, computed on 8-bit levels (histogram-based, ~2× faster)."""
    if size <= 1:
        return channel
    levels = np.round(channel * 255).astype(np.uint8)
    return rank.median(levels, footprint_rectangle((size, size))).astype(np.float32) / 255


def _odd_px(length_um: float, mpp: float) -> int:
    """A filter width in µm → the nearest odd pixel count (at least 1)."""
    return 2 * int(round(length_um / mpp / 2 - 0.5)) + 1 if length_um >= mpp else 1


def _check_thumbnail(thumbnail: np.ndarray, thumbnail_mpp: float) -> None:
    """Reject inputs the detector would silently misread (RGBA, float, grey)."""
    if thumbnail.ndim != 3 or thumbnail.shape[2] != 3 or thumbnail.dtype != np.uint8:
        raise ValueError(
            f"detect_tissue expects an RGB uint8 thumbnail of shape (H, W, 3); got "
            f"{thumbnail.dtype} {thumbnail.shape}. Drop alpha / convert to uint8 first."
        )
    if not thumbnail_mpp > 0:
        raise ValueError(f"thumbnail_mpp must be > 0 µm/px, got {thumbnail_mpp}")


def saturation_threshold(saturation: np.ndarray, min_saturation: float) -> float:
    """Otsu cut on the given saturation values, never below ``min_saturation``.

    Glass pixels are deliberately part of ``saturation``: Otsu then separates grey glass
    from coloured tissue. Without them Otsu would split pale eosin from dark hematoxylin
    and lose the eosin. The floor keeps a blank slide (only glass noise) empty.
    """
    values = np.asarray(saturation, dtype=np.float32).ravel()
    if values.size < 2 or values.min() == values.max():
        return float(min_saturation)
    return float(max(threshold_otsu(values), min_saturation))


def ink_colour_masks(thumbnail: np.ndarray) -> dict[str, np.ndarray]:
    """Per-colour pixel rules for marker ink: {"blue", "green", "red", "black"} → bool (H, W).

    Pixel-wise only (no size filter or dilation); see the module constants for the rules
    and the stain colours they were checked against.
    """
    return _ink_rules(_hsv(thumbnail))


def _ink_rules(hsv: np.ndarray) -> dict[str, np.ndarray]:
    """The colour rules of ``ink_colour_masks`` on HSV planes (3, H, W), hue 0..1."""
    hue, sat, val = hsv[0] * 360.0, hsv[1], hsv[2]
    return {
        "blue": (hue >= BLUE_HUE[0]) & (hue <= BLUE_HUE[1]) & (sat >= BLUE_MIN_SAT),
        "green": (hue >= GREEN_HUE[0]) & (hue <= GREEN_HUE[1]) & (sat >= GREEN_MIN_SAT),
        "red": ((hue >= RED_HUE[0]) | (hue <= RED_HUE[1])) & (sat >= RED_MIN_SAT) & (val >= RED_MIN_VALUE),
        "black": (val <= BLACK_MAX_VALUE) | ((val <= BLACK_GREY_VALUE) & (sat <= BLACK_GREY_SAT)),
    }


def detect_pen_ink(thumbnail: np.ndarray, thumbnail_mpp: float, cfg: TissueConfig) -> np.ndarray:
    """Bool mask of marker ink: colour rules, minus specks, grown by ``cfg.pen_dilate_um``.

    Specks under ``MIN_INK_MM2`` are dropped first, so a few bluish nuclei or dark pixels
    inside tissue do not punch dilated holes into the mask; marker strokes are far larger.
    """
    _check_thumbnail(thumbnail, thumbnail_mpp)
    return _pen_ink(_hsv(thumbnail), thumbnail_mpp, cfg)


def _pen_ink(hsv: np.ndarray, mpp: float, cfg: TissueConfig) -> np.ndarray:
    """``detect_pen_ink`` on HSV planes (computed once by ``detect_tissue``)."""
    ink = np.logical_or.reduce(list(_ink_rules(hsv).values()))
    ink = remove_small_regions(ink, _mm2_to_px(MIN_INK_MM2, mpp))
    return dilate(ink, cfg.pen_dilate_um / mpp)


def clean_mask(candidate: np.ndarray, ink: np.ndarray, mpp: float, cfg: TissueConfig) -> np.ndarray:
    """Closing, opening, hole filling, ink removal and small-region removal, in that order.

    Ink is removed again after the closing and hole filling, which would otherwise bridge a
    thin stroke across tissue or fill an ink dot that lies inside tissue.
    """
    closing_px, opening_px = cfg.closing_um / mpp, cfg.opening_um / mpp
    reach = 2 * math.ceil(max(0.0, closing_px)) + 2 * math.ceil(max(0.0, opening_px))
    mask = by_row_strips(lambda m: _close_then_open(m, closing_px, opening_px), reach, candidate)
    mask = fill_small_holes(mask, _mm2_to_px(cfg.max_hole_mm2, mpp))
    mask &= ~ink
    return remove_small_regions(mask, _mm2_to_px(cfg.min_region_mm2, mpp))


def _close_then_open(mask: np.ndarray, closing_px: float, opening_px: float) -> np.ndarray:
    """Closing then opening with disks: each output pixel depends only on pixels within
    2·(closing + opening) radii, which is what lets clean_mask run it on row strips."""
    mask = erode(dilate(mask, closing_px), closing_px)
    return dilate(erode(mask, opening_px), opening_px)


def _mm2_to_px(area_mm2: float, mpp: float) -> float:
    """Area in mm² → number of pixels at ``mpp`` µm/px."""
    return area_mm2 * 1e6 / (mpp * mpp)


_DISK_MAX_RADIUS_PX = 6  # up to here a disk structuring element beats the distance transform (2–8×)


def _disk(radius_px: float) -> np.ndarray:
    reach = int(np.floor(radius_px))
    dy, dx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    return dx * dx + dy * dy <= radius_px * radius_px


def dilate(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Isotropic (Euclidean disk) dilation. Small radii use the disk itself, larger ones a
    distance transform (cost independent of radius); both give the same mask."""
    if radius_px <= 0 or not mask.any():
        return mask.copy()
    if radius_px <= _DISK_MAX_RADIUS_PX:
        return ndi.binary_dilation(mask, _disk(radius_px))
    return ndi.distance_transform_edt(~mask) <= radius_px


def erode(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """Isotropic erosion; the image border counts as foreground, so tissue cut by the
    thumbnail edge is not eaten away."""
    if radius_px <= 0 or mask.all():
        return mask.copy()
    if radius_px <= _DISK_MAX_RADIUS_PX:
        return ndi.binary_erosion(mask, _disk(radius_px), border_value=1)
    return ndi.distance_transform_edt(mask) > radius_px


def remove_small_regions(mask: np.ndarray, min_area_px: float) -> np.ndarray:
    """Drop 8-connected True regions with fewer than ``min_area_px`` pixels.

    Hand-written on ``ndimage.label`` because skimage renamed the size argument of
    ``remove_small_objects`` in 0.26 (``min_size`` → ``max_size``, with ≤ semantics) and we
    support 0.24 onwards.
    """
    labels, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_area_px
    keep[0] = False
    return keep[labels]


def fill_small_holes(mask: np.ndarray, max_hole_px: float) -> np.ndarray:
    """Fill 4-connected False regions smaller than ``max_hole_px`` that do not touch the border.

    Background reaching the thumbnail edge is never a hole (it is glass around the tissue).
    """
    labels, n = ndi.label(~mask)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    small = sizes < max_hole_px
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    small[np.unique(edge)] = False
    small[0] = False
    return mask | small[labels]


def tissue_fractions(
    mask: np.ndarray,
    mask_mpp: float,
    level0_mpp: float,
    level0_xy: np.ndarray,
    tile_size_level0: float,
) -> np.ndarray:
    """Share of each square tile covered by tissue, from a mask via a summed-area table.

    Tile i has its top-left corner at ``level0_xy[i]`` (x, y in level-0 px) and side
    ``tile_size_level0`` level-0 px. Coverage is exact area weighting: the integral of the
    piecewise-constant mask over a real-valued rectangle equals the bilinear interpolation
    of the summed-area table at its corners, so mask pixels cut by a tile border count
    with the share of their area inside the tile. Parts of a tile outside the mask count
    as non-tissue. Vectorised over all N tiles; returns float32 (N,).
    """
    xy = np.asarray(level0_xy, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"level0_xy must have shape (N, 2), got {xy.shape}")
    if not (mask_mpp > 0 and level0_mpp > 0 and tile_size_level0 > 0):
        raise ValueError(
            f"mask_mpp, level0_mpp and tile_size_level0 must be > 0; got {mask_mpp}, {level0_mpp}, {tile_size_level0}"
        )
    sat = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.float64)
    sat[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1)
    scale = level0_mpp / mask_mpp  # mask px per level-0 px
    x0, y0 = xy[:, 0] * scale, xy[:, 1] * scale
    side = tile_size_level0 * scale
    x1, y1 = x0 + side, y0 + side
    inside = _sat_at(sat, x1, y1) - _sat_at(sat, x0, y1) - _sat_at(sat, x1, y0) + _sat_at(sat, x0, y0)
    return (inside / (side * side)).clip(0.0, 1.0).astype(np.float32)


def _sat_at(sat: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Tissue area in [0, x) × [0, y) (mask px, real-valued): bilinear read of the table.

    Coordinates are clamped to the mask, which is what makes outside count as non-tissue.
    """
    h, w = sat.shape[0] - 1, sat.shape[1] - 1
    x, y = np.clip(x, 0, w), np.clip(y, 0, h)
    j = np.minimum(np.floor(x).astype(np.int64), max(w - 1, 0))
    i = np.minimum(np.floor(y).astype(np.int64), max(h - 1, 0))
    fx, fy = x - j, y - i
    if w == 0 or h == 0:
        return np.zeros_like(x)
    top = sat[i, j] * (1 - fx) + sat[i, j + 1] * fx
    bottom = sat[i + 1, j] * (1 - fx) + sat[i + 1, j + 1] * fx
    return top * (1 - fy) + bottom * fy
