"""Does the toy generator keep what the encoder sees? VAE curve, LDM, views bank and eval-gen in one run.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/generator_quality.py --work runs/genq \
        [--vae-config configs/diffusion/vae_toy64.yaml] [--vae-override KEY=VALUE ...] [--vae-steps 250,500,1000] \
        [--ldm-config configs/diffusion/ldm_toy64.yaml] [--ldm-override KEY=VALUE ...] [--name NAME] [--no-ldm]
        [--generate-override KEY=VALUE ... --bank-suffix SUFFIX]

Stages, each cached in --work and skipped on a re-run once its output is complete (a VAE or LDM run that was
stopped continues from its checkpoint):
1. tiles: the shared real slide (CMU-1-Small-Region.svs) and two synthetic lymph-node slides, tiled at 128 px
   and 0.5 µm/px (`pathgen synth`, `pathgen tile`); a third synthetic slide is tiled apart as held-out tiles;
2. ssl_round1: the round-1 encoder of `pathgen gensis`: configs/ssl/dino_tiny.yaml on those tiles, seed 0;
3. vae_NAME: `train-vae` with the given config, stopped at every --vae-steps value (the run resumes from its
   checkpoint, so with a constant LR the curve is one run); at each, its reconstructions' retrieval of their
   own source among 64 training and 64 held-out sources at the VAE's size, with PSNR
   (pathgen.stages.eval_gen.reconstruction_references), in the round-1 encoder's space;
4. ldm_NAME, bank_NAME, eval_NAME: `train-ldm` on that VAE and encoder, a views bank of 64 sources × 2 views,
   `eval-gen` on it, and the denoiser's prediction error with each tile's own, another tile's and the null context
   (pathgen.diffusion.conditioning_use) on 128 training tiles: does it use its conditioning at all?
   `--ldm-tiles real` trains the LDM on the real slide's 149 tiles alone (more epochs per tile).
It prints the curve, CPU seconds per stage (this process, all threads) and the final numbers against the
goals of issue 17 (VAE reconstructions ≥ 0.7, views ≥ 0.4 source retrieval among ≥ 64 sources at 64 px), and
writes them to WORK/results_NAME.json. Measured points: docs/generation.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pathgen.cli import main as pathgen
from pathgen.config import load_config
from pathgen.diffusion.bank import ViewBank
from pathgen.diffusion.conditioning_use import conditioning_use
from pathgen.diffusion.ldm_io import load_ldm
from pathgen.diffusion.training_data import DiffusionTiles, evenly_spaced
from pathgen.stages.eval_gen import eval_gen, reconstruction_references
from pathgen.stages.generate import GenerateConfig, generate_bank
from pathgen.stages.train_ldm import LDMTrainConfig, train_ldm
from pathgen.stages.train_vae import VAETrainConfig, train_vae
from pathgen.threads import torch_threads
from tiling.store import TileStore, list_store_paths

REPO = Path(__file__).resolve().parents[1]
REAL_SLIDE = Path("/work/shared/data/slides/CMU-1-Small-Region.svs")
GOALS = {"vae_reconstruction": 0.7, "views": 0.4}
N_SOURCES = 64


def timed(log: dict, name: str, fn):  # noqa: ANN001, ANN201 -- any stage callable and its result
    """Run `fn`, add its CPU seconds (this process, all threads) to log[name]; returns fn's result."""
    start = time.process_time()
    result = fn()
    log[name] = log.get(name, 0.0) + time.process_time() - start
    return result


def cli(*argv: str) -> None:
    """One `pathgen` command in this process; a non-zero status stops the benchmark."""
    status = pathgen([str(a) for a in argv])
    if status != 0:
        sys.exit(f"generator_quality: pathgen {' '.join(map(str, argv))} failed with status {status}")


GEOMETRY = ["--tile-size", "128", "--mpp", "0.5", "--workers", "0", "--no-progress"]


