"""LDM training it/s and sampling images/s, DDIM-50 against DPM-Solver++-20 at their measured quality.

All in one run, each figure as a ratio against a baseline measured beside it:

1. Training: one `LDMObjective` step as `pathgen train-ldm` takes it (`Trainer._train_step`: VAE
   encode of the batch, the frozen encoder's embedding, conditioning dropout, noise, denoiser
   forward + backward, global clipping, AdamW, EMA), against the bare denoiser forward + backward
   on latents and embeddings encoded beforehand (the limit); objective/bare = the share of the
   limit the real step reaches. fp32 on CPU; fp32 and bf16 autocast on CUDA (--compile adds
   torch.compile'd variants).
2. Sampling: `generate_views` images/s (noise, guided denoising at guidance 2, VAE decode, uint8)
   of DDIM-50 and DPM-Solver++-20 on the same embeddings and seeds (fp32; also bf16 on CUDA), and
   each one's quality in the conditioning encoder's feature space: the Fréchet distance of the
   views to the real source tiles, beside two floors (held-out real tiles ↔ the sources, and the
   same tiles through VAE encode + decode ↔ the sources), and conditioning fidelity (cosine of a
   view's embedding to its conditioning embedding, minus that of random real pairs; the JSON also
   has `normalised`: 0 = a random tile, 1 = a flip/rotation of the source). With
   --reference-steps 250, DDIM-250 is the near-converged reference and every row also gets its
   RMS pixel distance to it (both samplers solve the same ODE from the same noise, so this is
   the solver error itself, free of the Fréchet distance's sampling noise).

Without --model the script builds a model first (about 2 minutes on CPU): synthetic slides tiled
at 1 µm/px into 32-px tiles, a random-init timm test ViT as the conditioning encoder (pass
--encoder for a trained one: a random encoder maps every tile near one direction, so its cosines
sit close together), and configs/diffusion/vae_tiny.yaml + ldm_tiny.yaml trained for
--vae-steps / --ldm-steps.

    python benchmarks/perf/generation_speed.py                          # CPU, about 3-4 minutes
    python benchmarks/perf/generation_speed.py --reference-steps 250 --out gen_speed.json
    python benchmarks/perf/generation_speed.py --model runs/ldm_base/model --device cuda --compile

Times are the best of --repeats windows (training, interleaved with its baseline) and of
--sample-repeats passes (sampling, samplers interleaved), so ratios hold on a shared machine while
absolute numbers move with whatever else runs there.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pathgen.config import load_config
from pathgen.data.tiles import TileDataset
from pathgen.diffusion.images import to_model_range, to_uint8
from pathgen.diffusion.ldm_io import LoadedLDM, load_ldm, read_ldm_config
from pathgen.diffusion.sampling import SamplerConfig, generate_views
from pathgen.diffusion.training_data import DiffusionTiles, resize_u8
from pathgen.distributed import pick_device
from pathgen.generation_metrics.fidelity import conditioning_fidelity
from pathgen.generation_metrics.frechet import bootstrap_frechet, frechet_distance_features
from pathgen.stages.generate import select_sources
from pathgen.stages.train_ldm import LDMObjective, LDMOptimConfig, LDMTrainConfig, train_ldm
from pathgen.stages.train_vae import VAETrainConfig, train_vae
from pathgen.train import Trainer

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "diffusion"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
MODES = {
    "fp32": ("fp32", False),
    "bf16": ("bf16", False),
    "fp32-compile": ("fp32", True),
    "bf16-compile": ("bf16", True),
}


@dataclass
class TrainRow:
    """One measured training step kind in one mode."""

    mode: str
    step: str
    batch: int
    seconds: float  # best seconds per step

    @property
    def images_per_s(self) -> float:
        return self.batch / self.seconds


@dataclass
class SampleRow:
    """One sampler in one precision: speed and quality of the same views."""

    precision: str
    sampler: str
    steps: int
    nfe: int  # denoiser evaluations per image (guidance evaluates twice)
    images: int
    seconds: float  # best seconds for all images
    frechet: float  # views ↔ real sources, conditioning-encoder features
    frechet_std: float  # bootstrap spread
    fidelity: dict
    rms_to_reference: float | None = None  # pixels / 255 against the DDIM reference

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


# -------------------------------------------------------------------------------- the model
def make_tiles(n_slides: int, slide_px: int, work: Path) -> list[str]:
    """Synthetic slides (every other one with tumor) tiled at 1 µm/px into 32-px tiles, as `pathgen tile` does."""
    from tiling.config import TilingConfig
    from tiling.pipeline import run_tiling
    from tiling.synthetic import SyntheticSlideSpec, write_synthetic_slide

    slides = [work / "slides" / f"slide_{i}.tif" for i in range(n_slides)]
    slides[0].parent.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(slides):
        write_synthetic_slide(
            path, SyntheticSlideSpec(slide_px, slide_px * 3 // 4, seed=i + 1, tumor_regions=2 * (i % 2 == 0))
        )
    run_tiling(slides, work / "tiles", TilingConfig(target_mpp=1.0, tile_size_px=32), progress=False)
    return [str(work / "tiles")]


def random_encoder(out: Path, seed: int) -> Path:
    """A random-init timm test ViT saved as a pathgen encoder folder (as tests/pathgen/conftest.py makes one)."""
    from pathgen.models import BackboneConfig, EncoderConfig, create_backbone, save_encoder
    from pathgen.models.backbone import backbone_kwargs

    torch.manual_seed(seed)
    cfg = BackboneConfig(name="test_vit", img_size=32)
    model, dim = create_backbone(cfg)
    return save_encoder(model, EncoderConfig("test_vit", dim, backbone_kwargs(cfg), input_size_px=32, mpp=1.0), out)


def build_model(args: argparse.Namespace, work: Path) -> tuple[Path, list[str], dict]:
    """Tiles, an encoder, vae_tiny and ldm_tiny for a short budget; (model dir, tile folders, seconds per stage)."""
    seconds, started = {}, time.perf_counter()
    tiles = make_tiles(args.slides, args.slide_px, work)
    seconds["slides_and_tiles"], started = time.perf_counter() - started, time.perf_counter()
    encoder = args.encoder or random_encoder(work / "encoder", args.seed)
    common = [f"data=[{tiles[0]}]", f"train.device={args.device}", "train.progress=false"]
    vae_cfg = load_config(
        VAETrainConfig, CONFIGS / "vae_tiny.yaml", [*common, f"out={work / 'vae'}", f"train.max_steps={args.vae_steps}"]
    )
    vae = train_vae(vae_cfg)
    seconds["vae"], started = time.perf_counter() - started, time.perf_counter()
    ldm_cfg = load_config(
        LDMTrainConfig,
        CONFIGS / "ldm_tiny.yaml",
        [
            *common,
            f"out={work / 'ldm'}",
            f"vae={vae}",
            f"encoder={encoder}",
            f"train.max_steps={args.ldm_steps}",
            f"train.checkpoint_every={max(args.ldm_steps, 1)}",
        ],
    )
    model_dir = train_ldm(ldm_cfg)
    seconds["ldm"] = time.perf_counter() - started
    return model_dir, tiles, seconds


def tile_folders(args: argparse.Namespace) -> list[str]:
    """The real tiles to compare with: --tiles, else the data the model was trained on."""
    if args.tiles:
        return [str(t) for t in args.tiles]
    data = read_ldm_config(args.model)["source"].get("data") or []
    if not data or not all(Path(d).is_dir() for d in data):
        raise SystemExit(f"{args.model}: its training tiles {data} are not here; give --tiles TILE_FOLDER")
    return data


def real_tiles(dataset: TileDataset, indices: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (B, 3, size, size) tiles at the given global indices, resized as LDM training resizes them."""
    tiles = [torch.from_numpy(np.ascontiguousarray(dataset.tile(int(i)).transpose(2, 0, 1))) for i in indices]
    return torch.stack([resize_u8(t, size) for t in tiles])


