"""`pathgen eval-gen`: generation quality of a view bank, written to `BANK/eval/metrics.{json,md}`.

For every encoder (the bank's conditioning encoder, `MODEL/encoder/` of the LDM folder recorded in
the bank, plus any the user names) the source tiles, the generated views, random non-source real
tiles (the reference), the sources resized to the bank's size and (when the LDM folder still has
its `vae/`) the VAE's reconstructions of those are embedded once, then:

- Fréchet distance sources ↔ views (with its bootstrap spread) and sources ↔ reference real tiles,
  the sampling floor at the same sample sizes (pathgen.generation_metrics.frechet). Views *below* that floor
  are closer to their sources than other real tiles are: flagged `likely_copy`;
- conditioning fidelity and source retrieval: cosine(view, the embedding it was conditioned on) —
  the source's embedding, or for interpolation banks the SLERP of both sources' embeddings with the
  recorded α (pathgen.diffusion.conditioning.slerp) — and the share of views that retrieve their own
  target among all sources' (pathgen.generation_metrics.fidelity);
- the resolution-matched references of those two numbers (`references`): the real source tile at the
  bank's size (the ceiling any generator at that size can reach), its VAE reconstruction (the
  autoencoder's ceiling: the diffusion model cannot keep what the VAE loses) and the views shuffled
  across sources (shuffled conditioning: chance);
- precision / recall of the views against real tiles (Kynkäänniemi et al. 2019, k-NN manifolds,
  pathgen.generation_metrics.precision_recall) beside the same numbers for two disjoint real samples.

Optional FID: Fréchet distance of torchvision Inception-v3 pool3 (2048-d) features at 299 px from a
local safetensors file the user gives (never downloaded). Its numbers compare runs within pathgen;
they are not the published-FID TF-Inception graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pathgen.atomic import write_json_atomic, write_text_atomic
from pathgen.diffusion.bank import ViewBank
from pathgen.diffusion.conditioning import slerp
from pathgen.diffusion.images import to_model_range, to_uint8
from pathgen.diffusion.ldm_io import ENCODER_DIR, VAE_DIR
from pathgen.diffusion.training_data import resize_u8
from pathgen.diffusion.vae import load_codec
from pathgen.distributed import pick_device
from pathgen.generation_metrics.fidelity import conditioning_fidelity, row_cosine, source_retrieval, unit_centre
from pathgen.generation_metrics.frechet import bootstrap_frechet, frechet_distance_features
from pathgen.generation_metrics.precision_recall import DEFAULT_K, precision_recall, real_vs_real
from pathgen.models.embeddings import preprocess
from pathgen.models.io import load_encoder
from tiling.store import TileStore

INCEPTION_SIZE = 299
INCEPTION_SKIPPED = "skipped: no --inception weights given (a local torchvision inception_v3 safetensors file)"
NO_VAE = "skipped: the bank's LDM folder has no vae/ any more"
UNCONDITIONAL = "not computed: needs a bank sampled with the null conditioning (guidance 0, no embedding)"


@dataclass
class Extractor:
    """A named feature function on uint8 (B, H, W, 3) tiles; `conditioning` marks the bank's own encoder."""

    name: str
    path: str
    features: Callable[[np.ndarray], np.ndarray]
    conditioning: bool = False
    frechet_only: bool = False


def _bchw(tiles_u8: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(tiles_u8)).permute(0, 3, 1, 2).to(device)


def encoder_extractor(model_dir: str | Path, device: torch.device, name: str, conditioning: bool = False) -> Extractor:
    """An SSL encoder folder as a feature function: encoder(preprocess(tiles)), as `pathgen embed` does."""
    model, config = load_encoder(model_dir, device)

    @torch.no_grad()
    def features(tiles_u8: np.ndarray) -> np.ndarray:
        return model(preprocess(_bchw(tiles_u8, device), config)).float().cpu().numpy()

    return Extractor(name, str(model_dir), features, conditioning)