def make_tiles(work: Path, real_slide: Path) -> tuple[Path, Path]:
    """Training tiles (real slide + 2 synthetic) and held-out tiles (1 other synthetic slide)."""
    tiles, held_out = work / "tiles", work / "tiles_held_out"
    geometry = GEOMETRY
    synth = ["--width", "8192", "--height", "6144", "--lymph-node", "--pen-strokes", "0"]
    if not (tiles / "manifest.csv").is_file():
        cli("synth", work / "slides", "--n", "2", *synth)
        cli("tile", work / "slides", real_slide, "--out", tiles, *geometry)
    if not (held_out / "manifest.csv").is_file():
        cli("synth", work / "slides_held_out", "--n", "1", "--seed", "100", *synth)
        cli("tile", work / "slides_held_out", "--out", held_out, *geometry)
    return tiles, held_out


def make_real_tiles(work: Path, real_slide: Path) -> Path:
    """The real slide's tiles alone (the same geometry as the training tiles): the LDM memorisation check."""
    tiles = work / "tiles_real"
    if not (tiles / "manifest.csv").is_file():
        cli("tile", real_slide, "--out", tiles, *GEOMETRY)
    return tiles


def train_round1(work: Path, tiles: Path) -> Path:
    """Round 1 of `pathgen gensis`: dino_tiny on the tiles, seed 0, CPU."""
    model = work / "ssl_round1" / "model"
    if not (model / "config.json").is_file():
        cli(
            "train-ssl",
            "--config",
            REPO / "configs/ssl/dino_tiny.yaml",
            f"data={tiles}",
            f"out={work / 'ssl_round1'}",
            "train.num_workers=0",
            "train.device=cpu",
            "train.progress=false",
        )
    return model


def pick_sources(tile_dir: Path, n: int, seed: int = 0) -> list[tuple[str, int]]:
    """A seeded random `n` of the folder's tiles, as (store path, index) pairs."""
    keys = [(str(s), i) for s in list_store_paths(tile_dir) for i in range(len(TileStore(s)))]
    pick = np.random.default_rng(seed).choice(len(keys), min(n, len(keys)), replace=False)
    return [keys[j] for j in sorted(pick)]


def vae_curve(cfg: VAETrainConfig, steps: list[int], encoder: Path, sources: dict, cpu: dict) -> list[dict]:
    """Train the VAE up to each of `steps` (resuming), and measure its reconstructions after each."""
    run, curve_file = Path(cfg.out), Path(cfg.out) / "curve.jsonl"
    done = {p["step"]: p for p in map(json.loads, curve_file.read_text().splitlines())} if curve_file.is_file() else {}
    total_cpu = max([p["cpu_s"] for p in done.values()], default=0.0)  # over earlier runs too
    for step in steps:
        if step in done:
            continue
        run_cfg = replace(cfg, train=replace(cfg.train, max_steps=step))
        before = cpu.get("vae", 0.0)
        timed(cpu, "vae", lambda c=run_cfg: train_vae(c, resume=(run / "checkpoints" / "last.pt").is_file()))
        total_cpu += cpu["vae"] - before
        point = {"step": step, "cpu_s": round(total_cpu, 1)}
        for split, keys in sources.items():
            refs = reconstruction_references(run / "model", encoder, keys, cfg.image_size, device="cpu")
            point[split] = {
                "recon_retrieval": refs["vae_reconstruction"]["retrieval_top1"],
                "real_retrieval": refs["real_at_size"]["retrieval_top1"],
                "psnr_db": round(refs["psnr_db"], 2),
            }
        print(f"vae curve: {json.dumps(point)}", flush=True)
        with curve_file.open("a") as f:
            f.write(json.dumps(point) + "\n")
        done[step] = point
    return [done[s] for s in sorted(done)]


