"""The stages a Gen-SIS run is made of, each a resumable step that writes one documented folder.

A `Stage` knows its resolved settings (hashed into its fingerprint, pathgen.stages.run_status), how
to tell that its output is complete (a model folder's config.json, written after its weights; a
bank's `complete` attribute; a results.json) and how to make it. `run_stages` runs the incomplete
ones in order, skipping the rest, and refuses outputs that were made with other settings.
The stage functions here wrap the existing stage APIs (train_ssl, embed_folder, train_vae,
train_ldm, generate_bank, eval_gen, run_bench) without changing what they do.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from pathgen.atomic import is_json_file
from pathgen.config import save_config, to_dict, yaml_load
from pathgen.diffusion.bank import bank_complete
from pathgen.diffusion.real_bank import write_real_views_bank
from pathgen.genaug.foreground import PCA_CONFIG, PCA_WEIGHTS
from pathgen.models.embeddings import embed_folder, embeddings_complete
from pathgen.stages.bench import run_bench
from pathgen.stages.eval_gen import eval_gen
from pathgen.stages.fit_foreground import fit_foreground
from pathgen.stages.generate import GenerateConfig, generate_bank
from pathgen.stages.run_status import STATUS_FILE, Manifest, fingerprint, plain, settings_compatible
from pathgen.stages.train_ldm import LDMTrainConfig, train_ldm
from pathgen.stages.train_ssl import SSLConfig, build_dataset, build_ssl_method, export_encoder, train_ssl
from pathgen.stages.train_vae import VAETrainConfig, train_vae
from pathgen.train import CHECKPOINT
from tiling.store import is_complete, list_store_paths


class PipelineError(RuntimeError):
    """A run that cannot continue as asked (stale outputs, a missing input stage, a stage under torchrun)."""


@dataclass
class Stage:
    """One step: `run()` writes `folder`; `done()` says whether a complete output is already there.

    `distributed` stages (training) run on every torchrun rank; the others only in a single process.
    `owns_folder`: the folder is the stage's alone (a run or bank folder), so anything in it counts
    as its output; False for stages that add files to another stage's folder. `defaults`: the settings of
    the stage's config class at its defaults (for config stages), against which a setting added to pathgen
    since an output was made is judged (run_status.settings_compatible).
    """

    name: str
    folder: Path
    settings: Any
    done: Callable[[], bool]
    run: Callable[[], Any]
    inputs: tuple[str, ...] = ()
    distributed: bool = False
    owns_folder: bool = True
    defaults: Any = None


def _defaults(cfg: Any) -> dict:
    """The settings of `cfg`'s config class at its defaults."""
    return to_dict(type(cfg)())


def model_complete(model_dir: Path) -> bool:
    """A pathgen model folder (encoder, VAE or LDM) is complete once config.json, written last, exists."""
    return (model_dir / "model.safetensors").is_file() and is_json_file(model_dir / "config.json")


def _resume(run_dir: Path) -> bool:
    return (run_dir / CHECKPOINT).is_file()


def ssl_stage(name: str, cfg: SSLConfig, inputs: tuple[str, ...] = ()) -> Stage:
    """`pathgen train-ssl` of the resolved `cfg` into cfg.out (continuing from its checkpoint after a kill);
    output cfg.out/model."""
    run_dir = Path(cfg.out)

    def run() -> Path:
        # train_ssl seeds before building the model, so runs of one seed start from the same weights
        # (round 1 and round 2 then differ only in what they learn from)
        return train_ssl(cfg, resume=_resume(run_dir))

    return Stage(
        name,
        run_dir,
        to_dict(cfg),
        lambda: model_complete(run_dir / "model"),
        run,
        inputs,
        distributed=True,
        defaults=_defaults(cfg),
    )


def ssl_init_stage(name: str, cfg: SSLConfig) -> Stage:
    """The SSL config's encoder before its first step (the seed's initial weights, exported as train_ssl
    would, into cfg.out/model): the floor that shows how much an SSL run learned beyond its random
    initialisation."""
    out_dir = Path(cfg.out)

    def run() -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
        dataset = build_dataset(cfg)
        torch.manual_seed(cfg.train.seed)  # as train_ssl does: the same draws, in the same order, as step 0
        return export_encoder(build_ssl_method(cfg), cfg, out_dir / "model", dataset, step=0)

    return Stage(name, out_dir, to_dict(cfg), lambda: model_complete(out_dir / "model"), run, defaults=_defaults(cfg))


def vae_stage(name: str, cfg: VAETrainConfig, inputs: tuple[str, ...] = ()) -> Stage:
    """`pathgen train-vae` of the resolved `cfg` into cfg.out; output cfg.out/model (`inputs`: the stage of
    its feature-loss encoder, when it has one)."""
    run_dir = Path(cfg.out)
    return Stage(
        name,
        run_dir,
        to_dict(cfg),
        lambda: model_complete(run_dir / "model"),
        lambda: train_vae(cfg, resume=_resume(run_dir)),
        inputs,
        distributed=True,
        defaults=_defaults(cfg),
    )


