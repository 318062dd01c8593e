"""Synthetic slides: OpenSlide opens them, pixels follow the seed, ground truth matches pixels."""

from __future__ import annotations

import resource
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image
from scipy import ndimage
from skimage.color import rgb2hed
from skimage.draw import polygon as fill_polygon

from tiling.synthetic import (
    GLASS_RGB,
    INK_RGB,
    SyntheticSlideSpec,
    ink_truth_mask,
    lymphoid_truth_mask,
    read_asap_polygons,
    synthetic_slide_image,
    tissue_truth_mask,
    tumor_truth_mask,
    write_plain_image,
    write_synthetic_folder,
    write_synthetic_slide,
)

SPEC = SyntheticSlideSpec(width_px=2048, height_px=1536, seed=3, tissue_regions=3, tumor_regions=2, pen_strokes=2)
TINY = SyntheticSlideSpec(width_px=768, height_px=512, seed=11, tissue_regions=2)


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    return write_synthetic_slide(tmp_path_factory.mktemp("synthetic") / "slide.tif", SPEC)


@pytest.fixture(scope="module")
def pixels(slide) -> np.ndarray:
    with openslide.OpenSlide(slide.path) as osr:
        return np.asarray(osr.read_region((0, 0), 0, osr.dimensions).convert("RGB"))


def _read_level0(path: Path) -> np.ndarray:
    with openslide.OpenSlide(path) as osr:
        return np.asarray(osr.read_region((0, 0), 0, osr.dimensions).convert("RGB"))


def _interior(mask: np.ndarray, margin_px: int = 8) -> np.ndarray:
    """Pixels at least `margin_px` inside the mask (away from anti-aliased edges)."""
    return ndimage.minimum_filter(mask, size=2 * margin_px + 1, mode="nearest")


def test_same_seed_same_pixels_other_seed_other_pixels(tmp_path):
    a = write_synthetic_slide(tmp_path / "a.tif", TINY)
    b = write_synthetic_slide(tmp_path / "b.tif", TINY)
    c = write_synthetic_slide(tmp_path / "c.tif", replace(TINY, seed=TINY.seed + 1))
    assert np.array_equal(_read_level0(a.path), _read_level0(b.path))
    assert not np.array_equal(_read_level0(a.path), _read_level0(c.path))
    assert not np.array_equal(tissue_truth_mask(TINY, 16), tissue_truth_mask(c.spec, 16))


