"""Shared fixtures: small synthetic slides (built once per session) and the real CMU-1 sample."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tiling.synthetic import SyntheticSlideSpec, write_synthetic_slide

CMU_SMALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "slides" / "CMU-1-Small-Region.svs"


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """Two 4096×3072 slides at 0.25 µm/px: one with tumor and pen ink, one plain."""
    folder = tmp_path_factory.mktemp("slides")
    write_synthetic_slide(
        folder / "tumor_a.tif", SyntheticSlideSpec(4096, 3072, seed=1, tumor_regions=2, pen_strokes=2)
    )
    write_synthetic_slide(folder / "normal_b.tif", SyntheticSlideSpec(4096, 3072, seed=2))
    return folder


@pytest.fixture
def slides_copy(synthetic_dir, tmp_path) -> Path:
    """A private copy of the synthetic slides that a test may add broken files to."""
    folder = tmp_path / "slides"
    shutil.copytree(synthetic_dir, folder)
    return folder


@pytest.fixture(scope="session")
def cmu_small() -> Path:
    """The real Aperio sample slide shipped in shared/data."""
    if not CMU_SMALL.is_file():
        pytest.skip(f"{CMU_SMALL} is not present")
    return CMU_SMALL
