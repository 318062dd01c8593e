"""The direct JPEG-tile reader gives OpenSlide's pixels, on synthetic TIFFs and a real Aperio slide."""

import numpy as np
import openslide
import pytest
import tifffile

from tiling.reader import SlideError, open_slide
from tiling.synthetic_jpeg_tiff import split_tables, write_jpeg_tiled_tiff
from tiling.tiff_tiles import TiffTileReader, find_tiled_levels

# (level, level-0 x, y, width, height): whole image, tile-straddling, beyond the edges, level 1
REGIONS = [
    (0, 0, 0, 900, 700),
    (0, 100, 37, 300, 200),
    (0, -50, 30, 300, 200),
    (0, 800, 600, 300, 300),
    (1, 2, 6, 400, 300),
    (1, 128, 256, 100, 90),
]


def _openslide_rgb(path, level0_xy, level, size_wh) -> np.ndarray:
    """OpenSlide's read, transparent (outside) pixels composited on white as the reader does."""
    with openslide.OpenSlide(str(path)) as slide:
        rgba = np.asarray(slide.read_region(level0_xy, level, size_wh))
    return np.where(rgba[..., 3:] == 255, rgba[..., :3], 255).astype(np.uint8)


@pytest.fixture(scope="module")
def textured_pixels() -> np.ndarray:
    """Blocky colour noise with sharp edges: any colour-space or offset mistake shows."""
    rng = np.random.default_rng(0)
    return np.kron(rng.integers(0, 256, (88, 113, 3)), np.ones((8, 8, 1))).astype(np.uint8)[:700, :900]


@pytest.mark.parametrize("colour", ["rgb", "ycbcr"])
@pytest.mark.parametrize("shared_tables", [True, False])
def test_direct_reads_equal_openslide(tmp_path, textured_pixels, colour, shared_tables):
    path = write_jpeg_tiled_tiff(tmp_path / "s.tif", textured_pixels, 0.5, 128, colour, shared_tables)
    with tifffile.TiffFile(path) as tif:
        assert (tif.pages[0].jpegtables is not None) == shared_tables
        assert tif.pages[0].photometric == (2 if colour == "rgb" else 6)
    slide = open_slide(path)
    assert [slide.read_path(level) for level in (0, 1)] == ["tiff-jpeg", "tiff-jpeg"]
    for level, x, y, w, h in REGIONS:
        direct = slide.read_rgb((x, y), level, (w, h))
        assert direct.shape == (h, w, 3)
        np.testing.assert_array_equal(direct, _openslide_rgb(path, (x, y), level, (w, h)))
    slide.close()


def test_rgb_jpeg_is_not_read_as_ycbcr(tmp_path, textured_pixels):
    """Guessing the colour space from the stream would shift colours by far more than 1 LSB."""
    path = write_jpeg_tiled_tiff(tmp_path / "s.tif", textured_pixels, 0.5, 128, "rgb", True)
    slide = open_slide(path)
    error = np.abs(slide.read_rgb((0, 0), 0, (900, 700)).astype(int) - textured_pixels).mean()
    assert error < 8  # JPEG q90 loss only
    slide.close()


def test_pyvips_pyramid_is_read_directly_and_equals_openslide(synthetic_dir):
    path = synthetic_dir / "tumor_a.tif"
    slide = open_slide(path)
    assert all(slide.read_path(level) == "tiff-jpeg" for level in range(len(slide.level_dimensions)))
    for level, xy, size in [(0, (1000, 700), (700, 500)), (1, (2048, 1024), (600, 400)), (0, (3900, 2900), (400, 400))]:
        np.testing.assert_array_equal(slide.read_rgb(xy, level, size), _openslide_rgb(path, xy, level, size))
    slide.close()


def test_aperio_svs_rgb_jpeg_equals_openslide(cmu_small):
    slide = open_slide(cmu_small)
    assert slide.vendor == "aperio" and slide.read_path(0) == "tiff-jpeg"
    for xy, size in [((0, 0), (2220, 2967)), ((117, 333), (500, 260)), ((2000, 2800), (400, 400))]:
        np.testing.assert_array_equal(slide.read_rgb(xy, 0, size), _openslide_rgb(cmu_small, xy, 0, size))
    slide.close()


def test_fractional_level_positions_fall_back_to_openslide(tmp_path, textured_pixels):
    """Level-0 (3, 5) is (1.5, 2.5) on level 1: OpenSlide interpolates there, so it reads it."""
    path = write_jpeg_tiled_tiff(tmp_path / "s.tif", textured_pixels, 0.5, 128, "ycbcr", True)
    slide = open_slide(path)
    assert not slide._direct.can_read(1, (1.5, 2.5))
    np.testing.assert_array_equal(slide.read_rgb((3, 5), 1, (50, 40)), _openslide_rgb(path, (3, 5), 1, (50, 40)))
    slide.close()


