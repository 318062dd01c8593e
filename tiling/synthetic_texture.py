"""Texture patches of synthetic H&E: glass, stroma (collagen, fibroblasts, lymphocytes), tumor, and
for lymph nodes lymphoid sheets and metastatic carcinoma nests.

Each kind is a few square patches made with numpy from the seed, periodic and blended to a
shared base stream near their borders, so they tile edge to edge in any order without seams;
`texture_mosaic` covers a slide with them as a lazy pyvips image. Colours follow Beer–Lambert:
optical densities of eosin and hematoxylin add, as in real stained tissue. Used by
tiling.synthetic, which decides where each texture shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import pyvips
import scipy.fft
from scipy import ndimage

GLASS_RGB = (240, 238, 242)


def _optical_density(rgb: tuple[int, int, int]) -> np.ndarray:
    return -np.log(np.asarray(rgb, np.float32) / 255)


_GLASS_OD = _optical_density(GLASS_RGB)
_EOSIN_OD = _optical_density((230, 150, 190)) - _GLASS_OD  # one unit of eosin on glass
_HEMA_OD = _optical_density((90, 60, 140)) - _GLASS_OD  # one unit of hematoxylin on glass


@dataclass(frozen=True)
class _PatchRandom:
    """Random streams for one texture patch whose fields equal a shared base near its edges.

    The base stream is the same for every patch of a kind and its fields are periodic, so
    patches tile edge to edge in any order without seams (the idea of Wang tiles); each patch
    fades from the base at its border to its own fields inside.
    """

    base: np.random.Generator
    own: np.random.Generator
    window: np.ndarray  # 0 at the patch border, 1 inside
    mpp: float

    def field(self, make: Callable[[np.random.Generator], np.ndarray]) -> np.ndarray:
        """Blend of `make(base)` and `make(own)` that keeps unit variance."""
        w = self.window
        return w * make(self.own) + np.sqrt(1 - w * w) * make(self.base)

    def noise(self, sigma_y_um: float, sigma_x_um: float) -> np.ndarray:
        """Smooth unit-variance noise with the given σ in µm along y and x."""
        n, sy, sx = len(self.window), sigma_y_um / self.mpp, sigma_x_um / self.mpp
        return self.field(lambda rng: _periodic_noise(rng, n, sy, sx))


def _periodic_noise(rng: np.random.Generator, n: int, sigma_y: float, sigma_x: float) -> np.ndarray:
    """n×n Gaussian-smoothed white noise (σ in pixels), zero mean, unit variance, periodic.

    Drawn directly as a random spectrum shaped by the Gaussian's transfer function; σ is
    capped at n/4 so that the patch still holds several independent blobs.
    """
    gain = _gaussian_gain(n, round(min(sigma_y, n / 4), 3), round(min(sigma_x, n / 4), 3))
    parts = rng.standard_normal((2,) + gain.shape, dtype=np.float32) * gain
    spectrum = np.empty(gain.shape, np.complex64)
    spectrum.real, spectrum.imag = parts
    smooth = scipy.fft.irfft2(spectrum, s=(n, n), workers=-1)
    return smooth * (1 / max(float(smooth[::4, ::4].std()), 1e-12))


@lru_cache(maxsize=64)
def _gaussian_gain(n: int, sigma_y: float, sigma_x: float) -> np.ndarray:
    ky, kx = np.fft.fftfreq(n)[:, None], np.fft.rfftfreq(n)[None, :]
    gain = np.exp(-2 * np.pi**2 * ((ky * sigma_y) ** 2 + (kx * sigma_x) ** 2))
    gain[0, 0] = 0  # no constant offset
    return gain.astype(np.float32)


def _stain_rgb(eosin: np.ndarray, hema: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """RGB uint8 of stain amounts on glass (Beer–Lambert), with a little sensor noise."""
    od = eosin[..., None] * -_EOSIN_OD
    od -= hema[..., None] * _HEMA_OD
    od -= _GLASS_OD
    rgb = np.exp(np.minimum(od, 0, out=od), out=od)  # nothing is brighter than the lamp
    rgb *= 255
    rgb += 1.5 * rng.standard_normal(eosin.shape, dtype=np.float32)[..., None] + 0.5
    return np.clip(rgb, 0, 255, out=rgb).astype(np.uint8)


class _Nuclei(NamedTuple):
    """A population of nuclei: density, semi-axes (µm), orientation spread, darkness."""

    per_mm2: float
    long_um: tuple[float, float]
    short_um: tuple[float, float]
    angle_sd: float | None  # radians around the fibre direction; None: any orientation
    strength: float  # hematoxylin amount at full chromatin
    rim: float = 0.0  # > 0: vesicular, chromatin gathered along the membrane


_FIBROBLASTS = _Nuclei(900, (3.0, 6.0), (1.0, 1.8), 0.3, 1.0)
_LYMPHOCYTES = _Nuclei(400, (2.5, 3.2), (2.2, 3.0), None, 1.4)
_TUMOR_NUCLEI = _Nuclei(5000, (4.0, 7.0), (3.0, 5.0), None, 1.5, rim=0.35)
_LYMPHOID_NUCLEI = _Nuclei(15000, (2.4, 3.0), (2.2, 2.8), None, 1.3)
_METASTASIS_NUCLEI = _Nuclei(9000, (4.0, 7.0), (3.0, 5.0), None, 1.25, rim=0.35)


def _draw_nuclei(
    hema: np.ndarray, rand: _PatchRandom, chromatin: np.ndarray, kind: _Nuclei, where: np.ndarray | None = None
) -> None:
    """Darken `hema` in place with soft, slightly irregular elliptic nuclei (only those centred
    where `where` is True, if given).

    Nuclei centred in the patch border come from the shared base stream, so borders match
    between patches; they wrap around the patch edges like the periodic fields.
    """
    n, mpp = len(hema), rand.mpp
    for rng, from_base in ((rand.base, True), (rand.own, False)):
        for _ in range(rng.poisson(kind.per_mm2 * (n * mpp / 1000) ** 2)):
            a, b = rng.uniform(*kind.long_um) / mpp, rng.uniform(*kind.short_um) / mpp
            cy, cx = rng.integers(n), rng.integers(n)
            angle = rng.uniform(0, np.pi) if kind.angle_sd is None else rng.normal(0, kind.angle_sd)
            wobble = rng.uniform(0, 0.12, 2), rng.uniform(0, 2 * np.pi, 2)
            if (rand.window[cy, cx] < 0.5) == from_base and (where is None or where[cy, cx]):
                r, dose = _nucleus_dose(a, b, angle, wobble, kind.rim)
                box = np.ix_((np.arange(-r, r + 1) + cy) % n, (np.arange(-r, r + 1) + cx) % n)
                hema[box] = np.maximum(hema[box], dose * kind.strength * chromatin[box])


def _nucleus_dose(
    a: float, b: float, angle: float, wobble: tuple[np.ndarray, np.ndarray], rim: float
) -> tuple[int, np.ndarray]:
    """Coverage (0..1, anti-aliased edge) of one nucleus on a (2r+1)² box around its centre."""
    r = int(math.ceil(1.3 * a)) + 1
    dy, dx = np.ogrid[-r : r + 1, -r : r + 1]
    u = (math.cos(angle) * dx + math.sin(angle) * dy) / a
    v = (math.cos(angle) * dy - math.sin(angle) * dx) / b
    theta = np.arctan2(v, u)
    q = np.hypot(u, v) / (
        1 + wobble[0][0] * np.cos(2 * theta + wobble[1][0]) + wobble[0][1] * np.cos(3 * theta + wobble[1][1])
    )
    dose = np.clip((1 - q) * b + 0.5, 0, 1)
    return r, dose * (1 - rim + rim * np.minimum(q, 1) ** 2) if rim else dose


def _warped(rng: np.random.Generator, n: int, mpp: float) -> np.ndarray:
    """Collagen-like fibres: thin, long noise streaks bent by a smooth vertical displacement."""
    fibres = _periodic_noise(rng, n, 0.8 / mpp, 10 / mpp)
    bend_sigma = min(50 / mpp, n / 4)  # bends ~50 µm long, if the patch is big enough
    bend = 0.4 * bend_sigma * _periodic_noise(rng, n, bend_sigma, bend_sigma)
    rows = np.arange(n, dtype=np.float32)[:, None] + bend
    top = np.floor(rows)
    weight, top = rows - top, top.astype(np.int64) % n
    upper = np.take_along_axis(fibres, top, axis=0)
    lower = np.take_along_axis(fibres, (top + 1) % n, axis=0)
    return upper + weight * (lower - upper)


def _stroma_patch(rand: _PatchRandom) -> np.ndarray:
    """Wavy eosinophilic collagen with pale clefts, sparse spindle and round nuclei."""
    fibres = rand.field(lambda rng: _warped(rng, len(rand.window), rand.mpp))
    eosin = (0.2 + 0.9 / (1 + np.exp(-2.5 * fibres))) * (1 + 0.15 * rand.noise(50, 50))
    hema = np.full_like(eosin, 0.04)
    chromatin = 0.8 + 0.2 * rand.noise(0.4, 0.4)
    _draw_nuclei(hema, rand, chromatin, _FIBROBLASTS)
    _draw_nuclei(hema, rand, chromatin, _LYMPHOCYTES)
    return _stain_rgb(eosin, hema, rand.own)


def _tumor_patch(rand: _PatchRandom) -> np.ndarray:
    """Sheets of crowded cells: purplish cytoplasm, large pleomorphic vesicular nuclei."""
    cells = rand.noise(3, 3)
    eosin, hema = 0.55 + 0.12 * cells, 0.15 + 0.05 * cells
    _draw_nuclei(hema, rand, 0.8 + 0.2 * rand.noise(0.4, 0.4), _TUMOR_NUCLEI)
    return _stain_rgb(eosin, hema, rand.own)


def _lymphoid_patch(rand: _PatchRandom) -> np.ndarray:
    """Lymph-node cortex: packed small round dark lymphocyte nuclei (≈ 5 µm) in scant cytoplasm,
    evenly spread. Its mean and sd of RGB are close to "metastasis", so the two differ in structure."""
    cells = rand.noise(2, 2)
    eosin, hema = 0.55 + 0.12 * cells, 0.15 + 0.05 * cells
    _draw_nuclei(hema, rand, 0.8 + 0.2 * rand.noise(0.4, 0.4), _LYMPHOID_NUCLEI)
    return _stain_rgb(eosin, hema, rand.own)


def _metastasis_patch(rand: _PatchRandom) -> np.ndarray:
    """Carcinoma in a lymph node: cohesive nests (tens of µm, ~60 % of the area) of large
    pleomorphic vesicular nuclei (6–14 µm) in purplish cytoplasm, parted by pale clefts; a little
    paler than "lymphoid" on average, as lymph-node metastases are."""
    nests = rand.noise(10, 10) > -0.2
    cells = rand.noise(3, 3)
    inside = ndimage.gaussian_filter(nests.astype(np.float32), 1.0 / rand.mpp, mode="wrap")
    eosin = 0.5 + 0.3 * inside + 0.1 * cells
    hema = 0.05 + 0.1 * inside + 0.04 * cells
    _draw_nuclei(hema, rand, 0.8 + 0.2 * rand.noise(0.4, 0.4), _METASTASIS_NUCLEI, where=nests)
    return _stain_rgb(eosin, hema, rand.own)


def _glass_patch(rand: _PatchRandom) -> np.ndarray:
    """Near-white glass with faint smooth unevenness and sensor noise."""
    eosin = 0.008 * rand.noise(20, 20)
    return _stain_rgb(eosin, np.zeros_like(eosin), rand.own)


_PATCH_KINDS = {  # maker and number of patches
    "glass": (_glass_patch, 1),
    "stroma": (_stroma_patch, 4),
    "tumor": (_tumor_patch, 3),
    "lymphoid": (_lymphoid_patch, 3),
    "metastasis": (_metastasis_patch, 3),
}


def _patch_px(width_px: int, height_px: int) -> int:
    """Texture patch side: small slides get small (cheap) patches."""
    return 512 if max(width_px, height_px) <= 4096 else 1024


@lru_cache(maxsize=6)
def _patches(kind: str, seed: int, mpp: float, n: int) -> tuple[pyvips.Image, ...]:
    """The texture patches of one kind as in-memory pyvips images (cached: tests reuse them)."""
    make, count = _PATCH_KINDS[kind]
    edge = np.minimum(np.arange(n), np.arange(n)[::-1]).astype(np.float32)
    edge = np.minimum(edge[:, None], edge[None, :])
    ramp = np.clip((edge - n / 32) / (n / 12), 0, 1)
    window = ramp * ramp * (3 - 2 * ramp)
    stream = [seed, 4, list(_PATCH_KINDS).index(kind)]
    return tuple(
        pyvips.Image.new_from_array(
            make(
                _PatchRandom(np.random.default_rng(stream + [0]), np.random.default_rng(stream + [1 + i]), window, mpp)
            )
        )
        for i in range(count)
    )


def texture_mosaic(
    kind: str, width_px: int, height_px: int, mpp: float, seed: int, rng: np.random.Generator
) -> pyvips.Image:
    """Cover a slide with texture patches of one kind ("glass", "stroma", "tumor", "lymphoid",
    "metastasis") in random order drawn from `rng` (lazy, seamless); the patches themselves depend on seed and mpp."""
    n = _patch_px(width_px, height_px)
    patches = _patches(kind, seed, mpp, n)
    cols, rows = -(-width_px // n), -(-height_px // n)
    tiles = [patches[i] for i in rng.integers(len(patches), size=cols * rows)]
    return pyvips.Image.arrayjoin(tiles, across=cols).crop(0, 0, width_px, height_px)
