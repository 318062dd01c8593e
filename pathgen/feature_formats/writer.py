"""`pathgen export-features`: a tiling folder's embeddings in CLAM, TRIDENT or eva layout.

Each format's module owns its layout; this one walks the slides, writes each slide's files
(atomically) and, when a slide-label CSV is given (columns ``slide_id``, ``label``, optional
``split`` and ``case_id``), writes ``slide_labels.csv`` in CLAM's dataset-CSV columns
(``case_id, slide_id, label``) and fills eva's ``target`` / ``split`` columns from it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from pathgen.feature_formats.bags import atomic_file, iter_bags
from pathgen.feature_formats.clam import write_clam
from pathgen.feature_formats.eva import write_eva_slide, write_manifest
from pathgen.feature_formats.trident import write_trident

FORMATS = ("clam", "trident", "eva")
LABELS_FILE = "slide_labels.csv"


def read_slide_labels(path: str | Path) -> dict[str, dict[str, str]]:
    """{slide_id: {"label", "split", "case_id"}} from a CSV with at least ``slide_id`` and ``label`` columns."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{path}: unreadable slide-label CSV ({err})") from err
    if not rows or not {"slide_id", "label"} <= set(rows[0]):
        raise ValueError(f"{path}: a slide-label CSV needs the columns slide_id and label")
    return {
        row["slide_id"]: {
            "label": row["label"],
            "split": row.get("split") or "",
            "case_id": row.get("case_id") or row["slide_id"],
        }
        for row in rows
    }


def export_features(
    tile_dir: str | Path,
    name: str,
    fmt: str,
    out: str | Path,
    labels: str | Path | None = None,
    encoder_name: str | None = None,
) -> dict[str, int | str]:
    """Write embeddings `name` of every slide of `tile_dir` into `out` in format `fmt`; returns a summary."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    out = Path(out)
    slide_labels = read_slide_labels(labels) if labels else {}
    rows, n_slides, dim = [], 0, 0
    for bag in iter_bags(tile_dir, name):
        n_slides, dim = n_slides + 1, int(bag.features.shape[1])
        if fmt == "clam":
            write_clam(bag, out)
        elif fmt == "trident":
            write_trident(bag, out, encoder_name or name)
        else:
            label = slide_labels.get(bag.slide_id, {})
            rows.append(
                {
                    "origin": bag.attrs.get("slide", {}).get("path", bag.slide_id),
                    "embeddings": write_eva_slide(bag, out),
                    "target": label.get("label", ""),
                    "split": label.get("split", ""),
                    "wsi_id": bag.slide_id,
                }
            )
    if fmt == "eva":
        write_manifest(out, rows)
    if slide_labels:
        _write_labels(out / LABELS_FILE, slide_labels)
    return {"slides": n_slides, "dim": dim, "format": fmt, "out": str(out)}


def _write_labels(path: Path, labels: dict[str, dict[str, str]]) -> None:
    buffer = io.StringIO()
    with_split = any(v["split"] for v in labels.values())
    columns = ["case_id", "slide_id", "label"] + (["split"] if with_split else [])
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows({"slide_id": slide, **values} for slide, values in labels.items())
    atomic_file(path, lambda tmp: tmp.write_text(buffer.getvalue()))