def test_openslide_reads_size_levels_and_mpp(slide):
    with openslide.OpenSlide(slide.path) as osr:
        assert osr.dimensions == (SPEC.width_px, SPEC.height_px)
        assert osr.level_count > 1
        assert osr.level_dimensions[1] == (SPEC.width_px // 2, SPEC.height_px // 2)
        assert float(osr.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(SPEC.mpp)
        assert float(osr.properties[openslide.PROPERTY_NAME_MPP_Y]) == pytest.approx(SPEC.mpp)
        assert osr.properties["openslide.level[0].tile-width"] == str(SPEC.tile_px)


def test_single_level_without_pyramid_and_no_mpp_without_resolution(tmp_path):
    flat = write_synthetic_slide(tmp_path / "flat.tif", replace(TINY, pyramid=False, mpp=0.5))
    bare = write_synthetic_slide(tmp_path / "bare.tif", replace(TINY, write_mpp=False))
    with openslide.OpenSlide(flat.path) as osr:
        assert osr.level_count == 1
        assert float(osr.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5)
    with openslide.OpenSlide(bare.path) as osr:
        assert osr.level_count > 1
        assert openslide.PROPERTY_NAME_MPP_X not in osr.properties
        assert np.asarray(osr.read_region((0, 0), 0, (64, 64))).shape == (64, 64, 4)
    with tifffile.TiffFile(bare.path) as tif:
        assert all(code not in page.tags for page in tif.pages for code in (282, 283, 296))


def test_truth_masks_have_block_shapes_and_tumor_inside_tissue():
    for downsample in (1, 5, 16, 32, 64):
        shape = (-(-SPEC.height_px // downsample), -(-SPEC.width_px // downsample))
        tissue, tumor = tissue_truth_mask(SPEC, downsample), tumor_truth_mask(SPEC, downsample)
        assert tissue.shape == tumor.shape == ink_truth_mask(SPEC, downsample).shape == shape
        assert tissue.dtype == bool
        assert tumor.any() and not (tumor & ~tissue).any()
    tissue_fraction = tissue_truth_mask(SPEC, 8).mean()
    assert 0.15 < tissue_fraction < 0.8
    with pytest.raises(ValueError, match="downsample"):
        tissue_truth_mask(SPEC, 0)


def test_glass_is_near_white_and_tissue_is_pink_and_saturated(pixels):
    tissue, ink = tissue_truth_mask(SPEC, 1), ink_truth_mask(SPEC, 1)
    glass = pixels[_interior(~tissue & ~ink)].astype(float)
    stroma = pixels[_interior(tissue & ~ink & ~tumor_truth_mask(SPEC, 1))].astype(float)
    assert np.abs(glass.mean(0) - GLASS_RGB).max() < 4
    assert glass.std(0).max() < 5

    def saturation(rgb: np.ndarray) -> np.ndarray:
        return (rgb.max(1) - rgb.min(1)) / np.maximum(rgb.max(1), 1)

    assert saturation(stroma).mean() > saturation(glass).mean() + 0.2
    red, green, blue = stroma.mean(0)
    assert red > blue > green  # eosin pink: red high, green absorbed most


def test_tumor_has_more_hematoxylin_than_normal_tissue(pixels):
    tissue, tumor, ink = (f(SPEC, 1) for f in (tissue_truth_mask, tumor_truth_mask, ink_truth_mask))
    in_tumor, in_normal = _interior(tumor & ~ink), _interior(tissue & ~tumor & ~ink)
    hematoxylin = rgb2hed(pixels)[..., 0]
    assert hematoxylin[in_tumor].mean() > 1.5 * hematoxylin[in_normal].mean()
    assert pixels[in_tumor].mean() < pixels[in_normal].mean() - 20


def test_tumor_and_normal_tiles_separate_at_half_micron(tmp_path):
    """At 0.5 µm/px every 224-px tile inside tumor has more hematoxylin than any in stroma."""
    spec = SyntheticSlideSpec(width_px=3072, height_px=2048, mpp=0.5, seed=5, tissue_regions=2, tumor_regions=2)
    path = write_synthetic_slide(tmp_path / "half.tif", spec).path
    tumor, tissue = tumor_truth_mask(spec, 1), tissue_truth_mask(spec, 1)
    hematoxylin = {True: [], False: []}
    with openslide.OpenSlide(path) as osr:
        for y in range(0, spec.height_px - 224, 112):
            for x in range(0, spec.width_px - 224, 112):
                window = (slice(y, y + 224), slice(x, x + 224))
                if tissue[window].all() and (tumor[window].all() or not tumor[window].any()):
                    tile = np.asarray(osr.read_region((x, y), 0, (224, 224)).convert("RGB"))
                    hematoxylin[bool(tumor[window].all())].append(rgb2hed(tile)[..., 0].mean())
    assert len(hematoxylin[True]) >= 2 and len(hematoxylin[False]) >= 10
    assert min(hematoxylin[True]) > max(hematoxylin[False])


def test_lymph_node_tumor_differs_from_lymphoid_sheets_in_structure_more_than_colour():
    """Lymph-node slides (synthetic PCam's): lymphoid sheets inside a stroma capsule, tumor drawn as
    carcinoma nests over them. The nests put 4× more of the optical density's variance at coarse
    scales (σ 6 µm) than the even lymphoid carpet, while the mean colours stay within 25 levels."""
    spec = SyntheticSlideSpec(2048, 1536, mpp=0.972, seed=4, tissue_regions=2, tumor_regions=2, lymph_node=True)
    pixels = synthetic_slide_image(spec).numpy()
    tissue, tumor, lymphoid = (f(spec, 1) for f in (tissue_truth_mask, tumor_truth_mask, lymphoid_truth_mask))
    assert lymphoid.any() and not (lymphoid & ~tissue).any() and not (lymphoid & tumor).any()
    assert (tissue & ~tumor & ~lymphoid).any()  # the capsule
    assert not lymphoid_truth_mask(replace(spec, lymph_node=False), 8).any()
    in_tumor, in_lymphoid = _interior(tumor), _interior(lymphoid)
    od = -np.log((pixels.astype(np.float32) + 1) / 256).sum(-1)
    coarse = ndimage.gaussian_filter(od, 6)
    share = {name: coarse[m].var() / od[m].var() for name, m in (("tumor", in_tumor), ("lymphoid", in_lymphoid))}
    assert share["tumor"] > 3 * share["lymphoid"]
    assert np.abs(pixels[in_tumor].mean(0) - pixels[in_lymphoid].mean(0)).max() < 25


def test_ink_has_an_ink_colour_over_glass_and_darkens_tissue(pixels):
    ink, tissue = ink_truth_mask(SPEC, 1), tissue_truth_mask(SPEC, 1)
    assert ink.any() and (ink & tissue).any() and (ink & ~tissue).any()
    on_glass = pixels[_interior(ink & ~tissue, 4)].astype(float)
    palette = np.array(list(INK_RGB.values()), float)
    distance = np.linalg.norm(on_glass[:, None, :] - palette[None], axis=2).min(1)
    assert np.mean(distance < 20) > 0.99
    assert pixels[_interior(ink & tissue, 4)].mean() < pixels[_interior(tissue & ~ink)].mean() - 40


def test_annotation_outlines_the_tumor_mask(slide):
    assert slide.annotation_path == slide.path.with_suffix(".xml")
    text = slide.annotation_path.read_text()
    assert "<ASAP_Annotations>" in text and 'PartOfGroup="Tumor"' in text
    assert '<Group Name="Tumor" PartOfGroup="None" Color="#00ff00">' in text
    polygons = read_asap_polygons(slide.annotation_path)
    assert len(polygons) >= 1 and all(p.ndim == 2 and p.shape[1] == 2 for p in polygons)
    downsample = 4
    drawn = np.zeros_like(tumor_truth_mask(SPEC, downsample))
    for polygon in polygons:
        rows, cols = fill_polygon(
            (polygon[:, 1] + 0.5) / downsample - 0.5, (polygon[:, 0] + 0.5) / downsample - 0.5, drawn.shape
        )
        drawn[rows, cols] = True
    truth = tumor_truth_mask(SPEC, downsample)
    assert (drawn & truth).sum() / (drawn | truth).sum() > 0.95
    assert read_asap_polygons(slide.annotation_path, groups=("_2",)) == []


def test_read_asap_refuses_entity_declarations(tmp_path):
    xml = tmp_path / "evil.xml"
    xml.write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><ASAP_Annotations/>')
    with pytest.raises(ValueError, match="DOCTYPE/ENTITY"):
        read_asap_polygons(xml)


def test_folder_alternates_tumor_and_normal_slides(tmp_path):
    spec = replace(TINY, tumor_regions=1)
    slides = write_synthetic_folder(tmp_path / "set", 3, spec, tumor_every=2)
    assert [s.path.name for s in slides] == ["slide_000.tif", "slide_001.tif", "slide_002.tif"]
    assert [s.spec.seed for s in slides] == [TINY.seed, TINY.seed + 1, TINY.seed + 2]
    assert [s.annotation_path is not None for s in slides] == [True, False, True]
    assert [s.spec.tumor_regions for s in slides] == [1, 0, 1]
    assert slides[0].annotation_path.exists() and not (tmp_path / "set" / "slide_001.xml").exists()


@pytest.mark.parametrize("name", ["plain.png", "plain.tif"])
def test_plain_image_holds_the_slide_pixels_and_resolution(tmp_path, name):
    plain = write_plain_image(tmp_path / name, TINY)
    expected = synthetic_slide_image(TINY).numpy()
    with Image.open(plain.path) as image:
        assert np.array_equal(np.asarray(image.convert("RGB")), expected)
        if name.endswith(".png"):
            assert image.info["dpi"][0] == pytest.approx(25400 / TINY.mpp, rel=1e-4)
    if name.endswith(".tif"):
        with tifffile.TiffFile(plain.path) as tif:
            page = tif.pages[0]
            assert not page.is_tiled
            assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
            numerator, denominator = page.tags["XResolution"].value
            assert numerator / denominator == pytest.approx(1e4 / TINY.mpp)


def test_plain_image_without_resolution(tmp_path):
    png = write_plain_image(tmp_path / "bare.png", replace(TINY, write_mpp=False))
    tif = write_plain_image(tmp_path / "bare.tiff", replace(TINY, write_mpp=False))
    with Image.open(png.path) as image:
        assert "dpi" not in image.info
    with tifffile.TiffFile(tif.path) as handle:
        assert all(code not in handle.pages[0].tags for code in (282, 283, 296))
    with pytest.raises(ValueError, match="too large"):
        write_plain_image(tmp_path / "big.png", replace(TINY, width_px=10000, height_px=10000))


def test_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="tile_px"):
        SyntheticSlideSpec(tile_px=100)
    with pytest.raises(ValueError, match="mpp"):
        SyntheticSlideSpec(mpp=0)
    with pytest.raises(ValueError, match="needs tissue_regions"):
        SyntheticSlideSpec(tissue_regions=0, tumor_regions=1)


@pytest.mark.slow
def test_large_slide_streams_in_bounded_memory(tmp_path):
    """A 20,000 × 15,000 slide is written lazily: the writer's peak memory stays under 1 GB."""
    script = (
        "from tiling.synthetic import SyntheticSlideSpec, write_synthetic_slide; "
        f"write_synthetic_slide({str(tmp_path / 'large.tif')!r}, SyntheticSlideSpec("
        "width_px=20000, height_px=15000, tumor_regions=2, pen_strokes=1))"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert peak_kib < 1024**2
    with openslide.OpenSlide(tmp_path / "large.tif") as osr:
        assert osr.dimensions == (20000, 15000)
