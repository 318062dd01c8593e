"""Polygon annotations: outlines of a region field, and ASAP (Camelyon16) XML write and read.

The format ASAP and the Camelyon16/17 challenges use: `<ASAP_Annotations>` with one
`<Annotation Type="Polygon" PartOfGroup=…>` per region, its `<Coordinate Order X Y>` points in
level-0 pixels, and an `<AnnotationGroups>` list of the group names.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from skimage.measure import approximate_polygon, find_contours

_FAR_OUTSIDE = -1e6  # padding: the outline sits on the edge samples (as tiling.synthetic's fields)


def field_outlines(field: np.ndarray, scale_px: int) -> list[np.ndarray]:
    """Outer boundary of each region where `field` > 0, as level-0 (K, 2) x, y polygons.

    `field` holds one value per `scale_px` level-0 pixels, sampled at block centres. It is
    padded with a far-negative value so regions touching the edge close there; holes are
    left out.
    """
    outlines = []
    padded = np.pad(field, 1, constant_values=_FAR_OUTSIDE)
    for contour in find_contours(padded, 0.0, positive_orientation="high"):
        rows, cols = contour[:, 0], contour[:, 1]
        if np.sum(cols[:-1] * rows[1:] - cols[1:] * rows[:-1]) > 0:
            continue  # a hole in a region (clockwise in x, y-down coordinates)
        contour = approximate_polygon(contour, tolerance=0.2)[:-1]  # closed: drop the repeat
        outlines.append((contour[:, ::-1] - 0.5) * scale_px - 0.5)  # -1 pad, +0.5 centre
    return outlines


def write_asap_polygons(xml_path: str | Path, polygons: list[np.ndarray], group: str = "Tumor") -> Path:
    """Write level-0 (K, 2) x, y polygons as one ASAP annotation group; returns the path."""
    root = ET.Element("ASAP_Annotations")
    annotations = ET.SubElement(root, "Annotations")
    for i, polygon in enumerate(polygons):
        annotation = ET.SubElement(
            annotations, "Annotation", Name=f"Annotation {i}", Type="Polygon", PartOfGroup=group, Color="#F4FA58"
        )
        coordinates = ET.SubElement(annotation, "Coordinates")
        for order, (x, y) in enumerate(polygon):
            ET.SubElement(coordinates, "Coordinate", Order=str(order), X=f"{x:.2f}", Y=f"{y:.2f}")
    group_element = ET.SubElement(
        ET.SubElement(root, "AnnotationGroups"), "Group", Name=group, PartOfGroup="None", Color="#00ff00"
    )
    ET.SubElement(group_element, "Attributes")
    ET.indent(root)
    xml_path = Path(xml_path)
    ET.ElementTree(root).write(xml_path, encoding="utf-8", xml_declaration=True)
    return xml_path


def read_asap_polygons(xml_path: str | Path, groups: tuple[str, ...] | None = None) -> list[np.ndarray]:
    """Polygons of an ASAP/Camelyon16 XML as level-0 (K, 2) float x, y arrays, in file order.

    `groups` keeps only annotations whose PartOfGroup is listed (Camelyon16 uses "Tumor",
    "_0", "_1" for tumor and "_2" for exclusions). DOCTYPE/ENTITY declarations are refused
    because the standard library parser would expand them (entity-expansion attacks).
    """
    data = Path(xml_path).read_bytes()
    if re.search(rb"<!\s*(DOCTYPE|ENTITY)", data, re.IGNORECASE):
        raise ValueError(f"{xml_path}: DOCTYPE/ENTITY declarations are not allowed in annotations")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as error:
        raise ValueError(f"{xml_path}: not well-formed XML ({error})") from error
    polygons = []
    for annotation in root.iter("Annotation"):
        if groups is not None and annotation.get("PartOfGroup") not in groups:
            continue
        points = sorted(annotation.iter("Coordinate"), key=lambda c: int(c.get("Order", "0")))
        if points:
            polygons.append(np.array([[float(p.get("X")), float(p.get("Y"))] for p in points]))
    return polygons