def embed(ldm: LoadedLDM, tiles_u8_bchw: torch.Tensor, batch: int = 256) -> np.ndarray:
    """(B, D) float64 conditioning-encoder features of uint8 tiles, in fp32 (the same ruler for every row)."""
    return np.concatenate(
        [ldm.embed(tiles_u8_bchw[i : i + batch]).double().cpu().numpy() for i in range(0, len(tiles_u8_bchw), batch)]
    )


# ------------------------------------------------------------------------------- training
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(step: Callable[[], None], n_steps: int, device: torch.device) -> float:
    """Wall seconds per call of `step`, averaged over `n_steps` calls (device work included)."""
    sync(device)
    started = time.perf_counter()
    for _ in range(n_steps):
        step()
    sync(device)
    return (time.perf_counter() - started) / max(n_steps, 1)


def training_batch(tiles: list[str], ldm: LoadedLDM, batch: int) -> dict[str, torch.Tensor]:
    """The first `batch` training items ({"image", "tile_u8"}, flipped as in training) on the model's device."""
    dataset = DiffusionTiles(tiles, ldm.image_size, seed=0)
    dataset.set_epoch(0)
    items = [dataset[i % len(dataset)] for i in range(batch)]
    return {key: torch.stack([item[key] for item in items]).to(ldm.device) for key in ("image", "tile_u8")}