def load_inception(weights: str | Path, device: torch.device) -> torch.nn.Module:
    """torchvision Inception-v3 from a local safetensors state dict, fc removed (pool3 2048-d output)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from torchvision.models import inception_v3

    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: no such Inception weights file")
    try:
        state = load_file(str(weights))
    except SafetensorError as err:
        raise ValueError(f"{weights}: not a safetensors state dict ({err})") from err
    aux = any(key.startswith("AuxLogits.") for key in state)
    model = inception_v3(weights=None, aux_logits=aux, init_weights=False, transform_input=False)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{weights}: not a torchvision inception_v3 state dict ({str(err).splitlines()[0]})") from err
    model.fc = torch.nn.Identity()
    return model.to(device).eval()


def inception_extractor(weights: str | Path, device: torch.device) -> Extractor:
    """Inception pool3 features of tiles resized to 299 px in [-1, 1] (what torchvision's weights expect
    once their transform_input step is folded in)."""
    model = load_inception(weights, device)

    @torch.no_grad()
    def features(tiles_u8: np.ndarray) -> np.ndarray:
        images = to_model_range(_bchw(tiles_u8, device))
        images = F.interpolate(
            images, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", antialias=True, align_corners=False
        )
        return model(images).float().cpu().numpy()

    return Extractor("inception", str(weights), features, frechet_only=True)


def _embed_batches(extractors: list[Extractor], batches) -> dict[str, np.ndarray]:
    """Run every extractor on every batch of uint8 tiles; concatenated features per extractor."""
    out: dict[str, list[np.ndarray]] = {e.name: [] for e in extractors}
    for tiles in batches:
        for extractor in extractors:
            out[extractor.name].append(extractor.features(tiles))
    return {name: np.concatenate(parts) for name, parts in out.items()}


class _Tiles:
    """Real tiles by (store path, index), stores opened once."""

    def __init__(self):
        self.stores: dict[str, TileStore] = {}

    def store(self, path: str) -> TileStore:
        if path not in self.stores:
            self.stores[path] = TileStore(path)
        return self.stores[path]

    def batches(self, keys: list[tuple[str, int]], batch_size: int):
        for start in range(0, len(keys), batch_size):
            yield np.stack([self.store(s).read([i])[0] for s, i in keys[start : start + batch_size]])


def _reference_keys(
    tiles: _Tiles, stores: list[str], sources: set[tuple[str, int]], n: int, rng: np.random.Generator
) -> list:
    """Up to n random real tiles of the bank's stores that are not sources, with at least the least
    tissue a source has (so the reference is tissue, as the sources are)."""
    min_tissue = min(float(tiles.store(s).array("tissue_fraction")[i]) for s, i in sources)
    pool = [
        (s, int(i))
        for s in stores
        for i in np.flatnonzero(tiles.store(s).array("tissue_fraction") >= min_tissue)
        if (s, int(i)) not in sources
    ]
    pick = rng.choice(len(pool), min(n, len(pool)), replace=False) if pool else []
    return [pool[j] for j in sorted(pick)]


def _model_folder(bank: ViewBank, bank_dir: Path, part: str) -> Path | None:
    """`part` (encoder/ or vae/) of the LDM folder recorded in the bank, if it is still on disk."""
    model = bank.attrs.get("model") or {}
    model_dir = model.get("dir") if isinstance(model, dict) else model
    if not model_dir:
        return None
    for base in (Path(model_dir), bank_dir / model_dir):
        if (base / part / "config.json").is_file():
            return base / part
    return None


def _model_encoder(bank: ViewBank, bank_dir: Path) -> Path | None:
    """The conditioning encoder folder of the LDM recorded in the bank, if it is still on disk."""
    return _model_folder(bank, bank_dir, ENCODER_DIR)


def _build_extractors(bank: ViewBank, bank_dir: Path, encoders: list, inception, device) -> list[Extractor]:
    default = _model_encoder(bank, bank_dir)
    paths = ([default] if default is not None else []) + [Path(p) for p in encoders]
    if not paths:
        raise ValueError(
            f"{bank_dir}: the bank's model folder ({bank.attrs.get('model', {}).get('dir')}) has no "
            f"{ENCODER_DIR}/; name an encoder with --encoder MODEL"
        )
    extractors, seen, names = [], set(), set()
    for path in paths:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        name = "conditioning" if path == default else path.resolve().name
        while name in names:
            name += "_"
        names.add(name)
        extractors.append(encoder_extractor(path, device, name, conditioning=path == default))
    if inception is not None:
        extractors.append(inception_extractor(inception, device))
    return extractors


def _targets(feats: dict, mode: str, alpha: np.ndarray) -> np.ndarray:
    """What each view was conditioned on, in this encoder's space: (N, D), or (N, K, D) when interpolating."""
    if mode != "interpolate" or "secondary" not in feats:
        return feats["sources"]
    n, k = alpha.shape
    e1 = torch.from_numpy(np.repeat(feats["sources"], k, axis=0))
    e2 = torch.from_numpy(np.repeat(feats["secondary"], k, axis=0))
    return slerp(e1, e2, torch.from_numpy(alpha.reshape(-1).astype(np.float32))).numpy().reshape(n, k, -1)


