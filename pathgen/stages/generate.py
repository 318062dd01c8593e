"""`pathgen generate`: a trained LDM's views of real tiles, written to a view bank (+ grid.png).

Three modes (see pathgen.diffusion.sampling): `views` (Gen-SIS generative augmentation: K samples
conditioned on the source tile's SSL embedding), `interpolate` (Gen-SIS interpolated augmentation:
conditioned on slerp(source, random other tile, alpha), alpha the weight on the source) and
`img2img` (GenView-style: the source's latent noised at `strength` and denoised). The run is
resumable: rows are marked done as they are written, the bank is marked complete last.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from tqdm import tqdm

from pathgen.config import save_config
from pathgen.data.tiles import TileDataset
from pathgen.diffusion.bank import MODES, BankWriter, ViewBank, bank_path
from pathgen.diffusion.image_grid import write_grid
from pathgen.diffusion.ldm_io import ENCODER_DIR, load_ldm
from pathgen.diffusion.sampling import (
    SAMPLERS,
    SamplerConfig,
    generate_views,
    img2img_views,
    interpolate_views,
    view_seeds,
)
from pathgen.distributed import pick_device
from pathgen.genaug.adaptive_bank import adaptive_strengths, foreground_estimator
from pathgen.models.embeddings import embedding_path, read_embeddings
from pathgen.run_log import stderr_is_terminal
from tiling.store import TileStore


@dataclass
class GenerateConfig:
    """One `pathgen generate` run."""

    PATH_KEYS: ClassVar[tuple[str, ...]] = ("model", "tiles", "out")  # saved absolute (pathgen.config)

    model: str = ""  # an LDM folder (pathgen train-ldm <out>/model)
    tiles: list[str] = field(default_factory=list)  # `pathgen tile` output folders (the sources)
    out: str = ""  # bank folder: bank.zarr, grid.png, config.yaml
    mode: str = "views"  # views | interpolate | img2img
    n_views: int = 4  # K views per source
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    strength: float = 0.5  # img2img: fraction of the schedule the source latent is noised to
    adaptive_noise: bool = False  # img2img: GenView's strength per source from its foreground proportion
    foreground: str = "pca"  # adaptive_noise estimator: pca (the LDM's SSL encoder tokens) | hematoxylin
    noise_strengths: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7])  # per GenView level
    alpha: float | list[float] = 0.5  # interpolate: weight on the source; [a, b] = uniform in [a, b] per view
    max_sources: int | None = None  # None: every tile; N: a seeded random choice of N tiles
    min_tissue: float = 0.0  # only tiles with at least this tissue fraction (sources and secondaries)
    embeddings_name: str | None = None  # read `pathgen embed` output instead of embedding on the fly
    seed: int = 0
    batch_size: int = 16  # samples per denoiser call (guidance doubles it)
    device: str = "auto"
    grid_rows: int = 8  # sources shown in grid.png (0: no grid)
    grid_labels: bool = True


def check_config(cfg: GenerateConfig) -> None:
    """Refuse a config that cannot run, naming the key."""
    if not cfg.model or not cfg.tiles or not cfg.out:
        raise ValueError("generate needs model, tiles and out (pathgen generate MODEL TILES --out BANK)")
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    if cfg.sampler.sampler not in SAMPLERS:
        raise ValueError(f"sampler.sampler must be one of {SAMPLERS}, got {cfg.sampler.sampler!r}")
    if cfg.n_views < 1 or cfg.sampler.steps < 1 or cfg.batch_size < 1:
        raise ValueError("n_views, sampler.steps and batch_size must be at least 1")
    if cfg.adaptive_noise and cfg.mode != "img2img":
        raise ValueError("adaptive_noise needs mode img2img (GenView's noise level is an img2img strength)")
    if not 0.0 <= cfg.strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {cfg.strength}")
    alphas = cfg.alpha if isinstance(cfg.alpha, list) else [cfg.alpha]
    if len(alphas) not in (1, 2) or not all(0.0 <= a <= 1.0 for a in alphas) or alphas != sorted(alphas):
        raise ValueError(f"alpha must be a number in [0, 1] or a range [a, b] within [0, 1], got {cfg.alpha}")


def select_sources(n_tiles: int, max_sources: int | None, seed: int) -> np.ndarray:
    """Global tile indices of the sources, sorted: all tiles, or a seeded choice of max_sources of them."""
    if max_sources is None or max_sources >= n_tiles:
        return np.arange(n_tiles)
    return np.sort(np.random.default_rng([seed, 0x50524345]).choice(n_tiles, size=max_sources, replace=False))


def interpolation_plan(
    row: int, source: int, n_tiles: int, alpha: float | list[float], n_views: int, seed: int
) -> tuple[int, np.ndarray]:
    """(secondary global tile index ≠ source, alphas (K,)) of one bank row: a function of (seed, row) only."""
    rng = np.random.default_rng([seed, int(row), 0x534C5250])
    secondary = int(rng.integers(n_tiles - 1)) if n_tiles > 1 else source
    secondary += int(n_tiles > 1 and secondary >= source)
    if isinstance(alpha, list) and len(alpha) == 2:
        return secondary, rng.uniform(alpha[0], alpha[1], n_views).astype(np.float32)
    value = alpha[0] if isinstance(alpha, list) else alpha
    return secondary, np.full(n_views, value, np.float32)


def checked_embeddings(store: TileStore, name: str) -> np.ndarray:
    """The `pathgen embed` set `name` of `store`; ValueError naming the file unless it has one row per
    tile (checked before generating, so a mismatch never leaves a half-written bank)."""
    path = embedding_path(store.path, name)
    embeddings = read_embeddings(store.path, name)
    rows = len(embeddings)
    if rows != len(store):
        raise ValueError(
            f"{path}: {rows} embedding rows for {len(store)} tiles; re-run pathgen embed on this tile folder"
        )
    return embeddings


class _Sources:
    """Tiles and conditioning embeddings by global index (embedded on the fly or read from `pathgen embed`)."""

    def __init__(self, dataset: TileDataset, ldm, embeddings_name: str | None):  # noqa: ANN001 -- LoadedLDM
        self.dataset, self.ldm, self.name = dataset, ldm, embeddings_name
        self._stored: dict[int, np.ndarray] = {}
        if embeddings_name is not None:  # read (and checked) before any view is generated
            self._stored = {i: checked_embeddings(store, embeddings_name) for i, store in enumerate(dataset.stores)}

    def tiles(self, indices: np.ndarray) -> torch.Tensor:
        """uint8 (B, 3, H, W) tiles."""
        return torch.from_numpy(np.stack([self.dataset.tile(int(i)) for i in indices]).transpose(0, 3, 1, 2).copy())

    def embeddings(self, indices: np.ndarray, tiles: torch.Tensor | None = None) -> torch.Tensor:
        """float32 (B, D) conditioning embeddings."""
        if self.name is None:
            return self.ldm.embed(self.tiles(indices) if tiles is None else tiles).cpu()
        rows = [self._stored[int(self.dataset.store_ids[i])][int(self.dataset.local_ids[i])] for i in indices]
        return torch.from_numpy(np.stack(rows).astype(np.float32))


def _bank_attrs(cfg: GenerateConfig, ldm) -> dict:  # noqa: ANN001 -- LoadedLDM
    settings = {
        "alpha": cfg.alpha if cfg.mode == "interpolate" else None,
        "strength": cfg.strength if cfg.mode == "img2img" and not cfg.adaptive_noise else None,
        "adaptive_noise": cfg.adaptive_noise,
        "foreground": cfg.foreground if cfg.adaptive_noise else None,
        "noise_strengths": list(cfg.noise_strengths) if cfg.adaptive_noise else None,
        "embeddings_name": cfg.embeddings_name,
        "min_tissue": cfg.min_tissue,
    }
    return {
        "mode": cfg.mode,
        "n_views": cfg.n_views,
        "image_size": ldm.image_size,
        "seed": cfg.seed,
        "sampler": asdict(cfg.sampler),
        "settings": settings,
        "model": {"dir": str(Path(cfg.model).resolve()), "config": asdict(ldm.config)},
    }


def _generate_rows(
    cfg: GenerateConfig,
    ldm,
    src: _Sources,
    rows: np.ndarray,
    sources: np.ndarray,  # noqa: ANN001
    strengths: np.ndarray | None,
) -> tuple[np.ndarray, dict]:
    """uint8 (B, K, S, S, 3) views of bank `rows` and their per-row metadata."""
    indices = sources[rows]
    tiles = src.tiles(indices)
    emb = src.embeddings(indices, tiles)
    args = (cfg.sampler, cfg.seed)
    if cfg.mode == "views":
        return generate_views(ldm, emb, cfg.n_views, *args, rows=rows, batch_size=cfg.batch_size), {}
    if cfg.mode == "interpolate":
        plans = [
            interpolation_plan(r, s, len(src.dataset), cfg.alpha, cfg.n_views, cfg.seed) for r, s in zip(rows, indices)
        ]
        secondary = np.array([p[0] for p in plans])
        alphas = np.stack([p[1] for p in plans])
        views = interpolate_views(
            ldm, emb, src.embeddings(secondary), alphas, *args, rows=rows, batch_size=cfg.batch_size
        )
        return views, {"secondary": secondary, "alpha": alphas}
    strength = (
        np.full((len(rows), cfg.n_views), cfg.strength, np.float32)
        if strengths is None
        else np.broadcast_to(np.asarray(strengths, np.float32)[rows].reshape(len(rows), -1), (len(rows), cfg.n_views))
    )
    views = img2img_views(ldm, tiles, emb, strength, *args, n_views=cfg.n_views, rows=rows, batch_size=cfg.batch_size)
    return views, {"strength": strength}


def generate_bank(cfg: GenerateConfig, strengths: np.ndarray | None = None, progress: bool = True) -> dict:
    """Write (or resume) the view bank of `cfg`; returns {"bank", "generated", "skipped", "rows"}.

    `strengths` (img2img only): one strength per source row (N,) or per view (N, K), overriding
    cfg.strength (GenView's adaptive noise level per source).
    """

    check_config(cfg)
    out = Path(cfg.out)
    ldm = load_ldm(cfg.model, pick_device(cfg.device))
    dataset = TileDataset([Path(t).resolve() for t in cfg.tiles], min_tissue=cfg.min_tissue, seed=cfg.seed)
    sources = select_sources(len(dataset), cfg.max_sources, cfg.seed)
    if cfg.adaptive_noise and strengths is None:
        strengths = _adaptive_strengths(cfg, ldm, dataset, sources)
    if strengths is not None and len(strengths) != len(sources):
        raise ValueError(f"strengths has {len(strengths)} rows but the bank has {len(sources)} sources")
    out.mkdir(parents=True, exist_ok=True)
    writer = BankWriter(
        out,
        [str(s.path) for s in dataset.stores],
        dataset.store_ids[sources],
        dataset.local_ids[sources],
        _bank_attrs(cfg, ldm),
    )
    save_config(cfg, out / "config.yaml")
    pending = writer.pending_rows()
    src = _Sources(dataset, ldm, cfg.embeddings_name)
    per_call = max(1, cfg.batch_size // cfg.n_views)
    for start in tqdm(
        range(0, len(pending), per_call), disable=not (progress and stderr_is_terminal()), desc="generate", unit="batch"
    ):
        rows = pending[start : start + per_call]
        views, meta = _generate_rows(cfg, ldm, src, rows, sources, strengths)
        seeds = view_seeds(cfg.seed, rows, cfg.n_views)
        for i, row in enumerate(rows):
            secondary = None
            if "secondary" in meta:
                g = int(meta["secondary"][i])
                secondary = (int(dataset.store_ids[g]), int(dataset.local_ids[g]))
            writer.write_row(
                int(row),
                views[i],
                seeds[i],
                meta.get("alpha", [None] * len(rows))[i],
                meta.get("strength", [None] * len(rows))[i],
                secondary,
            )
    writer.finish()
    if cfg.grid_rows > 0:
        write_bank_grid(out, dataset, sources, cfg.grid_rows, cfg.grid_labels)
    return {
        "bank": bank_path(out),
        "generated": len(pending),
        "skipped": len(sources) - len(pending),
        "rows": len(sources),
    }


def _adaptive_strengths(cfg: GenerateConfig, ldm, dataset: TileDataset, sources: np.ndarray) -> np.ndarray:  # noqa: ANN001

    estimator = foreground_estimator(cfg.foreground, Path(cfg.model) / ENCODER_DIR, ldm.device)
    chunks = [sources[start : start + 1024] for start in range(0, len(sources), 1024)]  # bounded memory on big banks
    return np.concatenate(
        [np.empty(0, np.float32)]
        + [
            adaptive_strengths([dataset.tile(int(i)) for i in chunk], estimator, cfg.noise_strengths)[0]
            for chunk in chunks
        ]
    )


def write_bank_grid(out: Path, dataset: TileDataset, sources: np.ndarray, n_rows: int, labels: bool) -> Path:
    """grid.png of the bank's first `n_rows` rows: each source tile (and, interpolating, its secondary
    tile) beside its K views."""
    bank = ViewBank(out)
    mode = bank.attrs["mode"]
    rows = range(min(n_rows, len(bank)))
    cells, secondaries = [], [] if mode == "interpolate" else None
    for row in rows:
        meta = bank.meta(row)
        if mode == "interpolate":
            key = meta["secondary"]
            secondaries.append(TileStore(key.store)[key.index] if key is not None else dataset.tile(int(sources[row])))
            cells.append([f"r{row}", "2nd"] + [f"a{a:.2f}"[0:5] for a in meta["alpha"]])
        elif mode == "img2img":
            cells.append([f"r{row}"] + [f"s{s:.2f}"[0:5] for s in meta["strength"]])
        else:
            cells.append([f"r{row}"] + [f"v{k}" for k in range(len(meta["seed"]))])
    return write_grid(
        out / "grid.png",
        [dataset.tile(int(sources[r])) for r in rows],
        [bank.views(r) for r in rows],
        labels=cells if labels else None,
        secondaries=secondaries,
    )