def ldm_stage(name: str, cfg: LDMTrainConfig, inputs: tuple[str, ...]) -> Stage:
    """`pathgen train-ldm` of the resolved `cfg` into cfg.out; output cfg.out/model (EMA denoiser + VAE and
    encoder copies)."""
    run_dir = Path(cfg.out)
    return Stage(
        name,
        run_dir,
        to_dict(cfg),
        lambda: model_complete(run_dir / "model"),
        lambda: train_ldm(cfg, resume=_resume(run_dir)),
        inputs,
        distributed=True,
        defaults=_defaults(cfg),
    )


def embed_stage(
    name: str,
    model_dir: Path,
    tiles: list[str],
    embeddings_name: str,
    device: str,
    progress: bool,
    inputs: tuple[str, ...],
) -> Stage:
    """`pathgen embed` of every tile folder with the encoder in model_dir, as `embeddings_name`."""

    def done() -> bool:
        paths = [p for t in tiles for p in list_store_paths(t) if is_complete(p)]
        return bool(paths) and all(embeddings_complete(p, embeddings_name) for p in paths)

    def run() -> None:
        for tile_dir in tiles:
            embed_folder(model_dir, tile_dir, embeddings_name, device, progress=progress)

    settings = {"model": str(model_dir), "tiles": list(tiles), "name": embeddings_name}
    return Stage(name, Path(tiles[0]), settings, done, run, inputs, owns_folder=False)


def foreground_stage(
    name: str, model_dir: Path, tiles: list[str], max_tiles: int, device: str, inputs: tuple[str, ...]
) -> Stage:
    """GenView's foreground PCA fitted on the encoder's patch tokens, saved beside the encoder."""

    settings = {"model": str(model_dir), "tiles": list(tiles), "max_tiles": max_tiles}
    return Stage(
        name,
        model_dir,
        settings,
        lambda: (model_dir / PCA_WEIGHTS).is_file() and (model_dir / PCA_CONFIG).is_file(),
        lambda: fit_foreground(model_dir, list(tiles), max_tiles=max_tiles, device=device),
        inputs,
        owns_folder=False,
    )


def bank_stage(name: str, cfg: GenerateConfig, progress: bool, inputs: tuple[str, ...]) -> Stage:
    """`pathgen generate` of the resolved `cfg` into cfg.out (resuming unfinished rows); complete once the
    bank says so."""
    bank_dir = Path(cfg.out)

    def done() -> bool:
        return bank_complete(bank_dir) and (cfg.grid_rows <= 0 or (bank_dir / "grid.png").is_file())

    def run() -> None:
        generate_bank(cfg, progress=progress)

    return Stage(name, bank_dir, to_dict(cfg), done, run, inputs, defaults=_defaults(cfg))


def real_bank_stage(name: str, bank_dir: Path, source_bank_dir: Path, inputs: tuple[str, ...]) -> Stage:
    """The resolution-matched real control of a generated bank (pathgen.diffusion.real_bank)."""

    return Stage(
        name,
        bank_dir,
        {"control_of": str(source_bank_dir)},
        lambda: bank_complete(bank_dir),
        lambda: write_real_views_bank(source_bank_dir, bank_dir),
        inputs,
    )


def eval_gen_stage(name: str, bank_dirs: list[Path], settings: dict, device: str, inputs: tuple[str, ...]) -> Stage:
    """`pathgen eval-gen` of each bank (BANK/eval/metrics.json)."""

    def run() -> None:
        for bank_dir in bank_dirs:
            eval_gen(bank_dir, device=device, **settings)

    return Stage(
        name,
        bank_dirs[0] / "eval",
        {"banks": [str(b) for b in bank_dirs], **settings},
        lambda: all(is_json_file(b / "eval" / "metrics.json") for b in bank_dirs),
        run,
        inputs,
    )


def bench_stage(name: str, bench_dir: Path, tasks: list, encoders: dict[str, Path], inputs: tuple[str, ...]) -> Stage:
    """`pathgen bench` of the named encoders ({table name: model folder}) on the resolved tasks."""

    def run() -> None:
        run_bench(
            tasks, [f"{label}={model_dir}" for label, model_dir in encoders.items()], bench_dir, bench_dir / "cache"
        )

    settings = {"encoders": {k: str(v) for k, v in encoders.items()}, "tasks": [to_dict(t) for t in tasks]}
    return Stage(name, bench_dir, settings, lambda: is_json_file(bench_dir / "results.json"), run, inputs)


