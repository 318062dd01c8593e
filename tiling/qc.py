"""QC pictures: what the tissue detector and the tile grid did to each slide, at a glance.

``render_qc`` draws, on the slide thumbnail, the tissue-mask outline (green), pen ink
(magenta hatching) and the kept tiles (thin semi-transparent blue squares), with a caption.
``tiling.summary_page`` puts the pictures of a whole folder of slides on one self-contained page.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin
from scipy import ndimage as ndi

from tiling.summary_page import MPP_NOTE_KEY

MAX_SIDE_PX = 2000  # long side of a QC picture; bigger thumbnails are downscaled
MIN_SIDE_PX = 800  # smaller thumbnails (small slides) are enlarged to this long side to stay readable
LINE_PX = 18  # one caption line
CAPTION_PX = 8 + 2 * LINE_PX  # caption strip of a title and a one-line legend (more lines when narrow)
OUTLINE_RGB = (0, 200, 0)  # tissue-mask outline
INK_RGB = (255, 0, 255)  # hatching over pen ink
TILE_RGBA = (30, 90, 255, 170)  # kept-tile outline
TILE_FILL_RGBA = (30, 90, 255, 40)  # light tint inside kept tiles
HATCH_PERIOD_PX = 8  # diagonal hatch: one 2-px line every this many pixels
LEGEND = "green: tissue outline   magenta: pen ink   blue: kept tiles"
LEGEND_RGB = (90, 90, 90)


def _matplotlib_font(name: str) -> Path | None:
    """A font file matplotlib ships (mpl-data/fonts/ttf), found without importing matplotlib
    (~0.2 CPU-s in every process that loads this module, measured here); None without it."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf" / name


_FONT_PATH = _matplotlib_font("DejaVuSans.ttf")


def render_qc(
    thumbnail: np.ndarray,
    tissue_mask: np.ndarray,
    ink_mask: np.ndarray | None,
    tile_boxes_thumb: np.ndarray,
    title: str,
    max_side_px: int = MAX_SIDE_PX,
    min_side_px: int = MIN_SIDE_PX,
    mpp_note: str = "",
) -> Image.Image:
    """The QC picture of one slide as an RGB image.

    Args:
        thumbnail: RGB uint8 (H, W, 3), the picture the detector saw.
        tissue_mask, ink_mask: bool (H, W) from ``tiling.tissue.detect_tissue`` (ink may be None).
        tile_boxes_thumb: (N, 4) kept tiles as x0, y0, x1, y1 in thumbnail pixels.
        title: caption text (slide name, tile count, ...).
        mpp_note: where the slide's µm/px came from (``resolution_note``), printed under the title.
        max_side_px: the thumbnail is downscaled to this long side (small ones are enlarged to
            `min_side_px` so that a small slide's picture stays readable).

    Returns:
        RGB image of size (W', H' + caption_height(W', title, mpp_note)), where (W', H') is the
        thumbnail's size after rescaling (``qc_size``); the caption is CAPTION_PX high when the
        legend fits on one line and there is no note.
    """
    _check_inputs(thumbnail, tissue_mask, ink_mask, tile_boxes_thumb)
    size = qc_size(thumbnail.shape[:2], max_side_px, min_side_px)
    scale = size[0] / thumbnail.shape[1]
    rgb = np.array(_resize(Image.fromarray(thumbnail), size, Image.Resampling.LANCZOS))
    tissue = _resize_mask(tissue_mask, size)
    if ink_mask is not None:
        _hatch(rgb, _resize_mask(ink_mask, size))
    _outline(rgb, tissue)
    picture = _draw_tiles(Image.fromarray(rgb), np.asarray(tile_boxes_thumb, float) * scale)
    return _add_caption(picture, title, mpp_note)


def qc_size(
    thumbnail_hw: tuple[int, int], max_side_px: int = MAX_SIDE_PX, min_side_px: int = MIN_SIDE_PX
) -> tuple[int, int]:
    """(width, height) of the picture part of a QC image for a thumbnail of (H, W) pixels."""
    h, w = thumbnail_hw
    scale = min(max(1.0, min_side_px / max(h, w)), max_side_px / max(h, w))
    return max(1, round(w * scale)), max(1, round(h * scale))


