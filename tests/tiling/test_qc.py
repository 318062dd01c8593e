"""tiling.qc and tiling.summary_page: the QC picture (size, colours, tiles) and the HTML summary (escaping, rows)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tiling.qc import (
    CAPTION_PX,
    INK_RGB,
    OUTLINE_RGB,
    caption_height,
    caption_lines,
    qc_size,
    render_qc,
    resolution_note,
    save_qc_png,
)
from tiling.summary_page import qc_png_name, read_mpp_note, write_summary_html


def _scene(h=120, w=160):
    """Glass thumbnail, a pink square of tissue at rows/cols 30..90, an ink bar, two tiles."""
    thumb = np.full((h, w, 3), (240, 238, 242), np.uint8)
    tissue = np.zeros((h, w), bool)
    tissue[30:90, 30:90] = True
    thumb[tissue] = (230, 150, 190)
    ink = np.zeros((h, w), bool)
    ink[10:20, 100:150] = True
    boxes = np.array([[30, 30, 44, 44], [44, 30, 58, 44]], float)
    return thumb, tissue, ink, boxes


def _count(img: Image.Image, rgb) -> int:
    return int(np.all(np.asarray(img) == rgb, axis=-1).sum())


def test_render_qc_is_rgb_with_caption_and_outline():
    thumb, tissue, ink, boxes = _scene()
    img = render_qc(thumb, tissue, ink, boxes, "slide_1", min_side_px=0)  # at thumbnail scale
    assert img.mode == "RGB" and img.size == (160, 120 + caption_height(160, "slide_1"))
    px = np.asarray(img)
    outline = np.all(px == OUTLINE_RGB, axis=-1)
    assert outline.sum() > 4 * 55  # all four sides of the square
    assert outline[29:31, 30:90].any() and not outline[45:75, 45:75].any()  # edge, not inside
    assert _count(img.crop((100, 10, 150, 20)), INK_RGB) > 0  # hatching over the ink
    assert _count(img.crop((0, 100, 160, 120)), INK_RGB) == 0
    r, g, b = px[37, 30].astype(int)  # left edge of the first tile: blue drawn over pink
    assert b > r and (r, g, b) != (230, 150, 190)
    assert (px[120:] == 255).all(axis=-1).mean() > 0.5  # white caption strip with text
    assert (px[120:] < 128).all(axis=-1).any()


def test_render_qc_downscales_long_side_and_scales_boxes():
    thumb, tissue, ink, _ = _scene(1000, 2500)
    boxes = np.array([[2000, 500, 2500, 1000]], float)  # bottom-right corner block
    img = render_qc(thumb, tissue, ink, boxes, "big", max_side_px=2000)
    assert img.size == (2000, 800 + CAPTION_PX) == (qc_size((1000, 2500))[0], 800 + CAPTION_PX)
    px = np.asarray(img).astype(int)
    assert px[700, 1700, 2] > px[700, 1700, 0]  # tile tint moved with the scale (×0.8)
    assert qc_size((300, 200)) == (533, 800)  # small thumbnails are enlarged to MIN_SIDE_PX


def test_render_qc_without_tiles_or_ink_and_bad_shapes():
    thumb, tissue, _, _ = _scene()
    img = render_qc(thumb, tissue, None, np.zeros((0, 4)), "no tiles")
    assert img.size == (800, 600 + CAPTION_PX)
    with pytest.raises(ValueError, match="tissue_mask has shape"):
        render_qc(thumb, tissue[:10], None, np.zeros((0, 4)), "x")
    with pytest.raises(ValueError, match="RGB uint8"):
        render_qc(thumb[..., :2], tissue, None, np.zeros((0, 4)), "x")


def test_render_qc_long_title_is_cut_to_fit():
    thumb, tissue, ink, boxes = _scene()
    img = render_qc(thumb, tissue, ink, boxes, "a_very_long_slide_name_" * 20)
    assert img.size == (800, 600 + CAPTION_PX)


def test_save_qc_png_round_trips(tmp_path):
    thumb, tissue, ink, boxes = _scene()
    path = save_qc_png(tmp_path / "qc" / "s.png", thumb, tissue, ink, boxes, "s")
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (800, 600 + CAPTION_PX)


def test_micro_sign_renders_as_a_glyph_not_a_box():
    """The caption font has "µ": it draws differently from a missing glyph and from "u"."""
    from tiling.qc import _font

    font = _font()

    def ink(text):
        image = Image.new("L", (60, 24), 0)
        ImageDraw.Draw(image).text((2, 2), text, fill=255, font=font)
        return np.asarray(image)

    assert "DejaVu" in font.getname()[0]
    assert not np.array_equal(ink("µ"), ink("\uffff")) and not np.array_equal(ink("µ"), ink("u"))


@pytest.mark.parametrize("width_px", [40, 120, 300, 800])
def test_legend_is_never_dropped_on_narrow_pictures(width_px):
    lines = caption_lines(width_px, "slide", "level 0: 0.499 µm/px from openslide.mpp")
    legend = "   ".join(text for text, colour in lines[2:])
    assert all(item in legend for item in ("green: tissue outline", "magenta: pen ink", "blue: kept tiles"))
    note = "level 0: 0.499 µm/px from openslide.mpp"
    thumb, tissue, ink, boxes = _scene()
    img = render_qc(thumb, tissue, ink, boxes, "s", max_side_px=width_px, min_side_px=0, mpp_note=note)
    picture_w, picture_h = qc_size((120, 160), width_px, 0)
    assert img.size == (picture_w, picture_h + caption_height(picture_w, "s", note))
    caption = np.asarray(img)[picture_h:]
    assert (np.abs(caption.astype(int) - 90).sum(axis=-1) < 30).any()  # grey legend text drawn


def test_qc_picture_and_page_show_the_mpp_source(tmp_path):
    thumb, tissue, ink, boxes = _scene()
    note = resolution_note(0.4990, "tiff resolution tags")
    assert note == "level 0: 0.499 µm/px from tiff resolution tags"
    save_qc_png(tmp_path / qc_png_name("s1"), thumb, tissue, ink, boxes, "s1", note)
    assert read_mpp_note(tmp_path / qc_png_name("s1")) == note
    rows = [
        {"slide_id": "s1", "status": "done", "tiles": "3", "level0_mpp": "0.499"},
        {"slide_id": "s2", "status": "done", "mpp_source": "--mpp-override"},
    ]
    page = write_summary_html(tmp_path / "index.html", rows, ".").read_text("utf-8")
    assert "<th>µm/px source</th>" in page
    assert "<td>tiff resolution tags</td>" in page and "<td>--mpp-override</td>" in page
    assert not list(tmp_path.glob("*.tmp"))


def _rows():
    return [
        {"slide": "ok slide 1", "status": "done", "reason": "", "tiles": 1234, "mpp": 0.2527, "seconds": 12.34},
        {
            "slide": "<script>alert(1)</script>",
            "status": "done",
            "reason": None,
            "tiles": "7",
            "mpp": "0.5",
            "seconds": "3",
        },
        {
            "slide": "broken",
            "status": "failed",
            "reason": "cannot open: <bad> & ugly",
            "tiles": 0,
            "mpp": None,
            "seconds": 0.2,
        },
        {"slide": "old", "status": "skipped", "reason": "complete", "tiles": 50},
    ]


def test_summary_html_escapes_and_lists_every_row(tmp_path):
    qc_dir = tmp_path / "qc"
    qc_dir.mkdir()
    Image.new("RGB", (4, 4)).save(qc_dir / qc_png_name("ok slide 1"))
    page = write_summary_html(tmp_path / "summary.html", _rows(), "qc").read_text("utf-8")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "cannot open: &lt;bad&gt; &amp; ugly" in page
    for name in ("ok slide 1", "broken", "old"):
        assert f"<td>{name}</td>" in page
    assert len(re.findall(r"<tr class=", page)) == 4
    assert re.search(r"done: 2.*failed: 1.*skipped: 1.*total: 4", page)
    assert page.count('class="failed"') == 1
    assert '<a href="qc/ok%20slide%201.png"><img src="qc/ok%20slide%201.png"' in page
    assert page.count("<img") == 1  # only slides whose PNG exists get a picture
    assert "1234" in page and "0.253" in page and "12.3" in page
    assert "http" not in page and "<link" not in page  # self-contained


def test_summary_html_takes_manifest_rows_as_they_are(tmp_path):
    """tiling.manifest rows (CSV strings, slide_id / level0_mpp) with the page in the QC folder."""
    Image.new("RGB", (4, 4)).save(tmp_path / qc_png_name("s1"))
    rows = [
        {
            "slide_id": "s1",
            "path": "/x/s1.svs",
            "status": "done",
            "reason": "",
            "tiles": "12",
            "seconds": "1.5",
            "level0_mpp": "0.2499",
            "finished": "",
        }
    ]
    page = write_summary_html(tmp_path / "index.html", rows, ".").read_text("utf-8")
    assert "<td>s1</td>" in page and "0.250" in page and 'src="./s1.png"' in page


def test_summary_html_with_no_rows(tmp_path):
    page = write_summary_html(tmp_path / "s.html", [], "qc").read_text("utf-8")
    assert "total: 0" in page and "<table>" in page


def test_the_caption_font_is_matplotlibs_dejavu_found_without_importing_it():
    import os
    import subprocess
    import sys
    from pathlib import Path

    import matplotlib

    import tiling.qc

    assert tiling.qc._FONT_PATH == Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    assert tiling.qc._FONT_PATH.is_file()
    repo = Path(__file__).resolve().parents[2]
    code = "import sys, tiling.qc; print('matplotlib' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo, env=env)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("shape", [(1, 1), (7, 9), (16, 16), (123, 45)])
def test_hatch_lines_are_the_diagonal_rule(shape):
    from tiling.qc import HATCH_PERIOD_PX, hatch_lines

    yy, xx = np.indices(shape)
    np.testing.assert_array_equal(hatch_lines(shape), (xx + yy) % HATCH_PERIOD_PX < 2)
