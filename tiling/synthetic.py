"""Synthetic H&E-like whole-slide images that OpenSlide opens, deterministic from a seed.

Tests, the demo and the benchmarks need slides with a known answer. A slide is defined by
low-resolution *fields* computed from the seed, one value per `MASK_DS` level-0 pixels, in
level-0 pixels of signed distance (positive inside): tissue, "tumor" (inside tissue) and pen
ink. The image upsamples the fields bilinearly and blends textures (tiling.synthetic_texture)
where they are positive, so the ground-truth masks are the same fields sampled at any
downsample. A `lymph_node` slide (as synthetic PCam's) fills its tissue, but for a stroma capsule,
with lymphoid sheets and draws its tumor as carcinoma nests: two textures of close mean colour
that differ in nuclear size and arrangement. Full resolution is a lazy pyvips pipeline over a few
numpy-made texture patches, so a 40,000 × 30,000 slide streams to disk in bounded memory. Tumor
outlines are written beside the slide as ASAP XML (tiling.annotations).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyvips
import tifffile
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree

from tiling.annotations import (
    field_outlines,
    read_asap_polygons,  # noqa: F401 (re-exported: tests import it from here)
    write_asap_polygons,
)
from tiling.synthetic_texture import GLASS_RGB, texture_mosaic

MASK_DS = 32  # level-0 pixels per value of the layout fields
CAPSULE_UM = 60.0  # stroma rim of lymph-node tissue (SyntheticSlideSpec.lymph_node)
INK_RGB = {"blue": (30, 60, 170), "green": (40, 140, 60), "red": (200, 30, 40), "black": (30, 30, 30)}
_OUTSIDE = -1e6  # field value meaning "nowhere near"
_RESOLUTION_TAGS = (282, 283, 296)  # TIFF XResolution, YResolution, ResolutionUnit
_MAX_PLAIN_PIXELS = 64_000_000


@dataclass(frozen=True)
class SyntheticSlideSpec:
    """Everything that determines a synthetic slide; equal specs give identical pixels."""

    width_px: int = 8192
    height_px: int = 6144
    mpp: float = 0.25  # level-0 µm per pixel
    seed: int = 0
    tissue_regions: int = 3  # tissue blobs
    tumor_regions: int = 0  # "tumor" areas placed inside tissue
    pen_strokes: int = 0  # marker-ink strokes, blue/green/red/black
    lymph_node: bool = False  # lymphoid sheets in a CAPSULE_UM stroma capsule, tumor as carcinoma nests
    jpeg_quality: int = 90
    tile_px: int = 256  # TIFF tile size
    pyramid: bool = True  # False: a single tiled level
    write_mpp: bool = True  # False: no resolution tags at all

    def __post_init__(self) -> None:
        problems = []
        if self.width_px < 1 or self.height_px < 1:
            problems.append(f"size {self.width_px}×{self.height_px} must be positive")
        if not (math.isfinite(self.mpp) and self.mpp > 0):
            problems.append(f"mpp {self.mpp} must be a positive number")
        if min(self.seed, self.tissue_regions, self.tumor_regions, self.pen_strokes) < 0:
            problems.append("seed, region and stroke counts must be ≥ 0")
        if self.tumor_regions > 0 and self.tissue_regions == 0:
            problems.append("tumor_regions > 0 needs tissue_regions > 0 (tumor lies in tissue)")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality {self.jpeg_quality} must be in 1..100")
        if self.tile_px < 16 or self.tile_px % 16:
            problems.append(f"tile_px {self.tile_px} must be a positive multiple of 16 (TIFF)")
        if problems:
            raise ValueError("invalid SyntheticSlideSpec: " + "; ".join(problems))


@dataclass(frozen=True)
class SyntheticSlide:
    """A written slide: the image, its ASAP tumor annotation (None without tumor), its spec."""

    path: Path
    annotation_path: Path | None
    spec: SyntheticSlideSpec


# ------------------------------------------------------------------------------ layout fields


class _Grid(NamedTuple):
    """Level-0 coordinates of the layout field's sample points (block centres) and slide size."""

    xx: np.ndarray
    yy: np.ndarray
    width: int
    height: int


