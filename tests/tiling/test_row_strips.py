"""Row strips in threads give exactly the unsplit result, for each local step of tissue detection."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from tiling import row_strips, tissue
from tiling.config import TissueConfig
from tiling.row_strips import by_row_strips, strip_count


@pytest.fixture(scope="module")
def thumbnail():
    """A 700×900 thumbnail of tissue blobs, half of them crossed by pen ink (the detector tests' pictures)."""
    from tests.tiling.test_tissue import make_slide, with_ink

    img, _, regions = make_slide()
    inked, _ = with_ink(img, regions)
    return np.concatenate([np.concatenate([img, inked], axis=1), np.concatenate([inked, img], axis=1)], axis=0)[
        :700, :900
    ]


@pytest.mark.parametrize("strips", [2, 3, 5])
def test_each_local_step_is_exact_on_strips(thumbnail, strips):
    mpp = TissueConfig().thumbnail_mpp
    hsv = tissue._hsv(thumbnail)
    np.testing.assert_array_equal(by_row_strips(tissue._hsv, 0, thumbnail, out_row_axis=1, strips=strips), hsv)
    size = tissue._odd_px(tissue.MEDIAN_UM, mpp)
    median = tissue._median(hsv[1], size)
    np.testing.assert_array_equal(
        by_row_strips(lambda c: tissue._median(c, size), size // 2, hsv[1], strips=strips), median
    )
    candidate = median > 0.15
    for closing_px, opening_px in [(4.0, 2.0), (7.5, 6.5)]:  # disks, and distance transforms above 6 px
        reach = 2 * int(np.ceil(closing_px)) + 2 * int(np.ceil(opening_px))
        whole = tissue._close_then_open(candidate, closing_px, opening_px)
        step = partial(tissue._close_then_open, closing_px=closing_px, opening_px=opening_px)
        np.testing.assert_array_equal(by_row_strips(step, reach, candidate, strips=strips), whole)


def test_a_too_short_reach_would_show(thumbnail):
    """The comparison above can fail: a reach smaller than the closing's changes the mask."""
    hsv = tissue._hsv(thumbnail)
    candidate = tissue._median(hsv[1], 5) > 0.15
    whole = tissue._close_then_open(candidate, 7.5, 6.5)
    assert not np.array_equal(
        by_row_strips(lambda m: tissue._close_then_open(m, 7.5, 6.5), 0, candidate, strips=5), whole
    )


def test_detect_tissue_is_the_same_with_and_without_strips(thumbnail, monkeypatch):
    monkeypatch.setattr(row_strips, "strip_count", lambda *args: 1)
    alone = tissue.detect_tissue(thumbnail, 8.0, TissueConfig())
    monkeypatch.setattr(row_strips, "strip_count", lambda *args: 3)
    split = tissue.detect_tissue(thumbnail, 8.0, TissueConfig())
    np.testing.assert_array_equal(split.tissue, alone.tissue)
    np.testing.assert_array_equal(split.ink, alone.ink)
    assert split.saturation_threshold == alone.saturation_threshold and alone.tissue.any()


def test_small_images_are_not_split():
    assert strip_count(480, 640, 2) == 1
    assert strip_count(4000, 4000, 2000) == 1  # strips would be mostly overlap
    assert 1 <= strip_count(4000, 4000, 6) <= row_strips.MAX_STRIPS
