"""tiling.fast_codecs: imagecodecs and the Pillow / numcodecs fallback give the same pixels and bytes."""

from __future__ import annotations

import os

import numpy as np
import pytest
from numcodecs import Zstd

from tiling import fast_codecs
from tiling.config import StoreConfig, TilingConfig
from tiling.synthetic_jpeg_tiff import write_jpeg_tiled_tiff
from tiling.tiff_tiles import find_tiled_levels

needs_imagecodecs = pytest.mark.skipif(fast_codecs.imagecodecs is None, reason="imagecodecs is not installed")


@pytest.fixture
def pillow_only(monkeypatch):
    """The fallback backend, as on an install without imagecodecs."""
    monkeypatch.setattr(fast_codecs, "imagecodecs", None)


@pytest.fixture(params=["imagecodecs", "pillow"])
def backend(request, monkeypatch):
    """Each codec backend in turn: imagecodecs (skipped where it is not installed), then the fallback."""
    if request.param == "pillow":
        monkeypatch.setattr(fast_codecs, "imagecodecs", None)
    elif fast_codecs.imagecodecs is None:
        pytest.skip("imagecodecs is not installed")
    return request.param


def _file_tiles(path, count=24):
    """(level spec, compressed bytes) of up to `count` level-0 tiles of a JPEG-tiled TIFF."""
    with open(path, "rb") as handle:
        fd = handle.fileno()
        level = find_tiled_levels(path, (_size(path),))[0]
        picks = np.linspace(0, len(level.offsets) - 1, min(count, len(level.offsets))).astype(int)
        return level, [os.pread(fd, int(level.byte_counts[i]), int(level.offsets[i])) for i in picks]


def _size(path):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        return tif.pages[0].imagewidth, tif.pages[0].imagelength


@pytest.fixture(scope="module")
def textured(tmp_path_factory):
    rng = np.random.default_rng(5)
    pixels = np.kron(rng.integers(0, 256, (40, 50, 3)), np.ones((8, 8, 1))).astype(np.uint8)
    folder = tmp_path_factory.mktemp("fast_codecs")
    return {
        (colour, shared): write_jpeg_tiled_tiff(
            folder / f"{colour}_{shared}.tif", pixels, 0.5, 128, colour, shared, n_levels=1
        )
        for colour in ("rgb", "ycbcr")
        for shared in (True, False)
    }


def _decode_all(level, streams):
    return [
        fast_codecs.decode_jpeg_rgb(s, level.jpeg_tables, level.jpeg_mode, (level.tile_w, level.tile_h))
        for s in streams
    ]


@needs_imagecodecs
@pytest.mark.parametrize("colour", ["rgb", "ycbcr"])
@pytest.mark.parametrize("shared", [True, False])
def test_both_decoders_give_identical_pixels(textured, colour, shared, monkeypatch):
    level, streams = _file_tiles(textured[(colour, shared)])
    fast = _decode_all(level, streams)
    monkeypatch.setattr(fast_codecs, "imagecodecs", None)
    slow = _decode_all(level, streams)
    for a, b in zip(fast, slow, strict=True):
        assert a.shape == (128, 128, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)


def test_decoding_into_out_gives_the_same_pixels(textured, backend):
    level, streams = _file_tiles(textured[("ycbcr", True)], count=4)
    expected = _decode_all(level, streams)
    out = np.zeros((len(streams), 128, 128, 3), np.uint8)
    for i, stream in enumerate(streams):
        result = fast_codecs.decode_jpeg_rgb(stream, level.jpeg_tables, level.jpeg_mode, (128, 128), out[i])
        assert np.shares_memory(result, out)
    np.testing.assert_array_equal(out, np.stack(expected))


@needs_imagecodecs
def test_both_decoders_agree_on_the_aperio_rgb_jpeg(cmu_small, monkeypatch):
    level, streams = _file_tiles(cmu_small)
    assert level.jpeg_mode == "RGB"
    fast = _decode_all(level, streams)
    monkeypatch.setattr(fast_codecs, "imagecodecs", None)
    np.testing.assert_array_equal(np.stack(fast), np.stack(_decode_all(level, streams)))


def test_a_broken_stream_is_an_os_error(textured, backend):
    level, streams = _file_tiles(textured[("ycbcr", True)], count=1)
    with pytest.raises(OSError, match="does not decode"):
        fast_codecs.decode_jpeg_rgb(b"\xff\xd8" + bytes(200), level.jpeg_tables, "YCbCr", (128, 128))
    with pytest.raises(OSError):  # the right stream for a tile of another size
        fast_codecs.decode_jpeg_rgb(streams[0], level.jpeg_tables, "YCbCr", (64, 64))


def test_zstd_frames_decode_with_zarrs_codec_to_the_tile(backend):
    rng = np.random.default_rng(0)
    tile = np.clip(rng.normal(180, 30, (224, 224, 3)), 0, 255).astype(np.uint8)
    for view in (tile, tile[:, ::-1]):  # a non-contiguous view is stored in C order
        frame = fast_codecs.zstd_compress(view, 1)
        assert isinstance(frame, bytes) and len(frame) < view.nbytes
        assert bytes(Zstd().decode(frame)) == np.ascontiguousarray(view).tobytes()


@pytest.mark.parametrize("level", [-3, -1, 1, 3])
def test_zstd_frames_are_compressed_at_the_level_asked(backend, level):
    """The frame is zstd's at that level, the bytes zarr's own codec writes for it; imagecodecs
    alone would compress negative levels at level 3."""
    rng = np.random.default_rng(1)
    tile = np.clip(rng.normal(180, 30, (224, 224, 3)), 0, 255).astype(np.uint8)
    frame = fast_codecs.zstd_compress(tile, level)
    assert bytes(Zstd().decode(frame)) == tile.tobytes()
    if level < 1:
        assert frame == bytes(Zstd(level=level).encode(tile))
        assert len(frame) > len(fast_codecs.zstd_compress(tile, 1))  # faster, larger: not level 3's frame


@needs_imagecodecs
def test_tiling_stores_the_same_tiles_with_either_backend(synthetic_dir, tmp_path, monkeypatch):
    """A run on the fallback writes tiles identical to a run through imagecodecs (one process, so the
    backend switch applies)."""
    from tiling.pipeline import run_tiling
    from tiling.store import open_store
    from tiling.tile_slide import forget_slide

    slide = synthetic_dir / "tumor_a.tif"
    cfg = TilingConfig(workers=0, store=StoreConfig(tiles_per_shard=64))
    forget_slide(slide)  # no decoded tiles cached by an earlier test
    run_tiling([str(slide)], tmp_path / "fast", cfg, progress=False)
    monkeypatch.setattr(fast_codecs, "imagecodecs", None)
    forget_slide(slide)
    run_tiling([str(slide)], tmp_path / "slow", cfg, progress=False)
    fast, slow = (open_store(tmp_path / name / "tiles.zarr" / "tumor_a") for name in ("fast", "slow"))
    assert len(fast) == len(slow) > 0
    np.testing.assert_array_equal(fast.read(np.arange(len(fast))), slow.read(np.arange(len(slow))))