def ldm_config(args: argparse.Namespace, ldm_run: Path, tiles: Path, encoder: Path, vae: Path) -> LDMTrainConfig:
    """The LDM config with this benchmark's tiles, encoder, VAE, output folder and CPU settings."""
    cfg = load_config(LDMTrainConfig, args.ldm_config, args.ldm_override)
    cfg = replace(cfg, data=[str(tiles)], out=str(ldm_run), encoder=str(encoder), vae=str(vae))
    return replace(cfg, train=replace(cfg.train, device="cpu", progress=False, num_workers=0))


def views_point(args: argparse.Namespace, model: Path, tiles: Path, name: str, cpu: dict) -> dict:
    """A views bank of 64 sources × 2 views from the LDM `model` and eval-gen's numbers on it (cached)."""
    work, bank = args.work.resolve(), args.work.resolve() / f"bank_{name}"
    overrides = ["n_views=2", *args.generate_override]
    generate = load_config(GenerateConfig, REPO / "configs/diffusion/generate_tiny.yaml", overrides)
    generate = replace(generate, model=str(model), tiles=[str(tiles)], out=str(bank), max_sources=N_SOURCES)
    if not (bank.exists() and ViewBank(bank, require_complete=False).complete):
        timed(cpu, "bank", lambda: generate_bank(replace(generate, device="cpu"), progress=False))
    metrics_file = work / f"eval_{name}" / "metrics.json"
    if not metrics_file.is_file():
        timed(cpu, "eval_gen", lambda: eval_gen(bank, out_dir=work / f"eval_{name}", device="cpu", n_bootstrap=5))
    metrics = json.loads(metrics_file.read_text())
    conditioning = metrics["encoders"]["conditioning"]
    refs = conditioning["references"]
    return {
        "views": conditioning["fidelity"]["retrieval_top1"],
        "vae_reconstruction": refs["vae_reconstruction"]["retrieval_top1"],
        "real_at_bank_size": refs["real_at_bank_size"]["retrieval_top1"],
        "shuffled": refs["shuffled_conditioning"]["retrieval_top1"],
        "psnr_db": metrics["vae"].get("psnr_db"),
    }