@dataclass(frozen=True)
class _Fields:
    tissue: np.ndarray  # (h, w) float32 at MASK_DS, level-0 px, > 0 inside
    tumor: np.ndarray  # ≤ tissue everywhere, so tumor ⊂ tissue at any resolution
    lymphoid: np.ndarray  # ≤ tissue too; tumor is drawn over it
    ink: np.ndarray
    ink_tint: np.ndarray  # (h, w, 3) transmittance of the nearest stroke's ink
    tone: np.ndarray  # staining intensity across the slide, a factor around 1


def _layout(spec: SyntheticSlideSpec) -> _Fields:
    return _fields(
        spec.width_px,
        spec.height_px,
        spec.mpp,
        spec.seed,
        spec.tissue_regions,
        spec.tumor_regions,
        spec.pen_strokes,
        spec.lymph_node,
    )


@lru_cache(maxsize=16)
def _fields(
    width: int, height: int, mpp: float, seed: int, n_tissue: int, n_tumor: int, n_ink: int, lymph_node: bool
) -> _Fields:
    """The layout of one slide; each part has its own random stream, so e.g. adding pen
    strokes leaves tissue and tumor where they were."""
    ys = ((np.arange(-(-height // MASK_DS)) + 0.5) * MASK_DS).astype(np.float32)
    xs = ((np.arange(-(-width // MASK_DS)) + 0.5) * MASK_DS).astype(np.float32)
    grid = _Grid(*np.meshgrid(xs, ys), width, height)
    tissue = _tissue_field(grid, n_tissue, np.random.default_rng([seed, 1]))
    tumor = _tumor_field(grid, tissue, n_tumor, np.random.default_rng([seed, 2]))
    ink, tint = _ink_fields(grid, tissue, n_ink, mpp, np.random.default_rng([seed, 3]))
    tone = 1 + 0.07 * _smooth_noise(grid, 0.05, np.random.default_rng([seed, 6])).clip(-2, 2)
    lymphoid = tissue - CAPSULE_UM / mpp if lymph_node else np.full_like(tissue, _OUTSIDE)
    for array in (tissue, tumor, lymphoid, ink, tint, tone):
        array.flags.writeable = False
    return _Fields(tissue, tumor, lymphoid, ink, tint, tone)


def _smooth_noise(grid: _Grid, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise smoothed over `scale` × the short side of the slide."""
    sigma = max(1.0, scale * min(grid.width, grid.height) / MASK_DS)
    noise = ndimage.gaussian_filter(rng.standard_normal(grid.xx.shape).astype(np.float32), sigma)
    return noise / max(float(noise.std()), 1e-6)


def _blob(
    grid: _Grid, centre: tuple[float, float], radii: tuple[float, float], angle: float, rng: np.random.Generator
) -> np.ndarray:
    """Signed distance (approximately, level-0 px) to a rotated ellipse with a wavy outline."""
    cos, sin = math.cos(angle), math.sin(angle)
    dx, dy = grid.xx - centre[0], grid.yy - centre[1]
    u, v = (cos * dx + sin * dy) / radii[0], (cos * dy - sin * dx) / radii[1]
    theta, outline = np.arctan2(v, u), np.ones_like(u)
    for k in range(2, 7):
        outline += rng.uniform(0, 0.3) / k * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return ((outline - np.hypot(u, v)) * min(radii)).astype(np.float32)


def _tissue_field(grid: _Grid, n: int, rng: np.random.Generator) -> np.ndarray:
    """Blobs in distinct cells of a grid over the slide, edges roughened by smooth noise."""
    field = np.full(grid.xx.shape, _OUTSIDE, np.float32)
    if n == 0:
        return field
    cols = max(1, round(math.sqrt(n * grid.width / grid.height)))
    rows = -(-n // cols)
    cell_w, cell_h = grid.width / cols, grid.height / rows
    for cell in rng.permutation(rows * cols)[:n]:
        row, col = divmod(int(cell), cols)
        centre = ((col + 0.5 + rng.uniform(-0.1, 0.1)) * cell_w, (row + 0.5 + rng.uniform(-0.1, 0.1)) * cell_h)
        radii = (cell_w * rng.uniform(0.28, 0.42), cell_h * rng.uniform(0.28, 0.42))
        field = np.maximum(field, _blob(grid, centre, radii, rng.uniform(-0.3, 0.3), rng))
    return field + 0.03 * min(grid.width, grid.height) * _smooth_noise(grid, 0.02, rng)


def _tumor_field(grid: _Grid, tissue: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Blobs centred deep inside tissue, sized to stay inside, clipped by the tissue field."""
    raw = np.full(grid.xx.shape, _OUTSIDE, np.float32)
    if n == 0:
        return raw
    for index in rng.choice(np.flatnonzero(tissue > 0.6 * tissue.max()), size=n):
        radius = float(tissue.flat[index]) * rng.uniform(0.45, 0.75)
        radii = (radius, radius * rng.uniform(0.7, 1.0))
        centre = (float(grid.xx.flat[index]), float(grid.yy.flat[index]))
        raw = np.maximum(raw, _blob(grid, centre, radii, rng.uniform(0, np.pi), rng))
    return np.minimum(raw, tissue)


def _ink_fields(
    grid: _Grid, tissue: np.ndarray, n: int, mpp: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Thick smooth strokes (100–300 µm, at most 6% of the short side) from tissue out onto
    glass: the distance field of all strokes and, per point, the nearest stroke's tint."""
    ink = np.full(grid.xx.shape, _OUTSIDE, np.float32)
    tint = np.ones(grid.xx.shape + (3,), np.float32)
    points = np.column_stack([grid.xx.ravel(), grid.yy.ravel()])
    for _ in range(n):
        colour = INK_RGB[str(rng.choice(sorted(INK_RGB)))]
        half_width = min(rng.uniform(50, 150) / mpp, 0.03 * min(grid.width, grid.height))
        curve = _stroke_curve(grid, points, tissue.ravel() > 0, rng)
        dist, _ = cKDTree(curve).query(points, distance_upper_bound=half_width + 4 * MASK_DS)
        stroke = (half_width - dist).reshape(ink.shape)  # -inf beyond the search bound
        tint[stroke > ink] = np.asarray(colour, np.float32) / np.asarray(GLASS_RGB, np.float32)
        ink = np.maximum(ink, stroke).astype(np.float32)
    return ink, tint


def _stroke_curve(grid: _Grid, points: np.ndarray, in_tissue: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A cubic Bézier from a tissue point to a glass point 0.3–0.6 short sides away."""
    inside, outside = np.flatnonzero(in_tissue), np.flatnonzero(~in_tissue)
    start = points[rng.choice(inside if inside.size else len(points))]
    ends = points[rng.choice(outside if outside.size else len(points), size=32)]
    length = rng.uniform(0.3, 0.6) * min(grid.width, grid.height)
    end = ends[np.argmin(np.abs(np.hypot(*(ends - start).T) - length))]
    normal = np.array([start[1] - end[1], end[0] - start[0]])
    c1 = start + (end - start) / 3 + normal * rng.normal(0, 0.3)
    c2 = start + 2 * (end - start) / 3 + normal * rng.normal(0, 0.3)
    t = np.linspace(0, 1, max(64, int(4 * np.hypot(*(end - start)) / MASK_DS)))[:, None]
    return (1 - t) ** 3 * start + 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t**2 * c2 + t**3 * end


# ------------------------------------------------------------------------------------- image


def _upsample(field: np.ndarray, spec: SyntheticSlideSpec) -> pyvips.Image:
    """Bilinear MASK_DS× enlargement, pixel centres aligned as in `_sample_field`."""
    shift = 0.5 - 0.5 / MASK_DS
    return pyvips.Image.new_from_array(np.ascontiguousarray(field, np.float32)).affine(
        [MASK_DS, 0, 0, MASK_DS],
        interpolate=pyvips.Interpolate.new("bilinear"),
        idx=shift,
        idy=shift,
        extend="copy",
        oarea=[0, 0, spec.width_px, spec.height_px],
    )


def _alpha(field: np.ndarray, spec: SyntheticSlideSpec, edge_um: float) -> pyvips.Image:
    """Coverage 0..255 (uchar) from a distance field: 127.5 on the boundary, a short ramp."""
    edge_px = max(edge_um / spec.mpp, 1.0)
    return _upsample(field, spec).linear(255 / edge_px, 127.5).cast("uchar")  # cast clamps


def synthetic_slide_image(spec: SyntheticSlideSpec) -> pyvips.Image:
    """The slide as a lazy uchar sRGB pyvips image: glass, stroma, lymphoid sheets, tumor and ink, blended.

    Nothing is computed until the image is written or read, so any size streams.
    """
    fields, rng = _layout(spec), np.random.default_rng([spec.seed, 5])
    where = (spec.width_px, spec.height_px, spec.mpp, spec.seed)
    image = texture_mosaic("glass", *where, rng)
    if spec.tissue_regions:
        tissue = texture_mosaic("stroma", *where, rng)
        tumor_kind = "metastasis" if spec.lymph_node else "tumor"
        tumor = texture_mosaic(tumor_kind, *where, rng) if spec.tumor_regions else None
        if spec.lymph_node:
            lymphoid = texture_mosaic("lymphoid", *where, rng)
            tissue = _alpha(fields.lymphoid, spec, 1.5).ifthenelse(lymphoid, tissue, blend=True)
        if tumor is not None:
            tissue = _alpha(fields.tumor, spec, 1.5).ifthenelse(tumor, tissue, blend=True)
        tissue = tissue * _upsample(fields.tone, spec)
        image = _alpha(fields.tissue, spec, 1.5).ifthenelse(tissue, image, blend=True)
    if spec.pen_strokes:
        inked = image * _upsample(fields.ink_tint, spec)
        image = _alpha(fields.ink, spec, 1.0).ifthenelse(inked, image, blend=True)
    return image.cast("uchar").copy(interpretation="srgb")


# ------------------------------------------------------------------------------ ground truth


def _sample_field(field: np.ndarray, spec: SyntheticSlideSpec, downsample: int) -> np.ndarray:
    """Bilinear samples of a layout field at the centres of `downsample`-pixel blocks."""
    if downsample < 1:
        raise ValueError(f"downsample must be an integer ≥ 1, got {downsample}")

    def axis(level0_px: int, field_px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = (np.arange(-(-level0_px // downsample)) + 0.5) * downsample / MASK_DS - 0.5
        u = np.clip(u, 0, field_px - 1)
        i0 = np.floor(u).astype(np.int64)
        return i0, np.minimum(i0 + 1, field_px - 1), (u - i0).astype(np.float32)

    y0, y1, wy = axis(spec.height_px, field.shape[0])
    x0, x1, wx = axis(spec.width_px, field.shape[1])
    rows = field[y0] * (1 - wy[:, None]) + field[y1] * wy[:, None]
    return rows[:, x0] * (1 - wx) + rows[:, x1] * wx


def tissue_truth_mask(spec: SyntheticSlideSpec, downsample: int) -> np.ndarray:
    """Tissue (ink not excluded) per `downsample`² block, bool (ceil(h/ds), ceil(w/ds))."""
    return _sample_field(_layout(spec).tissue, spec, downsample) > 0


def tumor_truth_mask(spec: SyntheticSlideSpec, downsample: int) -> np.ndarray:
    """Where the "tumor" texture is, per block; a subset of `tissue_truth_mask` by construction."""
    return _sample_field(_layout(spec).tumor, spec, downsample) > 0


def lymphoid_truth_mask(spec: SyntheticSlideSpec, downsample: int) -> np.ndarray:
    """Where the lymphoid texture shows (tumor drawn over it excluded), per block; all False unless
    `spec.lymph_node`."""
    fields = _layout(spec)
    return (_sample_field(fields.lymphoid, spec, downsample) > 0) & ~tumor_truth_mask(spec, downsample)


def ink_truth_mask(spec: SyntheticSlideSpec, downsample: int) -> np.ndarray:
    """Pen ink per block, over glass or tissue alike."""
    return _sample_field(_layout(spec).ink, spec, downsample) > 0


# ----------------------------------------------------------------------------------- writing


def write_synthetic_slide(path: str | Path, spec: SyntheticSlideSpec) -> SyntheticSlide:
    """Write the slide as a tiled JPEG TIFF OpenSlide opens, plus `<stem>.xml` if it has tumor.

    Each pyramid level is its own TIFF page (OpenSlide ignores SubIFD pyramids), and the
    resolution is written in pixels per centimetre, which OpenSlide turns into openslide.mpp-x.
    """
    path = Path(path)
    options = {
        "tile": True,
        "pyramid": spec.pyramid,
        "compression": "jpeg",
        "Q": spec.jpeg_quality,
        "tile_width": spec.tile_px,
        "tile_height": spec.tile_px,
        "bigtiff": spec.width_px * spec.height_px * 3 >= 2**32,
    }
    if spec.write_mpp:  # pyvips takes pixels per millimetre whatever the unit written
        options.update(xres=1000 / spec.mpp, yres=1000 / spec.mpp, resunit="cm")
    synthetic_slide_image(spec).tiffsave(str(path), **options)
    if not spec.write_mpp:
        _strip_resolution_tags(path)
    return SyntheticSlide(path, _write_annotation(path, spec), spec)


def write_plain_image(path: str | Path, spec: SyntheticSlideSpec) -> SyntheticSlide:
    """Write a small slide as one plain image (.png, or strip .tif/.tiff), which OpenSlide
    cannot open, to exercise the reader's fallback. The resolution goes into the TIFF tags or
    the PNG pHYs chunk unless `spec.write_mpp` is False."""
    path, suffix = Path(path), Path(path).suffix.lower()
    if suffix not in (".png", ".tif", ".tiff"):
        raise ValueError(f"{path}: plain images are .png, .tif or .tiff, not {suffix!r}")
    if spec.width_px * spec.height_px > _MAX_PLAIN_PIXELS:
        raise ValueError(
            f"{path}: {spec.width_px}×{spec.height_px} is too large for a plain "
            f"image (at most {_MAX_PLAIN_PIXELS:,} px); use write_synthetic_slide"
        )
    pixels = synthetic_slide_image(spec).numpy()
    px_per_cm = 1e4 / spec.mpp
    if suffix == ".png":
        dpi = {"dpi": (2.54 * px_per_cm,) * 2} if spec.write_mpp else {}
        Image.fromarray(pixels).save(path, **dpi)
    else:
        tifffile.imwrite(
            path,
            pixels,
            photometric="rgb",
            metadata=None,
            resolution=(px_per_cm, px_per_cm),
            resolutionunit="CENTIMETER",
        )
        if not spec.write_mpp:
            _strip_resolution_tags(path)
    return SyntheticSlide(path, _write_annotation(path, spec), spec)


def write_synthetic_folder(
    out_dir: str | Path, n_slides: int, spec: SyntheticSlideSpec, tumor_every: int = 2, name_prefix: str = "slide"
) -> list[SyntheticSlide]:
    """Write `<prefix>_000.tif`… with seeds spec.seed + i, a tumor/normal set for demos.

    Slides 0, tumor_every, 2·tumor_every… get `spec.tumor_regions` tumor areas (2 if that is
    0) and an XML annotation; the others get none.
    """
    if tumor_every < 1:
        raise ValueError(f"tumor_every must be ≥ 1, got {tumor_every}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tumors = spec.tumor_regions or 2
    return [
        write_synthetic_slide(
            out_dir / f"{name_prefix}_{i:03d}.tif",
            replace(spec, seed=spec.seed + i, tumor_regions=tumors if i % tumor_every == 0 else 0),
        )
        for i in range(n_slides)
    ]


def _strip_resolution_tags(path: Path) -> None:
    """Delete the resolution tags from every IFD in place, so no reader finds an mpp.

    libvips and tifffile always write some; dropping entries keeps the IFDs valid (the
    entries stay sorted, the values they pointed to become unused bytes).
    """
    with tifffile.TiffFile(path) as tif:
        offsets, order, big = [page.offset for page in tif.pages], tif.byteorder, tif.is_bigtiff
    count_fmt, entry_size, next_fmt = ("Q", 20, "Q") if big else ("H", 12, "I")
    count_fmt, next_fmt = order + count_fmt, order + next_fmt
    with open(path, "r+b") as f:
        for offset in offsets:
            f.seek(offset)
            (count,) = struct.unpack(count_fmt, f.read(struct.calcsize(count_fmt)))
            entries = [f.read(entry_size) for _ in range(count)]
            next_ifd = f.read(struct.calcsize(next_fmt))
            kept = [e for e in entries if struct.unpack(order + "H", e[:2])[0] not in _RESOLUTION_TAGS]
            f.seek(offset)
            f.write(struct.pack(count_fmt, len(kept)) + b"".join(kept) + next_ifd)


# ------------------------------------------------------------------------- ASAP annotations


def _write_annotation(path: Path, spec: SyntheticSlideSpec) -> Path | None:
    """Write the tumor outlines beside the slide in ASAP (Camelyon16) XML, if there is tumor."""
    if spec.tumor_regions == 0:
        return None
    outlines = field_outlines(_layout(spec).tumor, MASK_DS)
    return write_asap_polygons(path.with_suffix(".xml"), outlines, group="Tumor")
