"""One self-contained HTML page over a folder of tiled slides: their QC pictures, status and resolution.

The tiling run's parent process writes it at the end, so this module imports nothing beyond Pillow
(to read the resolution note a QC picture carries): drawing the pictures (tiling.qc) needs
matplotlib and SciPy, which only the workers load.
"""

from __future__ import annotations

import html
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from PIL import Image

MPP_NOTE_KEY = "pathgen:mpp"  # PNG text chunk holding a QC picture's resolution note (tiling.qc writes it)


def read_mpp_note(png_path: str | Path) -> str:
    """The resolution note stored in a QC picture ("" if there is none or the file is unreadable)."""
    try:
        with Image.open(png_path) as image:
            return str(getattr(image, "text", {}).get(MPP_NOTE_KEY, ""))
    except (OSError, ValueError):
        return ""


def qc_png_name(slide: str) -> str:
    """File name of a slide's QC picture inside the QC folder (path separators flattened)."""
    return slide.replace("/", "_").replace("\\", "_") + ".png"


_STYLE = """body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:middle}
tr.failed{background:#fdd}tr.skipped{color:#777}.num{text-align:right}
.counts span{margin-right:1.5em;font-weight:bold}img{max-width:200px;max-height:150px}"""
_COLUMNS = ("QC", "slide", "status", "reason", "tiles", "mpp", "µm/px source", "seconds")


def write_summary_html(out_path: str | Path, rows: list[dict], qc_dir_rel: str) -> Path:
    """One self-contained HTML page over a folder of slides; returns its path.

    Each row is a dict with keys ``slide, status, reason, tiles, mpp, mpp_source, seconds`` (missing
    ones are left blank; the manifest's ``slide_id`` and ``level0_mpp`` are accepted for
    ``slide`` and ``mpp``, so ``tiling.manifest.read_manifest`` rows can be passed as they
    are) and optionally ``qc_png`` (file name inside ``qc_dir_rel``, default
    ``qc_png_name(slide)``). ``qc_dir_rel`` is relative to the page's folder; a QC
    picture is shown (as a link to the full-size PNG) only if the file exists; a row without
    ``mpp_source`` takes it from the picture's resolution note (``read_mpp_note``). Failed rows
    are highlighted; counts of done / failed / skipped head the page. Every user-provided
    string is escaped with ``html.escape``.
    """
    out_path = Path(out_path)
    counts = Counter(str(row.get("status") or "") for row in rows)
    shown = ["done", "failed", "skipped"] + sorted(set(counts) - {"done", "failed", "skipped"})
    header = "".join(f"<span>{html.escape(s)}: {counts.get(s, 0)}</span>" for s in shown)
    body = "\n".join(_summary_row(row, out_path.parent, qc_dir_rel) for row in rows)
    head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>pathgen tiling summary</title><style>{_STYLE}</style></head><body>\n"
        f'<h1>pathgen tiling summary</h1>\n<p class="counts">{header}'
        f"<span>total: {len(rows)}</span></p>\n"
        f"<table>\n<tr>{head}</tr>\n{body}\n</table>\n</body></html>\n"
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(page, encoding="utf-8")
    return out_path


def _summary_row(row: dict, page_dir: Path, qc_dir_rel: str) -> str:
    """One <tr>: QC thumbnail link (if the PNG exists) and the escaped fields."""
    slide = str(_first(row, "slide", "slide_id"))
    status = str(row.get("status") or "")
    png = f"{qc_dir_rel.rstrip('/')}/{row.get('qc_png') or qc_png_name(slide)}"
    source = str(row.get("mpp_source") or "")
    if (page_dir / png).is_file():
        href = html.escape(quote(png), quote=True)
        qc = f'<a href="{href}"><img src="{href}" alt="QC {html.escape(slide)}"></a>'
        source = source or read_mpp_note(page_dir / png).rpartition(" from ")[2]
    else:
        qc = "—"
    cells = [
        qc,
        html.escape(slide),
        html.escape(status),
        html.escape(str(row.get("reason") or "")),
        _number(row.get("tiles"), "d"),
        _number(_first(row, "mpp", "level0_mpp"), ".3f"),
        html.escape(source),
        _number(row.get("seconds"), ".1f"),
    ]
    tds = [f'<td class="num">{c}</td>' if i in (4, 5, 7) else f"<td>{c}</td>" for i, c in enumerate(cells)]
    css = status if status in ("failed", "skipped") else ""
    return f'<tr class="{css}">' + "".join(tds) + "</tr>"


def _first(row: dict, *keys: str):
    """The first of ``keys`` that ``row`` has a non-empty value for ("" if none)."""
    return next((row[k] for k in keys if row.get(k) not in (None, "")), "")


def _number(value, spec: str) -> str:
    """Format a number (int, float or numeric string from a CSV); blank if missing; escaped
    as text if it is not a number."""
    if value is None or value == "":
        return ""
    try:
        number = float(value)
        return format(int(number) if spec == "d" else number, spec)
    except (TypeError, ValueError, OverflowError):
        return html.escape(str(value))