def latents_and_embeddings(ldm, tiles: Path, n_tiles: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001 -- LoadedLDM
    """The VAE latents (posterior mode) and conditioning embeddings of `n_tiles` evenly spaced tiles of the folder
    (all when None), un-flipped."""
    data = DiffusionTiles([str(tiles)], ldm.image_size, flips=False)
    picked = range(len(data)) if n_tiles is None else evenly_spaced(len(data), n_tiles)
    items = [data[int(i)] for i in picked]
    with torch.no_grad():
        latents = ldm.codec.encode(torch.stack([item["image"] for item in items]))
        embeddings = ldm.embed(torch.stack([item["tile_u8"] for item in items]))
    return latents, embeddings


def conditioning_point(model: Path, tiles: Path, n_tiles: int = 128) -> dict[str, dict[str, float]]:
    """The denoiser's prediction error with its own / another / the null context on `n_tiles` evenly spaced
    training tiles (pathgen.diffusion.conditioning_use), keyed by timestep."""
    ldm = load_ldm(model, device="cpu")
    latents, embeddings = latents_and_embeddings(ldm, tiles, n_tiles)
    use = conditioning_use(ldm.denoiser, ldm.config, latents, embeddings)
    return {str(t): {k: round(v, 4) for k, v in errors.items()} for t, errors in use.items()}


def embedding_information(model: Path, tiles: Path) -> dict[str, float]:
    """How much of each training tile's VAE latent its conditioning embedding predicts linearly: 5-fold
    cross-validated R² of a ridge regression (alpha by inner CV) from the raw embedding to the latents' per-channel
    means (the tile's colour), their 4 × 4 pooled layout and the whole latent. What a denoiser could take from
    the embedding at the highest noise, where the noisy latent tells nothing."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_predict

    latents, embeddings = latents_and_embeddings(load_ldm(model, device="cpu"), tiles)
    embeddings = embeddings.numpy()
    targets = {
        "channel_means": latents.mean(dim=(2, 3)).numpy(),
        "pooled_4x4": torch.nn.functional.avg_pool2d(latents, latents.shape[-1] // 4).flatten(1).numpy(),
        "whole_latent": latents.flatten(1).numpy(),
    }
    r2 = {}
    for name, y in targets.items():
        predicted = cross_val_predict(RidgeCV(alphas=np.logspace(-4, 3, 15)), embeddings, y, cv=5)
        r2[name] = round(float(1 - ((predicted - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()), 3)
    return r2


def ldm_curve(args: argparse.Namespace, tiles: Path, encoder: Path, vae: Path, cpu: dict) -> list[dict]:
    """Train the LDM up to each --ldm-steps value (resuming; its LR is constant after warm-up, so the curve
    is one run), and measure a views bank after each."""
    ldm_name = args.ldm_name or args.name
    ldm_run = args.work.resolve() / f"ldm_{ldm_name}"
    cfg = ldm_config(args, ldm_run, tiles, encoder, vae)
    steps = [int(s) for s in args.ldm_steps.split(",") if s] or [cfg.train.max_steps]
    curve_file = ldm_run / f"curve{args.bank_suffix}.jsonl"
    done = {p["step"]: p for p in map(json.loads, curve_file.read_text().splitlines())} if curve_file.is_file() else {}
    total_cpu = max([p["cpu_s"] for p in done.values()], default=0.0)
    for step in steps:
        if step in done:
            continue
        trained = json.loads((ldm_run / "model" / "config.json").read_text()) if (ldm_run / "model").is_dir() else {}
        if trained.get("source", {}).get("step") != step:
            before = cpu.get("ldm", 0.0)
            run_cfg = replace(cfg, train=replace(cfg.train, max_steps=step))
            timed(cpu, "ldm", lambda c=run_cfg: train_ldm(c, resume=(ldm_run / "checkpoints" / "last.pt").is_file()))
            total_cpu += cpu["ldm"] - before
            reached = json.loads((ldm_run / "model" / "config.json").read_text())["source"]["step"]
            if reached != step:  # stopped (a signal, a time limit) before the curve point: no point for it
                print(f"ldm curve: training stopped at step {reached}, before {step}; re-run to continue", flush=True)
                break
        point = {"step": step, "cpu_s": round(total_cpu, 1)}
        point.update(views_point(args, ldm_run / "model", tiles, f"{ldm_name}{args.bank_suffix}_s{step}", cpu))
        point["prediction_mse"] = conditioning_point(ldm_run / "model", tiles)
        print(f"ldm curve: {json.dumps(point)}", flush=True)
        with curve_file.open("a") as f:
            f.write(json.dumps(point) + "\n")
        done[step] = point
    return [done[s] for s in sorted(done)]


def report(results: dict) -> None:
    """Print the curve, the CPU seconds per stage and the final numbers against the goals."""
    print("\nVAE curve (training sources | held-out sources): step, CPU s, recon retrieval, real retrieval, PSNR")
    for p in results["curve"]:
        train, held = p["train"], p["held_out"]
        print(
            f"  {p['step']:6d} {p['cpu_s']:8.1f}  {train['recon_retrieval']:.3f} {train['real_retrieval']:.3f} "
            f"{train['psnr_db']:6.2f} dB | {held['recon_retrieval']:.3f} {held['real_retrieval']:.3f} "
            f"{held['psnr_db']:6.2f} dB"
        )
    print("CPU seconds this run: " + ", ".join(f"{k} {v:.0f}" for k, v in results["cpu_s"].items()))
    if results.get("ldm_curve"):
        print("LDM curve: step, CPU s, views retrieval (VAE recon, real at size, shuffled)")
        for p in results["ldm_curve"]:
            print(
                f"  {p['step']:6d} {p['cpu_s']:8.1f}  {p['views']:.3f} ({p['vae_reconstruction']:.3f}, "
                f"{p['real_at_bank_size']:.3f}, {p['shuffled']:.3f})"
            )
            for t, e in p.get("prediction_mse", p.get("eps_mse", {})).items():
                print(
                    f"      prediction MSE at t={t}: own {e['own']:.4f}, other tile's {e['other']:.4f}, "
                    f"null {e['null']:.4f} (own context removes {100 * e['gain']:.1f} % of the other's error)"
                )
    if results.get("embedding_r2"):
        print(
            "latent explained by the embedding (ridge, 5-fold CV R²): "
            + ", ".join(f"{k} {v:.3f}" for k, v in results["embedding_r2"].items())
        )
    final = results.get("final")
    if final:
        print(f"eval-gen ({N_SOURCES} sources, 2 views): " + ", ".join(f"{k} {v}" for k, v in final.items()))
        for key, goal in GOALS.items():
            print(f"goal {key} >= {goal}: {final[key]:.3f} {'met' if final[key] >= goal else 'NOT met'}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("runs/generator_quality"))
    parser.add_argument("--real-slide", type=Path, default=REAL_SLIDE)
    parser.add_argument("--name", default="toy64", help="names this experiment's VAE / LDM / bank folders")
    parser.add_argument("--vae-config", type=Path, default=REPO / "configs/diffusion/vae_toy64.yaml")
    parser.add_argument("--vae-override", action="append", default=[])
    parser.add_argument("--vae-steps", default="", help="comma-separated curve points (default: the config's)")
    parser.add_argument("--ldm-config", type=Path, default=REPO / "configs/diffusion/ldm_toy64.yaml")
    parser.add_argument("--ldm-override", action="append", default=[])
    parser.add_argument("--ldm-steps", default="", help="comma-separated curve points (default: the config's)")
    parser.add_argument("--ldm-name", default="", help="names the LDM / bank folders (default: --name)")
    parser.add_argument("--generate-override", action="append", default=[], help="e.g. sampler.guidance_scale=4")
    parser.add_argument("--bank-suffix", default="", help="a second bank of the same LDM (other --generate-override)")
    parser.add_argument(
        "--ldm-tiles",
        choices=["all", "real"],
        default="all",
        help="the LDM's training tiles and the bank's sources: all training tiles, or the real slide's alone "
        "(149 tiles: can the denoiser learn to follow its conditioning when it sees each tile often?)",
    )
    parser.add_argument("--no-ldm", action="store_true", help="stop after the VAE curve")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    cpu: dict[str, float] = {}
    with torch_threads(1):
        tiles, held_out = timed(cpu, "tiles", lambda: make_tiles(work, args.real_slide))
        encoder = timed(cpu, "ssl_round1", lambda: train_round1(work, tiles))
        vae_cfg = load_config(VAETrainConfig, args.vae_config, [*args.vae_override, f"feature_encoder={encoder}"])
        vae_cfg = replace(vae_cfg, data=[str(tiles)], out=str(work / f"vae_{args.name}"))
        vae_cfg = replace(vae_cfg, train=replace(vae_cfg.train, device="cpu", progress=False, num_workers=0))
        steps = [int(s) for s in args.vae_steps.split(",") if s] or [vae_cfg.train.max_steps]
        sources = {"train": pick_sources(tiles, N_SOURCES), "held_out": pick_sources(held_out, N_SOURCES)}
        results = {"name": args.name, "curve": vae_curve(vae_cfg, steps, encoder, sources, cpu), "cpu_s": cpu}
        if not args.no_ldm:
            ldm_tiles = make_real_tiles(work, args.real_slide) if args.ldm_tiles == "real" else tiles
            results["ldm_curve"] = ldm_curve(args, ldm_tiles, encoder, work / f"vae_{args.name}" / "model", cpu)
            results["final"] = results["ldm_curve"][-1]
            model = work / f"ldm_{args.ldm_name or args.name}" / "model"
            results["embedding_r2"] = embedding_information(model, ldm_tiles)
    (work / f"results_{args.ldm_name or args.name}{args.bank_suffix}.json").write_text(json.dumps(results, indent=2))
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