def bare_step(objective: LDMObjective, batch: dict, dtype: torch.dtype, compiled: bool) -> Callable[[], None]:
    """Forward + backward of a copy of the denoiser on latents, timesteps and embeddings prepared beforehand."""
    denoiser = copy.deepcopy(objective.denoiser).train()
    run = torch.compile(denoiser) if compiled else denoiser
    latents = objective.codec.encode(batch["image"], sample=True).float()
    embeddings = objective.embed(batch["tile_u8"])
    noise = torch.randn_like(latents)
    timesteps = torch.randint(0, objective.scheduler.config.num_train_timesteps, (len(latents),), device=latents.device)
    noisy = objective.scheduler.add_noise(latents, noise, timesteps)
    device = latents.device.type

    def step() -> None:
        with nullcontext() if dtype == torch.float32 else torch.autocast(device, dtype=dtype):
            loss = F.mse_loss(run(noisy, timesteps, denoiser.context(embeddings)).float(), noise)
        loss.backward()
        denoiser.zero_grad(set_to_none=True)

    return step


def measure_training(
    ldm: LoadedLDM, tiles: list[str], mode: str, args: argparse.Namespace, run_dir: Path
) -> list[TrainRow]:
    """Best seconds per step of the Trainer's LDM step and of the bare denoiser, interleaved."""
    precision, compiled = MODES[mode]
    denoiser = copy.deepcopy(ldm.denoiser).requires_grad_(True).train()
    objective = LDMObjective(denoiser, ldm.codec, ldm.encoder, ldm.encoder_config)
    train = LDMOptimConfig(
        batch_size=args.batch_size,
        precision=precision,
        compile=compiled,
        device=args.device,
        progress=False,
        num_workers=0,
    )
    trainer = Trainer(train, objective, range(args.batch_size * 10_000), run_dir)
    trainer.step = trainer.total_steps // 2
    batch = training_batch(tiles, ldm, args.batch_size)
    steps = {
        "objective": lambda: trainer._train_step([batch]),  # the Trainer's own step, not a copy of it
        "bare": bare_step(objective, batch, trainer.dtype, compiled),
    }
    for step in steps.values():
        seconds_per_step(step, args.warmup, ldm.device)
    best = {name: float("inf") for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            best[name] = min(best[name], seconds_per_step(step, args.steps, ldm.device))
    labels = {"bare": "denoiser fwd+bwd (pre-encoded)", "objective": "LDM objective step (Trainer)"}
    return [TrainRow(mode, labels[name], args.batch_size, best[name]) for name in ("bare", "objective")]


# ------------------------------------------------------------------------------- sampling
@dataclass
class RealSet:
    """The real tiles the views are judged against, embedded once."""

    condition: np.ndarray  # (N, D) the sources' embeddings: what the views are conditioned on
    augmented: np.ndarray  # (N, D) embeddings of a rotated/flipped copy of each source
    held_out: np.ndarray  # (M, D) other real tiles: the Fréchet floor and the random-pair baseline
    held_out_vae: np.ndarray  # (M, D) the same tiles through VAE encode + decode: the first stage's floor


def real_set(ldm: LoadedLDM, tiles: list[str], n_sources: int, n_held_out: int, seed: int) -> RealSet:
    """Seeded sources and disjoint held-out real tiles from the tile folders."""
    dataset = TileDataset(tiles)
    sources = select_sources(len(dataset), n_sources, seed)
    rest = np.setdiff1d(np.arange(len(dataset)), sources)
    held_out = np.random.default_rng([seed, 1]).permutation(rest)[:n_held_out]
    if len(held_out) < 2:
        raise SystemExit(
            f"{len(dataset)} tiles leave {len(held_out)} held out beside {len(sources)} sources; "
            f"lower --sources or give more tiles"
        )
    source_tiles, other_tiles = (
        real_tiles(dataset, sources, ldm.image_size),
        real_tiles(dataset, held_out, ldm.image_size),
    )
    flipped = torch.flip(torch.rot90(source_tiles, 1, dims=(-2, -1)), dims=(-1,))
    return RealSet(
        embed(ldm, source_tiles), embed(ldm, flipped), embed(ldm, other_tiles), embed(ldm, round_trip(ldm, other_tiles))
    )


@torch.no_grad()
def round_trip(ldm: LoadedLDM, tiles_u8_bchw: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """uint8 (B, 3, S, S) tiles after VAE encode (posterior mode) and decode: the best any sampler can reach."""
    out = []
    for i in range(0, len(tiles_u8_bchw), batch):
        latents = ldm.codec.encode(to_model_range(tiles_u8_bchw[i : i + batch]).to(ldm.device))
        out.append(torch.from_numpy(to_uint8(ldm.codec.decode(latents))).permute(0, 3, 1, 2))
    return torch.cat(out)


def draw(ldm: LoadedLDM, real: RealSet, cfg: SamplerConfig, dtype: torch.dtype, args: argparse.Namespace) -> np.ndarray:
    """uint8 (N, K, S, S, 3) views of every source, as `pathgen generate` draws them (autocast when not fp32)."""
    autocast = nullcontext() if dtype == torch.float32 else torch.autocast(ldm.device.type, dtype=dtype)
    with autocast:
        return generate_views(
            ldm, torch.from_numpy(real.condition).float(), args.views, cfg, args.seed, batch_size=args.sample_batch
        )


def quality(ldm: LoadedLDM, views: np.ndarray, real: RealSet) -> tuple[float, float, dict]:
    """(Fréchet distance views ↔ sources, its bootstrap spread, conditioning fidelity) in the encoder's space."""
    n, k = views.shape[:2]
    flat = torch.from_numpy(views.reshape(n * k, *views.shape[2:])).permute(0, 3, 1, 2)
    features = embed(ldm, flat)
    frechet = frechet_distance_features(features, real.condition)
    spread = bootstrap_frechet(features, real.condition, n_bootstrap=50)["std"]
    fidelity = conditioning_fidelity(
        features.reshape(n, k, -1), real.condition, real.held_out, augmented=(real.condition, real.augmented)
    )
    return frechet, spread, fidelity


def measure_sampling(ldm: LoadedLDM, real: RealSet, precision: str, args: argparse.Namespace) -> list[SampleRow]:
    """Images/s (best of --sample-repeats, samplers interleaved) and quality of each sampler in one precision."""
    dtype = DTYPES[precision]
    samplers = [("ddim", args.ddim_steps), ("dpm++", args.dpm_steps)]
    if args.reference_steps:
        samplers.append(("ddim", args.reference_steps))
    configs = [SamplerConfig(name, steps, args.guidance) for name, steps in samplers]
    for cfg in configs:  # first-call costs at the timed shapes: allocator, kernels, scheduler construction
        draw(ldm, real, SamplerConfig(cfg.sampler, 2, cfg.guidance_scale), dtype, args)
    best, views = [float("inf")] * len(configs), [None] * len(configs)
    for _ in range(args.sample_repeats):
        for i, cfg in enumerate(configs):
            sync(ldm.device)
            started = time.perf_counter()
            views[i] = draw(ldm, real, cfg, dtype, args)
            sync(ldm.device)
            best[i] = min(best[i], time.perf_counter() - started)
    reference = views[-1].astype(np.float64) if args.reference_steps else None
    rows = []
    for cfg, seconds, drawn in zip(configs, best, views):
        frechet, spread, fidelity = quality(ldm, drawn, real)
        rms = None if reference is None else float(np.sqrt(((drawn - reference) ** 2).mean()) / 255)
        nfe = cfg.steps * (1 if cfg.guidance_scale == 1.0 else 2)
        rows.append(
            SampleRow(
                precision,
                cfg.sampler,
                cfg.steps,
                nfe,
                drawn.shape[0] * drawn.shape[1],
                seconds,
                frechet,
                spread,
                fidelity,
                rms,
            )
        )
    return rows


# ----------------------------------------------------------------------------------- report
def print_training(rows: list[TrainRow]) -> None:
    print(f"\n{'mode':<14}{'step':<34}{'batch':>6}{'steps/s':>9}{'images/s':>10}{'ms/step':>9}")
    for row in rows:
        print(
            f"{row.mode:<14}{row.step:<34}{row.batch:>6}{1 / row.seconds:>9.2f}{row.images_per_s:>10.1f}"
            f"{1000 * row.seconds:>9.1f}"
        )
    for bare, objective in zip(rows[::2], rows[1::2]):
        print(
            f"{objective.mode}: LDM objective / bare denoiser images/s = "
            f"{objective.images_per_s / bare.images_per_s:.2f} (share of the limit)"
        )
    fp32 = next((r for r in rows[1::2] if r.mode == "fp32"), None)
    for objective in rows[1::2]:
        if fp32 is not None and objective is not fp32:
            ratio = objective.images_per_s / fp32.images_per_s
            print(f"{objective.mode}: LDM objective images/s / fp32's = {ratio:.2f}")


def print_sampling(rows: list[SampleRow], floors: dict[str, float], real: RealSet) -> None:
    has_ref = any(row.rms_to_reference is not None for row in rows)
    print(
        f"\n{'prec':<6}{'sampler':<10}{'NFE':>5}{'images':>7}{'images/s':>10}{'× DDIM':>8}{'FD':>16}"
        f"{'fidelity':>10}{'− random':>10}" + (f"{'RMS→ref':>9}" if has_ref else "")
    )
    for row in rows:
        base = next(r for r in rows if r.precision == row.precision and r.sampler == "ddim")
        ref = f"{row.rms_to_reference:>9.4f}" if has_ref else ""
        name = f"{row.sampler}-{row.steps}"
        print(
            f"{row.precision:<6}{name:<10}{row.nfe:>5}{row.images:>7}{row.images_per_s:>10.2f}"
            f"{row.images_per_s / base.images_per_s:>8.2f}{row.frechet:>10.3f} ±{row.frechet_std:<4.2f}"
            f"{row.fidelity['fidelity']:>10.3f}{row.fidelity['difference']:>+10.3f}{ref}"
        )
    fidelity = rows[0].fidelity
    print(
        f"FD floors ({len(real.held_out)} held-out real tiles ↔ the {len(real.condition)} sources): real "
        f"{floors['real']:.3f}, through the VAE {floors['vae']:.3f}; cosine: random real pairs "
        f"{fidelity['random_pairs']:.3f}, a flipped source to its source {fidelity['augmented_self']:.3f}"
    )
    print_speedups(rows)


def print_speedups(rows: list[SampleRow]) -> None:
    """DPM-Solver++ against DDIM at their quality, per precision; then each precision against fp32."""
    for row in rows:
        if row.sampler != "dpm++":
            continue
        base = next(r for r in rows if r.precision == row.precision and r.sampler == "ddim")
        ref = (
            f", RMS to the reference {row.rms_to_reference:.4f} vs {base.rms_to_reference:.4f}"
            if row.rms_to_reference is not None
            else ""
        )
        print(
            f"{row.precision}: DPM-Solver++-{row.steps} / DDIM-{base.steps} images/s = "
            f"{row.images_per_s / base.images_per_s:.2f}; FD {row.frechet:.3f} vs {base.frechet:.3f}, "
            f"fidelity {row.fidelity['fidelity']:.3f} vs {base.fidelity['fidelity']:.3f}{ref}"
        )
    for row in rows:
        fp32 = next(
            (r for r in rows if r.precision == "fp32" and (r.sampler, r.steps) == (row.sampler, row.steps)), None
        )
        if fp32 is not None and row is not fp32:
            ratio = row.images_per_s / fp32.images_per_s
            print(f"{row.precision} / fp32 images/s, {row.sampler}-{row.steps}: {ratio:.2f}")


# -------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="a `pathgen train-ldm` model folder (default: build a tiny one)")
    parser.add_argument("--tiles", type=Path, nargs="+", help="real tile folders (default: the model's training data)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads on CPU (default 1: tiny models are op-bound; 0: torch's choice)",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    build = parser.add_argument_group("building the model (without --model)")
    build.add_argument("--work", type=Path, help="keep the slides, tiles and runs here (default: a temporary folder)")
    build.add_argument("--encoder", type=Path, help="conditioning encoder folder (default: a random test ViT)")
    build.add_argument("--slides", type=int, default=2, help="synthetic slides (about 200 32-px tiles each)")
    build.add_argument("--slide-px", type=int, default=4096, help="slide width at 0.25 µm/px (height 3/4 of it)")
    build.add_argument("--vae-steps", type=int, default=300)
    build.add_argument("--ldm-steps", type=int, default=1000)
    train = parser.add_argument_group("training throughput")
    train.add_argument("--modes", nargs="+", choices=sorted(MODES), help="default fp32 on CPU, fp32 and bf16 on CUDA")
    train.add_argument("--compile", action="store_true", help="add the torch.compile'd variant of each mode")
    train.add_argument("--batch-size", type=int, help="images per step (default 16 on CPU, 64 on CUDA)")
    train.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    train.add_argument("--steps", type=int, help="steps per timed window (default 10 on CPU, 30 on CUDA)")
    train.add_argument("--repeats", type=int, default=3, help="timed windows; the best is kept")
    sample = parser.add_argument_group("sampling")
    sample.add_argument("--sources", type=int, default=64, help="real source tiles to condition on")
    sample.add_argument("--views", type=int, default=2, help="views per source")
    sample.add_argument("--held-out", type=int, help="held-out real tiles for the floors (default sources × views)")
    sample.add_argument("--sample-batch", type=int, help="samples per denoiser call (default 64 on CPU, 256 on CUDA)")
    sample.add_argument("--guidance", type=float, default=2.0)
    sample.add_argument("--ddim-steps", type=int, default=50)
    sample.add_argument("--dpm-steps", type=int, default=20)
    sample.add_argument(
        "--reference-steps",
        type=int,
        default=0,
        help="also DDIM with this many steps as the near-converged reference (e.g. 250)",
    )
    sample.add_argument("--sample-repeats", type=int, default=2, help="timed sampling passes; the best is kept")
    sample.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def fill_device_defaults(args: argparse.Namespace) -> None:
    """CPU and CUDA get different batch sizes, modes and step counts."""
    cuda = pick_device(args.device).type == "cuda"
    args.device = "cuda" if cuda else "cpu"
    args.modes = args.modes or (["fp32", "bf16"] if cuda else ["fp32"])
    if args.compile:
        args.modes += [f"{m}-compile" for m in args.modes if not m.endswith("-compile")]
    args.batch_size = args.batch_size or (64 if cuda else 16)
    args.steps = args.steps or (30 if cuda else 10)
    args.sample_batch = args.sample_batch or (256 if cuda else 64)
    args.held_out = args.held_out or args.sources * args.views
    if not cuda and args.threads:
        torch.set_num_threads(args.threads)


def device_line(args: argparse.Namespace) -> str:
    if args.device == "cuda":
        return f"{torch.cuda.get_device_name()}"
    return f"CPU, {torch.get_num_threads()} torch threads (machine possibly shared with other jobs)"


def run(args: argparse.Namespace, work: Path) -> dict:
    """Build or load the model, then measure training and sampling; the results as a dict."""
    built = {}
    if args.model is None:
        args.model, args.tiles, built = build_model(args, work)
        print("built the model in " + ", ".join(f"{k} {v:.1f} s" for k, v in built.items()), flush=True)
    tiles = tile_folders(args)
    ldm = load_ldm(args.model, args.device)
    n_params = sum(p.numel() for p in ldm.denoiser.parameters())
    print(
        f"{args.model}: {ldm.image_size}-px images, {ldm.latent_size}² × {ldm.codec.latent_channels} latents, "
        f"denoiser {n_params / 1e6:.2f} M parameters; {device_line(args)}",
        flush=True,
    )
    training: list[TrainRow] = []
    for mode in args.modes:
        training += measure_training(ldm, tiles, mode, args, work / "train_step")
        print(f"  measured training {mode}", flush=True)
    real = real_set(ldm, tiles, args.sources, args.held_out, args.seed)
    floors = {
        "real": frechet_distance_features(real.held_out, real.condition),
        "vae": frechet_distance_features(real.held_out_vae, real.condition),
    }
    sampling: list[SampleRow] = []
    for precision in dict.fromkeys(MODES[m][0] for m in args.modes):
        sampling += measure_sampling(ldm, real, precision, args)
        print(f"  measured sampling {precision}", flush=True)
    print_training(training)
    print_sampling(sampling, floors, real)
    return {
        "model": str(args.model),
        "device": device_line(args),
        "build_seconds": built,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "training": [{**asdict(r), "images_per_s": r.images_per_s} for r in training],
        "sampling": [{**asdict(r), "images_per_s": r.images_per_s} for r in sampling],
        "frechet_floors": floors,
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    fill_device_defaults(args)
    with tempfile.TemporaryDirectory(prefix="pathgen_generation_speed_") as tmp:
        work = args.work or Path(tmp)
        results = run(args, work)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, default=str))
        print(f"results → {args.out}")
    return results


if __name__ == "__main__":
    main()