def _frechet(feats: dict, n_bootstrap: int, seed: int) -> dict:
    """FD views ↔ sources, its bootstrap spread, the real ↔ sources floor and the likely-copy flag."""
    sources, views, reference = feats["sources"], feats["views"], feats.get("reference")
    flat = views.reshape(-1, views.shape[-1])
    frechet = {
        "views_vs_sources": frechet_distance_features(sources, flat),
        "n_sources": len(sources),
        "n_views": len(flat),
        "n_reference": 0 if reference is None else len(reference),
    }
    if n_bootstrap > 0:
        frechet["views_vs_sources_bootstrap"] = bootstrap_frechet(sources, flat, n_bootstrap, seed=seed)
    floor = frechet_distance_features(sources, reference) if reference is not None and len(reference) >= 2 else None
    frechet["real_vs_sources"] = floor
    # other real tiles are as close to the sources as sampling allows: views closer than that are copies
    frechet["likely_copy"] = floor is not None and frechet["views_vs_sources"] < floor
    return frechet


def _reference_point(features: np.ndarray, condition: np.ndarray, centre: np.ndarray) -> dict:
    """Fidelity and retrieval of (N, K, D) features against their (N, 1 or K, D) targets."""
    return {"fidelity": float(row_cosine(features, condition).mean()), **source_retrieval(features, condition, centre)}


def _references(feats: dict, targets: np.ndarray, real: np.ndarray) -> dict:
    """The resolution-matched ceilings (real tile at the bank's size, its VAE reconstruction) and the
    chance level (views shuffled across sources) of fidelity and retrieval."""
    centre, sources = unit_centre(real), feats["sources"][:, None, :]
    condition = targets if targets.ndim == 3 else targets[:, None, :]
    refs = {
        "real_at_bank_size": _reference_point(feats["at_size"][:, None, :], sources, centre),
        "vae_reconstruction": (
            _reference_point(feats["recon"][:, None, :], sources, centre) if "recon" in feats else {"skipped": NO_VAE}
        ),
        "shuffled_conditioning": _reference_point(np.roll(feats["views"], 1, axis=0), condition, centre),
        "unconditional": {"skipped": UNCONDITIONAL},
    }
    return refs


