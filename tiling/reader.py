"""Open a whole-slide image and read RGB regions from it, with its resolution made explicit.

OpenSlide reads the slide formats (SVS, NDPI, MRXS, SCN, tiled TIFF…); plain images it cannot
open (PNG, JPEG, strip TIFF) are read whole with Pillow as a one-level slide. The level-0
resolution (µm/px) comes from, in order: an explicit override, OpenSlide's `openslide.mpp-x/y`,
the TIFF resolution tags. It is never guessed: a slide with none is refused with a message that
names the override option.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openslide
from PIL import Image, UnidentifiedImageError

from tiling.tiff_tiles import READ_PATH, TiffTileReader, open_tiff_tiles

Image.MAX_IMAGE_PIXELS = 4_000_000_000  # plain images are whole slides; the limit is memory

_CM_PER_UNIT = {"centimeter": 1.0, "inch": 2.54, "millimeter": 0.1, "micrometer": 1e-4}
_THUMBNAIL_STRIP_BYTES = 64 * 2**20
_DIRECT_VENDORS = ("generic-tiff", "aperio")  # TIFF layouts whose levels are plain tiled pages
_DIRECT_CACHE_MB = 64  # decoded-tile cache of the direct reader when the caller asks for none
_IMPLAUSIBLE_MPP = 50.0  # coarser than a 0.2× objective: 72/96/300-dpi defaults land at 85–1000 µm/px


class SlideError(Exception):
    """A slide that cannot be tiled; the message is one line naming the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def __reduce__(self) -> tuple:
        """Rebuild from (path, problem): a worker's error must unpickle in the parent process."""
        return type(self), (self.path, self.problem)


@dataclass(frozen=True)
class Resolution:
    """Level-0 microns per pixel and where that number came from (for the store's attrs)."""

    mpp: float
    source: str


def _mpp_from_openslide(props: dict[str, str]) -> Resolution | None:
    if "openslide.mpp-x" in props and "openslide.mpp-y" in props:
        return _checked_isotropic(float(props["openslide.mpp-x"]), float(props["openslide.mpp-y"]), "openslide.mpp")
    if "tiff.XResolution" in props and "tiff.ResolutionUnit" in props:
        unit = props["tiff.ResolutionUnit"].lower()
        if unit not in _CM_PER_UNIT:
            return None
        mpp_x = _CM_PER_UNIT[unit] * 1e4 / float(props["tiff.XResolution"])
        mpp_y = _CM_PER_UNIT[unit] * 1e4 / float(props.get("tiff.YResolution", props["tiff.XResolution"]))
        return _checked_isotropic(mpp_x, mpp_y, "tiff resolution tags")
    return None


def _checked_isotropic(mpp_x: float, mpp_y: float, source: str) -> Resolution:
    if not (math.isfinite(mpp_x) and math.isfinite(mpp_y) and mpp_x > 0 and mpp_y > 0):
        raise ValueError(f"invalid {source}: {mpp_x} × {mpp_y} µm/px")
    if source != "--mpp-override" and max(mpp_x, mpp_y) > _IMPLAUSIBLE_MPP:
        raise ValueError(
            f"implausible resolution {max(mpp_x, mpp_y):.4g} µm/px in the {source} (an image "
            "editor's default dpi, not a scan?); give it with --mpp-override FILE.csv (columns slide,mpp)"
        )
    if abs(mpp_x - mpp_y) > 0.02 * max(mpp_x, mpp_y):
        raise ValueError(f"non-square pixels ({mpp_x:.4f} × {mpp_y:.4f} µm/px from {source})")
    return Resolution((mpp_x + mpp_y) / 2, source)