def run_stages(
    stages: Sequence[Stage],
    out_dir: Path,
    only: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
    config: Any = None,
) -> Manifest:
    """Run every incomplete stage in order (only those named in `only`, when given); skip complete ones.

    Refuses, before running anything, output folders made with other settings than these; then
    saves `config` (the resolved run config) as out_dir/config.yaml.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    main = int(os.environ.get("RANK", "0")) == 0
    manifest = Manifest(out_dir / STATUS_FILE, write=main)
    log = log if main else (lambda _: None)  # under torchrun, rank 0 speaks for all
    prints = _fingerprints(stages)
    _refuse_stale(stages, manifest, prints)
    by_name = {s.name: s for s in stages}
    unknown = sorted(set(only or ()) - set(by_name))
    if unknown:
        raise PipelineError(f"unknown stage {unknown[0]!r}; stages are: {', '.join(by_name)}")
    if config is not None and main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, out_dir / "config.yaml")
    for stage in stages:
        if only and stage.name not in only:
            continue
        if stage.done():
            manifest.update(
                stage.name,
                status="skipped",
                folder=str(stage.folder),
                fingerprint=prints[stage.name],
                settings=plain(stage.settings),
            )
            log(f"stage {stage.name:<18} skipped (complete: {stage.folder})")
            continue
        missing = [i for i in stage.inputs if not by_name[i].done()]
        if missing:
            raise PipelineError(
                f"stage {stage.name} needs {', '.join(missing)} first (run without --only, "
                f"or with --only {','.join(missing)})"
            )
        if world > 1 and not stage.distributed:
            raise PipelineError(
                f"stage {stage.name} runs in one process; run it without torchrun "
                "(torchrun only for the training stages, with --only)"
            )
        _run_one(stage, manifest, prints[stage.name], log)
    return manifest


def _fingerprints(stages: Sequence[Stage]) -> dict[str, str]:
    prints: dict[str, str] = {}
    for stage in stages:
        prints[stage.name] = fingerprint(stage.settings, [prints[i] for i in stage.inputs])
    return prints


def _recorded_settings(stage: Stage, manifest: Manifest) -> Any:
    """The stage's recorded settings; for a record older than that field, the resolved config its run
    saved in its own folder (`config.yaml`), which holds the same settings."""
    recorded = manifest.recorded_settings(stage.name)
    saved = stage.folder / "config.yaml"
    if recorded is None and stage.defaults is not None and stage.owns_folder and saved.is_file():
        try:
            recorded = yaml_load(saved.read_text())
        except (OSError, yaml.YAMLError):
            return None
    return recorded


def _made_with_these_settings(stages: Sequence[Stage], manifest: Manifest, prints: dict[str, str]) -> dict[str, bool]:
    """Per stage: was its recorded output made with these settings and inputs? Yes when its fingerprint
    matches; or, when its inputs qualify, when its own settings are unchanged (the fingerprint of today's
    settings over its inputs' recorded fingerprints is the recorded one) or compatible with the recorded
    ones (settings_compatible: only new settings, at their defaults)."""
    made: dict[str, bool] = {}
    for stage in stages:
        recorded = manifest.recorded_fingerprint(stage.name)
        if recorded in (None, prints[stage.name]):
            made[stage.name] = True
            continue
        inputs_made = all(made.get(i, False) for i in stage.inputs)
        input_prints = [manifest.recorded_fingerprint(i) for i in stage.inputs]
        own_unchanged = None not in input_prints and fingerprint(stage.settings, input_prints) == recorded
        settings = None if own_unchanged else _recorded_settings(stage, manifest)
        made[stage.name] = inputs_made and (
            own_unchanged or (settings is not None and settings_compatible(settings, stage.settings, stage.defaults))
        )
    return made


def _refuse_stale(stages: Sequence[Stage], manifest: Manifest, prints: dict[str, str]) -> None:
    made = _made_with_these_settings(stages, manifest, prints)
    stale = [s for s in stages if not made[s.name] and (s.done() or (s.owns_folder and s.folder.exists()))]
    if stale:
        folders = ", ".join(f"{s.name} ({s.folder})" for s in stale)
        raise PipelineError(
            f"{manifest.path}: these stages were made with other settings than the ones given "
            f"(or from other inputs): {folders}. Delete those folders to redo them, or give a new "
            "out= folder"
        )


def _run_one(stage: Stage, manifest: Manifest, print_: str, log: Callable[[str], None]) -> None:
    log(f"stage {stage.name:<18} running → {stage.folder}")
    manifest.update(
        stage.name,
        status="running",
        folder=str(stage.folder),
        fingerprint=print_,
        settings=plain(stage.settings),
        seconds=None,
    )
    start = time.perf_counter()
    try:
        stage.run()
    except BaseException as err:
        manifest.update(
            stage.name, status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc(limit=4)
        )
        raise
    seconds = round(time.perf_counter() - start, 1)
    manifest.update(stage.name, status="done", seconds=seconds, error=None, traceback=None)
    log(f"stage {stage.name:<18} done in {seconds:.1f} s")