def _precision_recall(feats: dict, seed: int) -> dict:
    """Precision / recall of the views against as many real tiles (sources and reference), beside two
    disjoint real samples of the same size."""
    views = feats["views"].reshape(-1, feats["views"].shape[-1])
    pool = np.concatenate([feats["sources"]] + ([feats["reference"]] if "reference" in feats else []))
    size = min(len(views), len(pool) // 2)
    if size <= DEFAULT_K:
        return {"skipped": f"needs more than {DEFAULT_K} views and twice as many real tiles"}
    rng = np.random.default_rng(seed)
    picked = precision_recall(pool[rng.permutation(len(pool))[:size]], views[rng.permutation(len(views))[:size]])
    return {"views": picked, "real_vs_real": real_vs_real(pool, size, seed=seed)}


def _metrics(ex: Extractor, feats: dict, mode: str, alpha: np.ndarray, n_bootstrap: int, seed: int) -> dict:
    """FD, fidelity, retrieval with its references and precision / recall of one extractor's features."""
    sources, views, reference = feats["sources"], feats["views"], feats.get("reference")
    result = {
        "path": ex.path,
        "conditioning": ex.conditioning,
        "dim": int(views.shape[-1]),
        "frechet": _frechet(feats, n_bootstrap, seed),
    }
    if ex.frechet_only:
        return result
    real = sources if reference is None else np.concatenate([sources, reference])
    targets = _targets(feats, mode, alpha)
    result["fidelity"] = conditioning_fidelity(views, targets, real, seed=seed)
    result["fidelity"]["target"] = (
        "slerp(source, secondary, alpha)" if mode == "interpolate" and "secondary" in feats else "source embedding"
    )
    result["references"] = _references(feats, targets, real)
    result["precision_recall"] = _precision_recall(feats, seed)
    return result


def _row_plan(bank: ViewBank, rows: np.ndarray) -> dict:
    """Source keys, secondary keys (interpolation, else None) and α (N, K) of the evaluated rows, read
    from the bank's arrays in one go."""
    g, stores = bank.group, bank.stores
    sources = [(stores[s], int(i)) for s, i in zip(g["source_store_id"][:][rows], g["source_index"][:][rows])]
    sec_store, sec_index = g["secondary_store_id"][:][rows], g["secondary_index"][:][rows]
    secondary = None
    if bank.attrs["mode"] == "interpolate" and (sec_store >= 0).all():
        secondary = [(stores[s], int(i)) for s, i in zip(sec_store, sec_index)]
    return {"sources": sources, "secondary": secondary, "alpha": g["alpha"][:][rows].astype(np.float32)}


def _resize_batch(tiles: np.ndarray, size: int) -> np.ndarray:
    """uint8 (B, H, W, 3) tiles resized (antialiased) to (B, size, size, 3), as the LDM's training data."""
    return np.stack(
        [
            resize_u8(torch.from_numpy(np.ascontiguousarray(t.transpose(2, 0, 1))), size).permute(1, 2, 0).numpy()
            for t in tiles
        ]
    )


def _psnr(real_u8: np.ndarray, other_u8: np.ndarray) -> np.ndarray:
    """Per-tile PSNR (dB, peak 255) of two uint8 (B, H, W, 3) batches."""
    mse = ((real_u8.astype(np.float64) - other_u8.astype(np.float64)) ** 2).reshape(len(real_u8), -1).mean(axis=1)
    return 10.0 * np.log10(255.0**2 / np.maximum(mse, 1e-10))


def _size_matched_features(
    tiles: _Tiles,
    sources: list,
    size: int,
    extractors: list[Extractor],
    codec,  # noqa: ANN001
    batch_size: int,
) -> tuple[dict, dict | None]:
    """Features of the sources at the bank's size and (with a codec) of their VAE reconstructions, and
    the reconstructions' PSNR against the resized tiles."""
    feats = {
        "at_size": _embed_batches(extractors, (_resize_batch(b, size) for b in tiles.batches(sources, batch_size)))
    }
    if codec is None:
        return feats, None
    psnr: list[np.ndarray] = []

    def reconstructions():
        for batch in tiles.batches(sources, batch_size):
            small = _resize_batch(batch, size)
            device = next(codec.parameters()).device
            recon = to_uint8(codec.decode(codec.encode(to_model_range(small).to(device))))
            psnr.append(_psnr(small, recon))
            yield recon

    feats["recon"] = _embed_batches(extractors, reconstructions())
    values = np.concatenate(psnr)
    return feats, {"psnr_db": float(values.mean()), "psnr_db_std": float(values.std()), "n_tiles": len(values)}


def _collect_features(
    bank: ViewBank,
    rows: np.ndarray,
    plan: dict,
    extractors: list[Extractor],
    batch_size: int,
    rng: np.random.Generator,
    codec=None,
) -> tuple[dict, int, dict | None]:  # noqa: ANN001
    """{part: {extractor: features}} for sources, sources at the bank's size (and their VAE
    reconstructions), views (N, K, D), secondaries and reference real tiles; the number of reference
    tiles; the reconstructions' PSNR (None without a codec)."""
    tiles, views, k = _Tiles(), bank.group["views"], int(bank.attrs["n_views"])
    sources = plan["sources"]
    feats = {"sources": _embed_batches(extractors, tiles.batches(sources, batch_size))}
    matched, vae = _size_matched_features(tiles, sources, int(bank.attrs["image_size"]), extractors, codec, batch_size)
    feats.update(matched)
    per_batch = max(1, batch_size // k)
    flat = _embed_batches(
        extractors,
        (
            np.asarray(views.oindex[rows[i : i + per_batch]]).reshape(-1, *views.shape[2:])
            for i in range(0, len(rows), per_batch)
        ),
    )
    feats["views"] = {name: v.reshape(len(rows), k, -1) for name, v in flat.items()}
    if plan["secondary"] is not None:
        feats["secondary"] = _embed_batches(extractors, tiles.batches(plan["secondary"], batch_size))
    taken = set(sources) | set(plan["secondary"] or [])
    reference = _reference_keys(tiles, bank.stores, taken, len(rows) * k, rng)
    if len(reference) >= 2:
        feats["reference"] = _embed_batches(extractors, tiles.batches(reference, batch_size))
    return feats, len(reference), vae


def eval_gen(
    bank_dir: str | Path,
    encoders: list[str | Path] | None = None,
    out_dir: str | Path | None = None,
    batch_size: int = 64,
    device: str = "auto",
    inception: str | Path | None = None,
    max_sources: int | None = None,
    n_bootstrap: int = 20,
    seed: int = 0,
) -> dict:
    """Evaluate a view bank (its finished rows; a random `max_sources` of them when given) and write
    metrics.json + metrics.md into `out_dir` (default BANK/eval); returns the metrics dict."""
    bank_dir = Path(bank_dir)
    bank = ViewBank(bank_dir, require_complete=False)
    attrs, torch_device = bank.attrs, pick_device(device)
    extractors = _build_extractors(bank, bank_dir, list(encoders or []), inception, torch_device)
    rng = np.random.default_rng(seed)
    rows = np.flatnonzero(bank.group["done"][:])
    if len(rows) < 2:
        raise ValueError(
            f"{bank_dir}: the bank has {len(rows)} finished rows, at least 2 are needed; "
            "run (or finish) `pathgen generate`"
        )
    if max_sources is not None and len(rows) > max_sources:
        rows = np.sort(rng.choice(rows, max_sources, replace=False))
    plan = _row_plan(bank, rows)
    vae_dir = _model_folder(bank, bank_dir, VAE_DIR)
    codec = load_codec(vae_dir, torch_device) if vae_dir is not None else None
    feats, n_reference, vae = _collect_features(bank, rows, plan, extractors, batch_size, rng, codec)
    per_encoder = {
        ex.name: _metrics(
            ex, {part: f[ex.name] for part, f in feats.items()}, attrs["mode"], plan["alpha"], n_bootstrap, seed
        )
        for ex in extractors
    }
    metrics = {
        "bank": str(bank_dir.resolve()),
        "mode": attrs["mode"],
        "complete": bank.complete,
        "rows_total": len(bank),
        "rows_evaluated": len(rows),
        "n_views": int(attrs["n_views"]),
        "image_size": int(attrs["image_size"]),
        "n_reference": n_reference,
        "vae": {"path": str(vae_dir), **vae} if vae is not None else {"skipped": NO_VAE},
        "settings": {
            "batch_size": batch_size,
            "device": str(torch_device),
            "max_sources": max_sources,
            "n_bootstrap": n_bootstrap,
            "seed": seed,
        },
        "encoders": {n: m for n, m in per_encoder.items() if n != "inception"},
        "inception": per_encoder.get("inception", {"skipped": INCEPTION_SKIPPED}),
    }
    write_report(metrics, Path(out_dir) if out_dir is not None else bank_dir / "eval")
    return metrics


def _fmt(value) -> str:
    return "—" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _ref(m: dict, name: str, key: str):  # noqa: ANN202 -- a number or None
    return m["references"][name].get(key)


def _report_tables(encoders: dict, size: int) -> list[str]:
    """The markdown tables: each generator number beside its resolution-matched references."""
    lines = [
        "Source retrieval top-1 (does a view pick out what it was conditioned on among all sources?) and "
        "conditioning fidelity (cosine), beside the real source tile at the bank's size (ceiling), its VAE "
        "reconstruction (the autoencoder's ceiling) and the views shuffled across sources (chance):",
        "",
        f"| encoder | retrieval: views | real at {size} px | VAE recon | shuffled | 1/N | fidelity: views "
        f"| real at {size} px | VAE recon | shuffled | random real pairs |",
        "|" + "---|" * 11,
    ]
    for name, m in encoders.items():
        fid = m["fidelity"]
        lines.append(
            f"| {name} | {_fmt(fid['retrieval_top1'])} | {_fmt(_ref(m, 'real_at_bank_size', 'retrieval_top1'))} "
            f"| {_fmt(_ref(m, 'vae_reconstruction', 'retrieval_top1'))} "
            f"| {_fmt(_ref(m, 'shuffled_conditioning', 'retrieval_top1'))} | {_fmt(fid['retrieval_chance'])} "
            f"| {_fmt(fid['fidelity'])} | {_fmt(_ref(m, 'real_at_bank_size', 'fidelity'))} "
            f"| {_fmt(_ref(m, 'vae_reconstruction', 'fidelity'))} "
            f"| {_fmt(_ref(m, 'shuffled_conditioning', 'fidelity'))} | {_fmt(fid['random_pairs'])} |"
        )
    lines += [
        "",
        "Fréchet distance (views below the real↔sources floor are closer to their sources than other real "
        "tiles are: likely copies) and precision / recall (Kynkäänniemi et al. 2019, k-NN manifolds on the "
        "unit sphere) beside two disjoint real samples of the same size:",
        "",
        "| encoder | FD views↔sources | bootstrap std | FD real↔sources (floor) | flag | precision | recall "
        "| real↔real precision | real↔real recall |",
        "|" + "---|" * 9,
    ]
    for name, m in encoders.items():
        fd, pr = m["frechet"], m.get("precision_recall", {})
        boot, views, real = fd.get("views_vs_sources_bootstrap"), pr.get("views") or {}, pr.get("real_vs_real") or {}
        lines.append(
            f"| {name} | {_fmt(fd['views_vs_sources'])} | {'—' if boot is None else _fmt(boot['std'])} | "
            f"{_fmt(fd['real_vs_sources'])} | {'LIKELY COPY' if fd.get('likely_copy') else '—'} | "
            f"{_fmt(views.get('precision'))} | {_fmt(views.get('recall'))} | {_fmt(real.get('precision'))} "
            f"| {_fmt(real.get('recall'))} |"
        )
    return lines


def write_report(metrics: dict, out_dir: Path) -> None:
    """metrics.json (everything) and metrics.md (the headline numbers as tables) in `out_dir`, each
    written to a temporary name and renamed, so a killed run leaves no half report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    vae = metrics["vae"]
    lines = [
        f"# Generation quality: {metrics['bank']}",
        "",
        f"mode {metrics['mode']}, {metrics['rows_evaluated']} of {metrics['rows_total']} sources, "
        f"K = {metrics['n_views']} views, {metrics['image_size']} px, {metrics['n_reference']} reference tiles"
        + ("" if metrics["complete"] else " (bank incomplete: finished rows only)"),
        "",
        "VAE reconstructions of the sources at the bank's size: "
        + (
            vae["skipped"]
            if "skipped" in vae
            else f"PSNR {vae['psnr_db']:.2f} ± {vae['psnr_db_std']:.2f} dB ({vae['path']})"
        ),
        "",
        *_report_tables({n: m for n, m in metrics["encoders"].items() if "fidelity" in m}, metrics["image_size"]),
    ]
    inception = metrics["inception"]
    lines += [
        "",
        "Inception FID (torchvision Inception-v3 pool3, 299 px): "
        + (
            inception["skipped"]
            if "skipped" in inception
            else f"{_fmt(inception['frechet']['views_vs_sources'])} views↔sources, "
            f"{_fmt(inception['frechet']['real_vs_sources'])} real↔sources (floor); weights {inception['path']}"
        ),
        "",
        f"Unconditional views (chance without any conditioning): {UNCONDITIONAL}.",
        "",
    ]
    write_json_atomic(out_dir / "metrics.json", metrics, indent=2, default=float)
    write_text_atomic(out_dir / "metrics.md", "\n".join(lines))


def reconstruction_references(
    vae_dir: str | Path,
    encoder_dir: str | Path,
    sources: list[tuple[str, int]],
    image_size: int,
    batch_size: int = 64,
    device: str = "auto",
) -> dict:
    """The autoencoder's ceiling without a bank: retrieval and fidelity of the VAE's reconstructions of
    `sources` ((store path, index) pairs) at `image_size` px among those sources, beside the real tiles at
    that size, in `encoder_dir`'s space (centred on the sources' own mean unit embedding), and the
    reconstructions' PSNR. What `eval_gen` reports as `references` for a bank made from that VAE."""
    torch_device = pick_device(device)
    extractor = encoder_extractor(encoder_dir, torch_device, "encoder")
    tiles = _Tiles()
    full = _embed_batches([extractor], tiles.batches(sources, batch_size))["encoder"]
    matched, vae = _size_matched_features(
        tiles, sources, image_size, [extractor], load_codec(vae_dir, torch_device), batch_size
    )
    centre, targets = unit_centre(full), full[:, None, :]
    return {
        "n_sources": len(sources),
        "image_size": image_size,
        "real_at_size": _reference_point(matched["at_size"]["encoder"][:, None, :], targets, centre),
        "vae_reconstruction": _reference_point(matched["recon"]["encoder"][:, None, :], targets, centre),
        **vae,
    }