def save_qc_png(
    path: str | Path,
    thumbnail: np.ndarray,
    tissue_mask: np.ndarray,
    ink_mask: np.ndarray | None,
    tile_boxes_thumb: np.ndarray,
    title: str,
    mpp_note: str = "",
) -> Path:
    """Render the QC picture (see ``render_qc``) and write it as a PNG (the note also goes into its
    ``MPP_NOTE_KEY`` text chunk, for the HTML page); returns the path. Written to a temporary name
    and renamed, so a picture is never half written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_itxt(MPP_NOTE_KEY, mpp_note)
    tmp = path.with_name(path.name + ".tmp")
    picture = render_qc(thumbnail, tissue_mask, ink_mask, tile_boxes_thumb, title, mpp_note=mpp_note)
    picture.save(tmp, format="PNG", compress_level=1, pnginfo=info)
    tmp.replace(path)
    return path


def resolution_note(level0_mpp: float, mpp_source: str) -> str:
    """The line naming the slide's resolution and where it came from, e.g.
    "level 0: 0.499 µm/px from openslide.mpp" (the file), "… from tiff resolution tags", "… from --mpp-override"."""
    return f"level 0: {level0_mpp:.4g} µm/px from {mpp_source}"


def _check_inputs(thumbnail, tissue_mask, ink_mask, boxes) -> None:
    """Clear errors for mismatched inputs instead of a confusing numpy broadcast failure."""
    if thumbnail.ndim != 3 or thumbnail.shape[2] != 3 or thumbnail.dtype != np.uint8:
        raise ValueError(f"render_qc needs an RGB uint8 (H, W, 3) thumbnail, got {thumbnail.dtype} {thumbnail.shape}")
    for name, mask in (("tissue_mask", tissue_mask), ("ink_mask", ink_mask)):
        if mask is not None and mask.shape != thumbnail.shape[:2]:
            raise ValueError(f"{name} has shape {mask.shape}, thumbnail {thumbnail.shape[:2]}")
    if np.asarray(boxes).size and np.asarray(boxes).shape[-1] != 4:
        raise ValueError(f"tile_boxes_thumb must be (N, 4) x0, y0, x1, y1; got {np.shape(boxes)}")


def _resize(image: Image.Image, size: tuple[int, int], resample) -> Image.Image:
    return image if image.size == size else image.resize(size, resample)


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to (width, height)."""
    img = Image.fromarray(np.asarray(mask, np.uint8) * 255)
    return np.asarray(_resize(img, size, Image.Resampling.NEAREST)) > 127


def _hatch(rgb: np.ndarray, ink: np.ndarray) -> None:
    """Diagonal hatching over ink, in place: the stroke stays visible between the lines."""
    rgb[ink & hatch_lines(ink.shape)] = INK_RGB


def hatch_lines(shape: tuple[int, int]) -> np.ndarray:
    """Bool (h, w): pixels where (x + y) mod HATCH_PERIOD_PX < 2, one period tiled (full-size index
    arrays cost ~0.1 s on a 2,000-px picture)."""
    period = np.add.outer(np.arange(HATCH_PERIOD_PX), np.arange(HATCH_PERIOD_PX)) % HATCH_PERIOD_PX < 2
    reps = (-(-shape[0] // HATCH_PERIOD_PX), -(-shape[1] // HATCH_PERIOD_PX))
    return np.tile(period, reps)[: shape[0], : shape[1]]


def _outline(rgb: np.ndarray, mask: np.ndarray) -> None:
    """Draw a 2-px outline around the mask, in place; the image border is not outlined."""
    inner = ndi.binary_erosion(mask, border_value=1)
    outer = ndi.binary_dilation(mask)
    rgb[outer & ~inner] = OUTLINE_RGB


def _draw_tiles(picture: Image.Image, boxes: np.ndarray) -> Image.Image:
    """Kept tiles as thin semi-transparent squares on an overlay, so thousands stay readable:
    shared edges replace each other on the overlay instead of piling up."""
    overlay = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for x0, y0, x1, y1 in boxes.reshape(-1, 4):
        draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), fill=TILE_FILL_RGBA, outline=TILE_RGBA, width=1)
    return Image.alpha_composite(picture.convert("RGBA"), overlay).convert("RGB")


def _add_caption(picture: Image.Image, title: str, mpp_note: str = "") -> Image.Image:
    """Append a white strip: the title (cut with "..." if it does not fit), the resolution note,
    then the colour legend, wrapped onto as many lines as the picture's width needs (never dropped)."""
    lines = caption_lines(picture.width, title, mpp_note)
    out = Image.new("RGB", (picture.width, picture.height + _caption_px(len(lines))), "white")
    out.paste(picture, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, (text, colour) in enumerate(lines):
        draw.text((4, picture.height + 4 + i * LINE_PX), text, fill=colour, font=_font())
    return out


def caption_lines(width_px: int, title: str, mpp_note: str = "") -> list[tuple[str, tuple[int, int, int]]]:
    """(text, colour) of each caption line for a picture `width_px` wide."""
    font, room = _font(), max(1, width_px - 8)
    text = title
    while text and font.getlength(text) > room:
        text = text[:-4] + "..." if len(text) > 3 else ""
    lines = [(text, (0, 0, 0))]
    if mpp_note:
        lines += [(chunk, (0, 0, 0)) for chunk in _wrap(mpp_note.split(" "), " ", font, room)]
    return lines + [(chunk, LEGEND_RGB) for chunk in _wrap(LEGEND.split("   "), "   ", font, room)]


def caption_height(width_px: int, title: str, mpp_note: str = "") -> int:
    """Height in px of the caption strip `render_qc` adds under a picture `width_px` wide."""
    return _caption_px(len(caption_lines(width_px, title, mpp_note)))


def _caption_px(n_lines: int) -> int:
    return 8 + LINE_PX * n_lines


def _wrap(words: list[str], sep: str, font, room: float) -> list[str]:
    """Greedy line filling; a word wider than the line gets a line of its own (clipped when drawn)."""
    lines: list[str] = []
    for word in words:
        if lines and font.getlength(lines[-1] + sep + word) <= room:
            lines[-1] += sep + word
        else:
            lines.append(word)
    return lines


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """DejaVu Sans at 14 px (shipped with matplotlib; it has "µ", Pillow's bundled font does not),
    else Pillow's own font."""
    if _FONT_PATH is not None and _FONT_PATH.is_file():
        return ImageFont.truetype(str(_FONT_PATH), 14)
    try:
        return ImageFont.load_default(size=14)
    except TypeError:
        return ImageFont.load_default()