def _mpp_from_pil(image: Image.Image) -> Resolution | None:
    """Resolution of a plain image: TIFF tags with a real unit, or PNG's pHYs in metres."""
    tags = getattr(image, "tag_v2", None)
    if tags is not None and 282 in tags and 296 in tags:
        unit = {2: "inch", 3: "centimeter"}.get(int(tags[296]))
        if unit is None:
            return None
        x_res, y_res = float(tags[282]), float(tags.get(283, tags[282]))
        return _checked_isotropic(
            _CM_PER_UNIT[unit] * 1e4 / x_res, _CM_PER_UNIT[unit] * 1e4 / y_res, "tiff resolution tags"
        )
    if image.format == "PNG" and "dpi" in image.info:
        x_dpi, y_dpi = image.info["dpi"]
        return _checked_isotropic(25400 / x_dpi, 25400 / y_dpi, "png pHYs")
    return None


class Slide:
    """A slide open for reading: levels, level-0 resolution, and RGB region reads.

    One handle per process: OpenSlide handles are not shared across fork safely.
    """

    def __init__(
        self,
        path: Path,
        backend: openslide.AbstractSlide,
        resolution: Resolution,
        vendor: str,
        direct: TiffTileReader | None = None,
    ):
        self.path = path
        self._direct = direct
        self._backend = backend
        self.level0_mpp = resolution.mpp
        self.mpp_source = resolution.source
        self.vendor = vendor
        self.level_dimensions: tuple[tuple[int, int], ...] = tuple(backend.level_dimensions)
        self.level_downsamples: tuple[float, ...] = tuple(float(d) for d in backend.level_downsamples)

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height) in pixels."""
        return self.level_dimensions[0]

    def level_mpp(self, level: int) -> float:
        """Microns per pixel of a pyramid level."""
        return self.level0_mpp * self.level_downsamples[level]

    def read_path(self, level: int) -> str:
        """Which code decodes `level`: "tiff-jpeg" (the file's own tiles) or "openslide"."""
        return READ_PATH if self._direct is not None and level in self._direct.levels else "openslide"

    def read_rgb(
        self, level0_xy: tuple[int, int], level: int, size_wh: tuple[int, int], out: np.ndarray | None = None
    ) -> np.ndarray:
        """RGB uint8 (h, w, 3) region; transparent (unscanned) pixels become white glass.

        JPEG-tiled TIFF levels are decoded from the file's own tiles (tiling/tiff_tiles.py, the
        same pixels as OpenSlide's, faster); everything else goes through OpenSlide. With `out`
        (h, w, 3) uint8 the pixels are written there and `out` is returned.
        """
        level_xy = (level0_xy[0] / self.level_downsamples[level], level0_xy[1] / self.level_downsamples[level])
        if self._direct is not None and self._direct.can_read(level, level_xy):
            try:
                return self._direct.read_rgb(level, (int(level_xy[0]), int(level_xy[1])), size_wh, out)
            except OSError as err:
                raise SlideError(
                    self.path, f"cannot decode region at level-0 {tuple(level0_xy)}, level {level}: {err}"
                ) from err
        try:
            rgba = np.asarray(self._backend.read_region(level0_xy, level, size_wh))
        except (openslide.OpenSlideError, OSError) as err:
            raise SlideError(
                self.path, f"cannot decode region at level-0 {tuple(level0_xy)}, level {level}: {err}"
            ) from err
        rgb = rgba[..., :3]
        if not (rgba.view("<u4") >= 0xFF000000).all():  # not every alpha byte 255 (one pass over whole words)
            weight = rgba[..., 3:].astype(np.float32) / 255.0
            rgb = (rgb * weight + 255.0 * (1.0 - weight) + 0.5).astype(np.uint8)
        if out is None:
            return rgb  # maybe a strided view: callers copy once when they cut tiles out of it
        np.copyto(out, rgb)
        return out

    def best_level_for(self, target_mpp: float) -> int:
        """The coarsest level whose resolution is at least as fine as `target_mpp`."""
        tolerance = 1e-3
        levels = [
            lvl for lvl in range(len(self.level_downsamples)) if self.level_mpp(lvl) <= target_mpp * (1 + tolerance)
        ]
        return max(levels, key=lambda lvl: self.level_downsamples[lvl]) if levels else 0

    def thumbnail(self, thumbnail_mpp: float) -> np.ndarray:
        """The whole slide at `thumbnail_mpp`, read in strips so memory stays bounded."""
        level = self.best_level_for(thumbnail_mpp)
        level_w, level_h = self.level_dimensions[level]
        factor = thumbnail_mpp / self.level_mpp(level)
        out_w, out_h = max(1, int(level_w / factor)), max(1, int(level_h / factor))
        rows_per_strip = max(1, int(_THUMBNAIL_STRIP_BYTES / (4 * level_w * factor)))
        strips = []
        for row0 in range(0, out_h, rows_per_strip):
            row1 = min(out_h, row0 + rows_per_strip)
            src_y0, src_y1 = round(row0 * factor), min(level_h, round(row1 * factor))
            level0_y = round(src_y0 * self.level_downsamples[level])
            strip = self.read_rgb((0, level0_y), level, (level_w, max(1, src_y1 - src_y0)))
            strips.append(np.asarray(Image.fromarray(strip).resize((out_w, row1 - row0), Image.Resampling.BOX)))
        return np.concatenate(strips, axis=0)

    def close(self) -> None:
        """Release the file handles."""
        self._backend.close()
        if self._direct is not None:
            self._direct.close()


def open_slide(path: str | Path, mpp_override: float | None = None, cache_mb: int = 0) -> Slide:
    """Open `path` as a slide, resolving its level-0 resolution; raise SlideError if impossible.

    `cache_mb` > 0 gives this handle its own cache of decoded slide tiles of that size. OpenSlide's
    default (32 MB, shared) holds less than one row of a large slide's JPEG tiles, so a raster
    scan decodes each of them about twice; tiling passes a larger cache. A JPEG-tiled TIFF or SVS
    is read from its own tiles, and then that cache belongs to the direct reader instead.
    """
    path = Path(path)
    if not path.is_file():
        raise SlideError(path, "no such file")
    backend, vendor = _open_backend(path)
    direct = None
    if vendor in _DIRECT_VENDORS:
        direct = open_tiff_tiles(path, tuple(backend.level_dimensions), (cache_mb or _DIRECT_CACHE_MB) * 2**20)
    if cache_mb > 0 and direct is None:  # with the direct reader OpenSlide only reads leftovers
        backend.set_cache(openslide.OpenSlideCache(cache_mb * 2**20))
    try:
        resolution = _resolve_resolution(path, backend, mpp_override)
    except ValueError as err:
        _close_all(backend, direct)
        raise SlideError(path, str(err)) from err
    if resolution is None:
        _close_all(backend, direct)
        raise SlideError(
            path, "no resolution (µm/px) in the file; give it with --mpp-override FILE.csv (columns slide,mpp)"
        )
    return Slide(path, backend, resolution, vendor, direct)


def _close_all(backend: openslide.AbstractSlide, direct: TiffTileReader | None) -> None:
    backend.close()
    if direct is not None:
        direct.close()


def _open_backend(path: Path) -> tuple[openslide.AbstractSlide, str]:
    try:
        vendor = openslide.OpenSlide.detect_format(str(path))
    except openslide.OpenSlideError as err:
        raise SlideError(path, f"unreadable: {err}") from err
    if vendor is not None:
        try:
            return openslide.OpenSlide(str(path)), vendor
        except openslide.OpenSlideError as err:
            raise SlideError(path, f"unreadable {vendor} slide: {err}") from err
    try:
        with Image.open(path) as probe:
            probe.verify()
        return openslide.ImageSlide(str(path)), "plain-image"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise SlideError(path, f"not a slide or image that OpenSlide or Pillow can read ({err})") from err


def _resolve_resolution(path: Path, backend: openslide.AbstractSlide, mpp_override: float | None) -> Resolution | None:
    if mpp_override is not None:
        return _checked_isotropic(mpp_override, mpp_override, "--mpp-override")
    if isinstance(backend, openslide.ImageSlide):
        with Image.open(path) as image:
            return _mpp_from_pil(image)
    return _mpp_from_openslide(dict(backend.properties))
