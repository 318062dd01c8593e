"""Typed parameters of the tiler: defaults live here, YAML in configs/tile/ overrides them.

Lengths and areas are physical (µm, mm²) so that one setting means the same thing on a 20×
and a 40× scan; the code converts them to pixels at the resolution it works at.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TissueConfig:
    """Tissue detection on a low-resolution thumbnail (see tiling.tissue)."""

    thumbnail_mpp: float = 8.0  # resolution the detector works at (µm/px)
    min_saturation: float = 0.07  # floor under Otsu; tinted glass reaches ~0.06 (tiling.tissue)
    max_value: float = 0.96  # brighter (HSV value) is glass; pale eosin reaches 0.92-0.95
    closing_um: float = 32.0  # radius of the morphological closing
    opening_um: float = 16.0  # radius of the opening that removes speckle
    min_region_mm2: float = 0.02  # smaller connected tissue regions are dropped
    max_hole_mm2: float = 0.1  # holes smaller than this are filled
    remove_pen: bool = True  # remove blue, green, red and black marker ink
    pen_dilate_um: float = 48.0  # grow the ink mask to catch stroke halos


@dataclass
class StoreConfig:
    """How tiles are laid out on disk (see tiling.store and benchmarks/perf/store_layout.py)."""

    codec: str = "zstd"  # "zstd" (lossless) or "jpeg" (lossy, pathgen-only codec)
    zstd_level: int = 1
    jpeg_quality: int = 90
    tiles_per_shard: int = 256  # one shard file holds this many one-tile chunks


@dataclass
class TilingConfig:
    """Everything `pathgen tile` needs to turn slides into tile stores."""

    target_mpp: float = 0.5
    tile_size_px: int = 224
    overlap_px: int = 0
    min_tissue: float = 0.25  # keep tiles whose tissue fraction is at least this
    workers: int = 1  # worker processes (tiling.workers); 0 tiles in this process, without crash isolation
    shard: str = "1/1"  # "K/N": this machine tiles the K-th of N interleaved slide subsets (CLI: Slurm env)
    mpp_override: str | None = None  # CSV with columns slide, mpp
    max_tiles_per_read: int = 16  # horizontal run of tiles fetched with one read_region
    reader_cache_mb: int = 256  # decoded-tile cache per worker: holds a row of a large slide's JPEG tiles
    qc: bool = True
    tissue: TissueConfig = field(default_factory=TissueConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
