"""Opening slides: resolution sources, plain images, and one-line errors for bad files."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from tiling.reader import SlideError, open_slide
from tiling.synthetic import SyntheticSlideSpec, write_synthetic_slide


def test_real_aperio_slide_resolution_and_read(cmu_small):
    slide = open_slide(cmu_small)
    assert slide.vendor == "aperio"
    assert slide.level0_mpp == pytest.approx(0.499)
    assert slide.mpp_source == "openslide.mpp"
    region = slide.read_rgb((100, 200), 0, (64, 32))
    assert region.shape == (32, 64, 3) and region.dtype == np.uint8


def test_synthetic_pyramid_levels_and_best_level(synthetic_dir):
    slide = open_slide(synthetic_dir / "normal_b.tif")
    assert slide.level0_mpp == pytest.approx(0.25)
    assert len(slide.level_downsamples) > 2
    assert slide.best_level_for(0.5) == 1  # downsample 2 gives exactly 0.5 µm/px
    assert slide.best_level_for(0.7) == 1  # never coarser than asked
    assert slide.best_level_for(0.1) == 0


def test_thumbnail_has_the_asked_resolution(synthetic_dir):
    slide = open_slide(synthetic_dir / "normal_b.tif")
    thumb = slide.thumbnail(8.0)
    assert thumb.shape == (3072 // 32, 4096 // 32, 3)


def test_missing_mpp_names_the_override(tmp_path):
    path = tmp_path / "nompp.tif"
    write_synthetic_slide(path, SyntheticSlideSpec(1024, 768, write_mpp=False))
    with pytest.raises(SlideError, match="--mpp-override") as err:
        open_slide(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert open_slide(path, mpp_override=0.25).mpp_source == "--mpp-override"


def test_plain_png_without_resolution_needs_override(tmp_path):
    path = tmp_path / "plain.png"
    Image.fromarray(np.full((300, 400, 3), 200, np.uint8)).save(path)
    with pytest.raises(SlideError, match="no resolution"):
        open_slide(path)
    slide = open_slide(path, mpp_override=0.5)
    assert slide.vendor == "plain-image" and slide.dimensions == (400, 300)


def test_strip_tiff_resolution_tags_are_read(tmp_path):
    path = tmp_path / "strip.tif"
    tifffile.imwrite(
        path, np.full((300, 400, 3), 200, np.uint8), resolution=(40000, 40000), resolutionunit="CENTIMETER"
    )
    slide = open_slide(path)
    assert slide.level0_mpp == pytest.approx(0.25)
    assert slide.read_rgb((10, 10), 0, (5, 5)).shape == (5, 5, 3)


@pytest.mark.parametrize("content, problem", [(b"not a slide at all", "not a slide"), (b"", "not a slide")])
def test_non_slide_files_fail_clearly(tmp_path, content, problem):
    path = tmp_path / "fake.svs"
    path.write_bytes(content)
    with pytest.raises(SlideError, match=problem) as err:
        open_slide(path)
    assert str(err.value).startswith(str(path))


def test_truncated_slide_fails_at_open_or_read(synthetic_dir, tmp_path):
    data = (synthetic_dir / "normal_b.tif").read_bytes()
    path = tmp_path / "truncated.tif"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SlideError) as err:
        slide = open_slide(path)
        slide.read_rgb((0, 0), 0, (4096, 3072))
    assert str(path) in str(err.value)


def test_anisotropic_pixels_are_refused(tmp_path):
    path = tmp_path / "aniso.tif"
    tifffile.imwrite(
        path, np.full((300, 400, 3), 200, np.uint8), resolution=(40000, 20000), resolutionunit="CENTIMETER"
    )
    with pytest.raises(SlideError, match="non-square"):
        open_slide(path)


def test_default_dpi_is_not_taken_for_a_scan_resolution(tmp_path):
    path = tmp_path / "dpi72.tif"
    tifffile.imwrite(path, np.full((300, 400, 3), 200, np.uint8), resolution=(72, 72), resolutionunit="INCH")
    with pytest.raises(SlideError, match="implausible resolution 352.8 µm/px.*--mpp-override"):
        open_slide(path)


def test_transparent_pixels_become_white_glass(tmp_path):
    from PIL import Image as PILImage

    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[..., :3] = (200, 100, 150)
    rgba[:, :25, 3] = 255  # left half opaque, right half unscanned (transparent)
    path = tmp_path / "alpha.png"
    PILImage.fromarray(rgba, "RGBA").save(path)
    region = open_slide(path, mpp_override=0.5).read_rgb((0, 0), 0, (50, 40))
    assert (region[:, :25] == (200, 100, 150)).all()
    assert (region[:, 25:] == 255).all()
