"""Pen ink on the real development set (../shared/data/pen/): marked ink stays out of the tissue mask,
and the ink model costs no tissue on CMU-1-Small-Region.svs. Skipped where the data is absent."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tiling.config import TissueConfig
from tiling.tissue import detect_tissue

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
_SPEC = importlib.util.spec_from_file_location(
    "pen_ink", Path(__file__).resolve().parents[2] / "benchmarks" / "pen_ink.py"
)
pen_ink = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(pen_ink)


@pytest.fixture(scope="module")
def data() -> Path:
    if not (DATA / pen_ink.THUMB).is_file():
        pytest.skip(f"{DATA / 'pen'} is not present")
    return DATA


@pytest.mark.parametrize("thumbnail_mpp", [8.0, 32.0])
def test_at_most_a_tenth_of_histolab_ink_inside_tissue(data, thumbnail_mpp):
    shares = pen_ink.ink_inside_tissue(data, thumbnail_mpp)
    assert shares["green"] <= 0.10 and shares["red"] <= 0.10, shares
    assert shares["blue"] is None  # histolab's blue filter marks nothing on this image


def test_ink_model_keeps_most_of_the_tissue_on_the_dev_image(data):
    """The mask still holds most of the section (ink removal is not a blanket cut)."""
    from PIL import Image

    thumbnail = np.asarray(Image.open(data / pen_ink.THUMB).convert("RGB"))
    tissue = detect_tissue(thumbnail, 8.0, TissueConfig()).tissue
    assert tissue.mean() > 0.25


def test_no_tissue_lost_on_cmu_small(data):
    if not (data / "slides" / "CMU-1-Small-Region.svs").is_file():
        pytest.skip("CMU-1-Small-Region.svs is not present")
    assert pen_ink.tissue_kept_iou(data / "slides" / "CMU-1-Small-Region.svs") >= 0.97
