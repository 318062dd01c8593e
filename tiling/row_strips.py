"""Run a row-local image operation on overlapping row strips in threads, with the same result.

Planning a slide (thumbnail → tissue mask) is the one serial step of tiling it: every worker but
the planning one waits for the plan. Its costly steps (HSV, the saturation median, the closing and
opening) are local: an output row depends only on input rows within a known reach. Cut into
strips that overlap by that reach, each strip's inner rows are exactly the whole image's, so the
strips can run in threads (NumPy, SciPy's ndimage and scikit-image's rank filters release the
GIL) and their inner rows are stitched back. The caller states the reach; tests compare with
the unsplit operation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

MIN_PIXELS = 1_000_000  # below this (a thumbnail of a small slide) threads cost more than they save
MAX_STRIPS = 4


def strip_count(height: int, width: int, reach: int) -> int:
    """How many strips to cut an image of (height, width) into: one per available core (at most
    MAX_STRIPS), one if the image is small or too short for strips much taller than `reach`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if height * width < MIN_PIXELS:
        return 1
    return max(1, min(MAX_STRIPS, cores, height // max(1, 4 * reach)))


def by_row_strips(
    fn: Callable[..., np.ndarray], reach: int, *images: np.ndarray, out_row_axis: int = 0, strips: int | None = None
) -> np.ndarray:
    """`fn(*images)`, computed on row strips in threads and stitched.

    Every image has rows on axis 0 and the same height; `fn`'s output has its rows on
    `out_row_axis`. Exact if every output row depends only on input rows at most `reach` away
    (with the image's own top and bottom treated by `fn` as it treats a strip's).
    """
    height, width = images[0].shape[:2]
    count = strip_count(height, width, reach) if strips is None else strips
    if count <= 1:
        return fn(*images)
    bounds = np.linspace(0, height, count + 1).astype(int)
    spans = [(max(0, start - reach), min(height, stop + reach)) for start, stop in zip(bounds[:-1], bounds[1:])]
    with ThreadPoolExecutor(count, thread_name_prefix="row-strip") as pool:
        parts = list(pool.map(lambda span: fn(*(image[span[0] : span[1]] for image in images)), spans))
    inner = []
    for part, (lo, _), start, stop in zip(parts, spans, bounds[:-1], bounds[1:]):
        rows = [slice(None)] * part.ndim
        rows[out_row_axis] = slice(start - lo, stop - lo)
        inner.append(part[tuple(rows)])
    return np.concatenate(inner, axis=out_row_axis)