def test_decoded_tile_cache_stays_within_its_bound(tmp_path, textured_pixels):
    path = write_jpeg_tiled_tiff(tmp_path / "s.tif", textured_pixels, 0.5, 128, "rgb", True, n_levels=1)
    tile_bytes = 128 * 128 * 3
    reader = TiffTileReader(path, find_tiled_levels(path, ((900, 700),)), cache_bytes=5 * tile_bytes)
    first = reader.read_rgb(0, (0, 0), (900, 700))
    assert reader.cached_bytes == 5 * tile_bytes
    np.testing.assert_array_equal(reader.read_rgb(0, (0, 0), (900, 700)), first)  # evicted tiles decode again
    reader.close()


def test_other_layouts_are_left_to_openslide(tmp_path, textured_pixels):
    """A deflate-tiled TIFF is not JPEG: no level is read directly, and the store says so."""
    path = tmp_path / "zlib.tif"
    tifffile.imwrite(
        path,
        textured_pixels,
        tile=(128, 128),
        compression="zlib",
        photometric="rgb",
        resolution=(2e4, 2e4),
        resolutionunit="centimeter",
    )
    assert find_tiled_levels(path, ((900, 700),)) == {}
    slide = open_slide(path)
    assert slide.read_path(0) == "openslide"
    np.testing.assert_array_equal(slide.read_rgb((0, 0), 0, (900, 700)), textured_pixels)
    slide.close()


def test_truncated_tile_is_a_slide_error(tmp_path, textured_pixels):
    path = write_jpeg_tiled_tiff(tmp_path / "s.tif", textured_pixels, 0.5, 128, "rgb", False, n_levels=1)
    slide = open_slide(path)
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].dataoffsets[-1]
    with open(path, "r+b") as handle:
        handle.truncate(offset + 10)
    with pytest.raises(SlideError, match=r"s\.tif: cannot decode region at level-0 \(800, 600\)"):
        slide.read_rgb((800, 600), 0, (100, 100))
    slide.close()


def test_split_tables_keeps_a_decodable_pair():
    from tiling.synthetic_jpeg_tiff import encode_tile

    stream = encode_tile(np.zeros((16, 16, 3), np.uint8), "ycbcr")
    tables, abbreviated = split_tables(stream)
    assert b"\xff\xdb" in tables and b"\xff\xdb" not in abbreviated and b"\xff\xc4" not in abbreviated
    assert len(tables) + len(abbreviated) == len(stream) + 4  # one extra SOI and EOI


def test_two_worker_run_records_the_read_path_and_openslide_pixels(synthetic_dir, tmp_path):
    from tiling.config import TilingConfig
    from tiling.pipeline import run_tiling
    from tiling.store import open_store

    run_tiling([str(synthetic_dir)], tmp_path / "out", TilingConfig(workers=2), progress=False)
    for name in ("tumor_a", "normal_b"):
        store = open_store(tmp_path / "out" / "tiles.zarr" / name)
        assert store.attrs["slide"]["read_path"] == "tiff-jpeg"
        level = store.attrs["tiling"]["read_level"]
        for index in [0, len(store) // 3, len(store) - 1]:
            xy = tuple(int(v) for v in store.coords[index])
            np.testing.assert_array_equal(
                store[index], _openslide_rgb(synthetic_dir / f"{name}.tif", xy, level, (224, 224))
            )


def test_decode_errors_cross_process_boundaries_intact(tmp_path):
    import pickle

    error = pickle.loads(pickle.dumps(SlideError(tmp_path / "s.tif", "cannot decode region")))
    assert (error.path, error.problem, str(error)) == (
        str(tmp_path / "s.tif"),
        "cannot decode region",
        f"{tmp_path / 's.tif'}: cannot decode region",
    )


def test_aligned_run_decodes_only_the_slide_tiles_under_it(tmp_path, textured_pixels, monkeypatch):
    """Tiles on the file's own tile grid are copied, so a run reads no filter margin: each slide tile
    under the run is decoded once and no neighbour is; the pixels are still OpenSlide's."""
    from tiling import tiff_tiles
    from tiling.grid import GridSpec, level0_coords
    from tiling.tile_read import read_run

    path = write_jpeg_tiled_tiff(tmp_path / "s.tif", textured_pixels, 0.5, 128, "ycbcr", True, n_levels=1)
    decoded = []
    real_decode = tiff_tiles.decode_jpeg_tile
    monkeypatch.setattr(
        tiff_tiles,
        "decode_jpeg_tile",
        lambda data, level, out=None: decoded.append(data) or real_decode(data, level, out),
    )
    slide = open_slide(path)
    grid = GridSpec(slide.dimensions, 0.5, 0.5, 128)
    row_col = np.array([[2, c] for c in range(1, 5)])  # a run in the middle of the slide
    coords = level0_coords(grid, row_col)
    tiles = np.empty((4, 128, 128, 3), np.uint8)
    read_run(slide, grid, 0, coords, tiles)
    assert len(decoded) == 4
    assert slide._direct.cached_bytes == 0  # each decoded straight into its tile, nothing kept
    for tile, (x, y) in zip(tiles, coords):
        np.testing.assert_array_equal(tile, _openslide_rgb(path, (int(x), int(y)), 0, (128, 128)))
    slide.close()
