"""Small synthetic copies of the benchmark datasets, written in exactly their published formats.

For the tests, the demo and anyone checking an install: each writer renders synthetic slides
(tiling.synthetic) at the dataset's resolution, cuts patches from tumor, tissue and glass
regions chosen with the slides' ground-truth masks, and writes files that the readers in
pathgen.eval.datasets accept unchanged. Splits come from different slides ("patients"), and
everything is deterministic from the seed.

What each synthetic class is:
    pcam        96 px at 0.972 µm/px from synthetic lymph nodes; tumor = a tumor (carcinoma nest) pixel
                in the centre 32 × 32 (as PCam), else a patch centred on lymphoid sheet; balanced
                50/50; every split a multi-site cohort (per-site H&E stain and brightness)
    crc         224 px at 0.5 µm/px. TUM tumor crop; STR stroma crop; BACK glass crop; DEB tumor crop,
                blurred, blotchy and pinker (necrosis); MUS stroma crop turned 90° and redder; MUC stroma
                crop heavily blurred and faded to pale blue-lilac; NORM stroma with round glands (white
                lumen, pink epithelium, palisade of nuclei); ADI painted fat cells (white polygons, thin
                pink membranes); LYM painted sheets of small round dark nuclei
    mhist       224 px PNG at 0.5 µm/px; HP stroma with small round glands; SSA stroma with dilated,
                serrated glands lined by tumor-textured epithelium; about 1/3 SSA (as MHIST)
    bach        512 × 384 px TIFF at 0.42 µm/px (real: 2048 × 1536); Normal few small glands; Benign many
                glands; InSitu round nests of tumor texture with a dark rim; Invasive tumor texture
                infiltrating about half the image in irregular shapes
    camelyon16  pyramidal TIFF slides at 0.25 µm/px; tumor slides carry 2 tumor regions and an ASAP XML
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from pathgen.eval.datasets import bach, camelyon16, crc, mhist, pcam
from tiling.synthetic import (
    SyntheticSlideSpec,
    lymphoid_truth_mask,
    synthetic_slide_image,
    tissue_truth_mask,
    tumor_truth_mask,
    write_synthetic_slide,
)
from tiling.synthetic_texture import texture_mosaic

WHITE, PINK = (244, 242, 246), (225, 150, 190)
CRC_MPP = MHIST_MPP = 0.5


def _new_folder(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out}: exists and is not an empty folder; write the synthetic dataset to a new folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _check_counts(dataset: str, **counts: tuple[int, int]) -> None:
    """Each count (value, minimum) must reach its minimum: the reader needs every class in train and val."""
    for name, (value, minimum) in counts.items():
        if value < minimum:
            raise ValueError(f"synthetic {dataset}: {name} must be at least {minimum}, got {value}")


def _seed(*stream: int) -> int:
    return int(np.random.default_rng(list(stream)).integers(2**31 - 1))


# ----------------------------------------------------------------------------- source slides


@dataclass(frozen=True)
class _Source:
    """A rendered synthetic slide and its tumor / tissue truth, one value per `ds` pixels."""

    pixels: np.ndarray
    tumor: np.ndarray
    tissue: np.ndarray
    lymphoid: np.ndarray
    ds: int
    spec: SyntheticSlideSpec


def _source(
    seed: int,
    mpp: float,
    size: tuple[int, int],
    ds: int,
    tissue: int = 1,
    tumor: int = 2,
    lymph_node: bool = False,
) -> _Source:
    spec = SyntheticSlideSpec(
        size[0], size[1], mpp=mpp, seed=seed, tissue_regions=tissue, tumor_regions=tumor, lymph_node=lymph_node
    )
    masks = (f(spec, ds) for f in (tumor_truth_mask, tissue_truth_mask, lymphoid_truth_mask))
    return _Source(synthetic_slide_image(spec).numpy(), *masks, ds, spec)


def _window_mean(mask: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Mean of `mask` over every kh × kw window, indexed by the window's top-left cell."""
    total = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return (total[kh:, kw:] - total[:-kh, kw:] - total[kh:, :-kw] + total[:-kh, :-kw]) / (kh * kw)


_RULES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "tumor": lambda tumor, tissue: tumor == 1,
    "stroma": lambda tumor, tissue: (tissue == 1) & (tumor == 0),
    "glass": lambda tumor, tissue: tissue == 0,
}


def _cut(sources: list[_Source], kind: str, shape: tuple[int, int], n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` crops of `shape` (h, w) lying wholly in `kind` ("tumor", "stroma", "glass") regions.

    If no region of that kind is big enough, the same texture is drawn directly (texture_mosaic).
    """
    h, w = shape
    if n == 0:
        return np.zeros((0, h, w, 3), np.uint8)
    picks = []
    for index, src in enumerate(sources):
        kh, kw = -(-h // src.ds), -(-w // src.ds)
        rows, cols = (src.pixels.shape[0] - h) // src.ds + 1, (src.pixels.shape[1] - w) // src.ds + 1
        ok = _RULES[kind](_window_mean(src.tumor, kh, kw), _window_mean(src.tissue, kh, kw))[:rows, :cols]
        picks.append(_positions(ok, index, src.ds))
    return _crops(sources, np.concatenate(picks), (h, w), n, rng, fallback=kind)


def _positions(ok: np.ndarray, index: int, ds: int) -> np.ndarray:
    """(K, 3) rows of (source index, top, left) in pixels for every True cell of `ok`."""
    ys, xs = np.nonzero(ok)
    return np.column_stack([np.full_like(ys, index), ys * ds, xs * ds])


def _crops(
    sources: list[_Source], picks: np.ndarray, shape: tuple[int, int], n: int, rng: np.random.Generator, fallback: str
) -> np.ndarray:
    h, w = shape
    if not len(picks):
        spec = sources[0].spec
        return np.stack([texture_mosaic(fallback, w, h, spec.mpp, spec.seed, rng).numpy() for _ in range(n)])
    chosen = picks[rng.choice(len(picks), size=n, replace=n > len(picks))]
    return np.stack([sources[i].pixels[top : top + h, left : left + w] for i, top, left in chosen])


# ---------------------------------------------------------------------------------- painting


def _over(image: np.ndarray, alpha: np.ndarray, colour) -> np.ndarray:
    """`colour` (RGB or an image) laid over `image` with coverage `alpha` (H, W) in 0..1."""
    alpha = np.clip(alpha, 0, 1)[..., None]
    return image.astype(np.float32) * (1 - alpha) + np.asarray(colour, np.float32) * alpha


def _to_uint8(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(image + rng.normal(0, 1.5, image.shape[:2])[..., None], 0, 255).astype(np.uint8)


def _od(image: np.ndarray) -> np.ndarray:
    return -np.log((image.astype(np.float32) + 1) / 256)


def _from_od(od: np.ndarray) -> np.ndarray:
    return 256 * np.exp(-np.maximum(od, 0)) - 1


def _blank(shape: tuple[int, int], colour, rng: np.random.Generator, sigma: float = 6.0) -> np.ndarray:
    shade = 1 + 0.03 * ndimage.gaussian_filter(rng.standard_normal(shape), sigma) * sigma
    return np.asarray(colour, np.float32) * shade[..., None]


def _nearest_seed(shape: tuple[int, int], count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """For `count` random seed pixels: each pixel's distance to its nearest seed and that seed's number."""
    seeds = np.ones(shape, bool)
    ys, xs = rng.integers(0, shape[0], count), rng.integers(0, shape[1], count)
    seeds[ys, xs] = False
    number = np.zeros(shape, np.int64)
    number[ys, xs] = np.arange(count)
    dist, (iy, ix) = ndimage.distance_transform_edt(seeds, return_indices=True)
    return dist, number[iy, ix]


def _adipose(_, rng, mpp, shape):
    """Fat: empty polygonal cells (~45 µm) with 2 µm pink membranes along the cell borders."""
    _, cell = _nearest_seed(shape, max(4, round(shape[0] * shape[1] * mpp**2 / 45**2 * 1.5)), rng)
    border = np.zeros(shape)
    border[1:] += cell[1:] != cell[:-1]
    border[:, 1:] += cell[:, 1:] != cell[:, :-1]
    membrane = ndimage.gaussian_filter(np.minimum(border, 1), 0.7 / mpp) * 2.5 / mpp
    return _over(_blank(shape, WHITE, rng), 0.8 * membrane, PINK)


def _lymphocytes(_, rng, mpp, shape):
    """Lymphocyte sheet: dense small (≈ 3 µm radius) round dark nuclei on pale pink."""
    count = round(shape[0] * shape[1] * mpp**2 / 45)
    dist, nucleus = _nearest_seed(shape, count, rng)
    radius = rng.uniform(2.6, 3.4, count)[nucleus] / mpp
    return _over(_blank(shape, (232, 200, 222), rng), 0.9 * (radius - dist + 0.5), (55, 35, 110))


def _debris(crop, rng, mpp, shape):
    """Necrotic debris: a tumor crop blurred, with blotchy fading and a pink cast."""
    blotches = ndimage.zoom(rng.uniform(0.3, 1.3, (shape[0] // 16 + 1, shape[1] // 16 + 1)), 16, order=1)
    od = ndimage.gaussian_filter(_od(crop), (1.5 / mpp, 1.5 / mpp, 0)) * blotches[: shape[0], : shape[1], None]
    return _from_od(od * np.array([0.9, 1.0, 0.7]))


def _muscle(crop, rng, mpp, shape):
    """Smooth muscle: stroma fibres turned 90° and stained a deeper red."""
    return _from_od(_od(np.rot90(crop)) * np.array([0.8, 1.5, 1.1]))


def _mucus(crop, rng, mpp, shape):
    """Mucus: stroma blurred to wisps and faded to a pale blue-lilac."""
    od = ndimage.gaussian_filter(_od(crop), (4 / mpp, 4 / mpp, 0))
    return _from_od(0.35 * od + np.array([0.10, 0.12, 0.03]))


def _glands(
    image,
    rng,
    mpp,
    count: int,
    radius_um: tuple[float, float],
    serration: float = 0.0,
    epithelium: np.ndarray | None = None,
    lumen: bool = True,
) -> np.ndarray:
    """Glands on `image`: a ring of epithelium (8 µm, or filled to the centre when lumen=False)
    with a palisade of nuclei at its base and a white lumen, star-shaped if serrated."""
    out = image.astype(np.float32)
    fill = np.broadcast_to(np.asarray((205, 150, 200) if epithelium is None else epithelium, np.float32), out.shape)
    for _ in range(count):
        cy, cx, radius = rng.uniform(0, out.shape[0]), rng.uniform(0, out.shape[1]), rng.uniform(*radius_um) / mpp
        ring, k, phase = 8 / mpp, int(rng.integers(7, 11)), rng.uniform(0, 2 * np.pi)
        outer = radius + ring
        box = tuple(
            slice(max(int(c - outer - 2), 0), min(int(c + outer + 3), size)) for c, size in zip((cy, cx), out.shape)
        )
        yy, xx = np.ogrid[box[0], box[1]]
        dist, theta = np.hypot(yy - cy, xx - cx), np.arctan2(yy - cy, xx - cx)
        local = _over(out[box], outer - dist + 0.5, fill[box])
        nuclei = (1 - np.abs(dist - (outer - 0.3 * ring)) * mpp / 1.5) * (np.cos(theta * outer * mpp / 2.5) > 0)
        local = _over(local, 0.85 * nuclei, (70, 45, 120))
        if lumen:
            local = _over(local, radius * (1 + serration * np.cos(k * theta + phase)) - dist + 0.5, WHITE)
        out[box] = local
    return out


def _invasive(crop, tumor, rng, mpp):
    """Tumor texture infiltrating about half of the field in irregular, smooth-edged shapes."""
    field = ndimage.gaussian_filter(rng.standard_normal(crop.shape[:2]), 20 / mpp)
    return _over(crop, (field - np.median(field)) / field.std() * 4 + 0.5, tumor)


_CRC_CLASSES = {  # class: (crop kind or None for painted, maker)
    "ADI": (None, _adipose),
    "BACK": ("glass", lambda c, *_: c),
    "DEB": ("tumor", _debris),
    "LYM": (None, _lymphocytes),
    "MUC": ("stroma", _mucus),
    "MUS": ("stroma", _muscle),
    "NORM": ("stroma", lambda c, rng, mpp, _: _glands(c, rng, mpp, int(rng.integers(2, 4)), (12, 20))),
    "STR": ("stroma", lambda c, *_: c),
    "TUM": ("tumor", lambda c, *_: c),
}


# ----------------------------------------------------------------------------------- writers

PCAM_PATCHES_PER_SLIDE = 128  # at most, so that a split's patches come from many tumors and sites
DEFAULT_PCAM_STAIN_SHIFT = 0.3  # θ of the default synthetic PCam; 0 gives the plain, colour-separable task


def write_synthetic_pcam(
    out: str | Path,
    n_train: int = 256,
    n_val: int = 64,
    n_test: int = 64,
    seed: int = 0,
    stain_shift: float = DEFAULT_PCAM_STAIN_SHIFT,
) -> Path:
    """PCam's six HDF5 files; each split's patches come from its own synthetic lymph nodes (2048 ×
    1536 px slides, one per PCAM_PATCHES_PER_SLIDE patches).

    The label lies in tissue structure, as in real PCam: normal patches are lymphoid sheets (packed
    small dark round nuclei), tumor patches carcinoma nests (large vesicular nuclei in cohesive nests
    parted by pale clefts), two textures of close mean and sd of RGB. `stain_shift` θ > 0 (default
    DEFAULT_PCAM_STAIN_SHIFT) makes every split a multi-site cohort: each run of SITE_PATCHES patches
    gets its own H&E stain and lamp brightness (`shift_sites`), so colour is a nuisance that differs
    between the train and the test sites. A stain-normalised power spectrum then separates the
    classes far better than six colour statistics, and the step-0 weights of a tiny ViT sit near
    chance: room that an SSL-trained encoder must fill with stain-robust structure features
    (numbers: docs/benchmarks.md#synthetic-tasks; tests/pathgen/eval/test_synthetic_separates_encoders.py).
    """
    import h5py

    _check_counts("pcam", n_train=(n_train, 2), n_val=(n_val, 1), n_test=(n_test, 1))
    out = _new_folder(out)
    for index, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        sources = [
            _source(_seed(seed, 0, index, j), pcam.MPP, (2048, 1536), ds=2, tissue=2, lymph_node=True)
            for j in range(max(1, -(-n // PCAM_PATCHES_PER_SLIDE)))
        ]
        x, y = _pcam_patches(sources, n, np.random.default_rng([seed, 0, index]))
        if stain_shift > 0:
            x = shift_sites(x, stain_shift, np.random.default_rng([seed, 1, index]))
        with h5py.File(pcam.pcam_file(out, split, "x"), "w") as f:
            f.create_dataset("x", data=x, chunks=(1, 96, 96, 3) if n else None)
        with h5py.File(pcam.pcam_file(out, split, "y"), "w") as f:
            f.create_dataset("y", data=y.reshape(-1, 1, 1, 1))
    return out


SITE_PATCHES = 8  # patches per simulated site in stain-shifted splits


def shift_sites(patches: np.ndarray, theta: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, H, W, 3) patches with one random H&E stain change and lamp brightness per run of
    SITE_PATCHES patches: stain s → α·s + β (α ~ U(1 ± θ), β ~ U(±θ) per H, E, DAB), then
    RGB × U(1 ± θ/3)."""
    # lazy: torch only for the stain-shifted copies; synth-dataset otherwise stays torch-free
    import torch

    from pathgen.data.augment import perturb_stains

    out = patches.copy()
    for start in range(0, len(patches), SITE_PATCHES):
        alpha = torch.from_numpy(rng.uniform(1 - theta, 1 + theta, 3))
        beta = torch.from_numpy(rng.uniform(-theta, theta, 3))
        block = torch.from_numpy(patches[start : start + SITE_PATCHES]).permute(0, 3, 1, 2).double() / 255
        brightness = rng.uniform(1 - theta / 3, 1 + theta / 3)
        shifted = torch.stack([perturb_stains(tile, alpha, beta) for tile in block]) * brightness
        out[start : start + SITE_PATCHES] = (shifted * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    return out


def _pcam_patches(sources: list[_Source], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Balanced 96 px patches labelled by tumor in the centre 32 × 32 px, as PCam."""
    found: dict[int, list[np.ndarray]] = {0: [], 1: []}
    for index, src in enumerate(sources):
        cells = 32 // src.ds  # the centre window's side and its offset in the patch, in mask cells
        rows, cols = (src.pixels.shape[0] - 96) // src.ds + 1, (src.pixels.shape[1] - 96) // src.ds + 1
        tumor = _window_mean(src.tumor, cells, cells)[cells:, cells:][:rows, :cols]  # [patch top-left cell]
        lymphoid = _window_mean(src.lymphoid, cells, cells)[cells:, cells:][:rows, :cols]
        found[1].append(_positions(tumor > 0, index, src.ds))
        found[0].append(_positions((tumor == 0) & (lymphoid >= 0.5), index, src.ds))
    picks = {label: np.concatenate(parts) for label, parts in found.items()}
    if not len(picks[0]) or not len(picks[1]):
        raise ValueError("synthetic PCam: the source slides lack tumor or normal tissue; try another seed")
    labels = rng.permutation(np.arange(n) % 2).astype(np.uint8)
    x = np.zeros((n, 96, 96, 3), np.uint8)
    for label in (0, 1):
        where = np.flatnonzero(labels == label)
        if len(where):
            x[where] = _crops(sources, picks[label], (96, 96), len(where), rng, fallback="glass")
    return x, labels


def write_synthetic_crc(out: str | Path, n_train: int = 32, n_test: int = 8, seed: int = 0) -> Path:
    """NCT-CRC-HE-100K/ and CRC-VAL-HE-7K/ with `n` 224 px TIFF tiles per class each."""
    _check_counts("crc", n_train=(n_train, 2), n_test=(n_test, 1))
    out = _new_folder(out)
    for index, (folder, n) in enumerate(((crc.TRAIN_FOLDER, n_train), (crc.EVAL_FOLDER, n_test))):
        rng = np.random.default_rng([seed, 1, index])
        sources = [_source(_seed(seed, 1, index), CRC_MPP, (3072, 2304), ds=8)]
        for name, (kind, make) in _CRC_CLASSES.items():
            (out / folder / name).mkdir(parents=True)
            crops = _cut(sources, kind, (224, 224), n, rng) if kind else [None] * n
            for crop in crops:
                tile = _to_uint8(make(crop, rng, CRC_MPP, (224, 224)), rng)
                token = "".join(rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), 8))
                Image.fromarray(tile).save(out / folder / name / f"{name}-{token}.tif")
    return out


def write_synthetic_mhist(out: str | Path, n_train: int = 96, n_test: int = 32, seed: int = 0) -> Path:
    """annotations.csv + images/MHIST_aaa.png…: 224 px polyps, about one third SSA."""
    _check_counts("mhist", n_train=(n_train, 6), n_test=(n_test, 1))
    out = _new_folder(out)
    (out / "images").mkdir()
    rng = np.random.default_rng([seed, 2])
    rows = []
    for index, (partition, n) in enumerate((("train", n_train), ("test", n_test))):
        sources = [_source(_seed(seed, 2, index), MHIST_MPP, (3072, 2304), ds=8)]
        is_ssa = rng.permutation(np.arange(n) % 3 == 0)
        stroma, tumor = _cut(sources, "stroma", (224, 224), n, rng), _cut(sources, "tumor", (224, 224), n, rng)
        for i in range(n):
            if is_ssa[i]:
                image = _glands(stroma[i], rng, MHIST_MPP, int(rng.integers(1, 3)), (18, 30), 0.25, tumor[i])
            else:
                image = _glands(stroma[i], rng, MHIST_MPP, int(rng.integers(2, 4)), (12, 20))
            votes = int(rng.integers(4, 8)) if is_ssa[i] else int(rng.integers(0, 4))
            rows.append((_to_uint8(image, rng), "SSA" if is_ssa[i] else "HP", votes, partition))
    with open(out / "annotations.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([mhist.NAME, mhist.LABEL, mhist.VOTES, mhist.PARTITION])
        for number, i in enumerate(rng.permutation(len(rows))):  # partitions interleaved, as in MHIST
            image, label, votes, partition = rows[i]
            name = "MHIST_" + "".join(chr(97 + number // 26**k % 26) for k in (2, 1, 0)) + ".png"
            Image.fromarray(image).save(out / "images" / name, compress_level=1)
            writer.writerow([name, label, votes, partition])
    return out


def _bach_image(name: str, stroma: np.ndarray, tumor: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if name == "Normal":
        return _glands(stroma, rng, bach.MPP, int(rng.integers(1, 3)), (10, 18))
    if name == "Benign":
        return _glands(stroma, rng, bach.MPP, int(rng.integers(6, 10)), (10, 30))
    if name == "InSitu":
        return _glands(stroma, rng, bach.MPP, int(rng.integers(2, 4)), (30, 55), epithelium=tumor, lumen=False)
    return _invasive(stroma, tumor, rng, bach.MPP)


def write_synthetic_bach(
    out: str | Path, n_per_class: int = 10, seed: int = 0, size: tuple[int, int] = (512, 384)
) -> Path:
    """ICIAR2018_BACH_Challenge/Photos/<Class>/{b,is,iv,n}NNN.tif, `size` (w, h) px at 0.42 µm/px."""
    _check_counts("bach", n_per_class=(n_per_class, 3))
    out = _new_folder(out)
    rng, shape = np.random.default_rng([seed, 3]), (size[1], size[0])
    sources = [_source(_seed(seed, 3), bach.MPP, (3072, 2304), ds=8)]
    prefixes = {"Benign": "b", "InSitu": "is", "Invasive": "iv", "Normal": "n"}
    for name in bach.CLASS_NAMES:
        folder = out / "ICIAR2018_BACH_Challenge" / "Photos" / name
        folder.mkdir(parents=True)
        stroma = _cut(sources, "stroma", shape, n_per_class, rng)
        tumor = _cut(sources, "tumor", shape, n_per_class, rng)
        for i in range(n_per_class):
            image = _bach_image(name, stroma[i], tumor[i], rng)
            Image.fromarray(_to_uint8(image, rng)).save(folder / f"{prefixes[name]}{i + 1:03d}.tif")
    return out


def _training_ids(prefix: str, n: int) -> list[str]:
    """Slide names such that eva's fixed validation list puts about 1 in 5 (and at least one
    once there are 2) of each class in val: slide k takes the next listed id when k % 5 == 1."""
    listed = sorted(int(s.split("_")[1]) for s in camelyon16.EVA_VAL_SLIDES if s.startswith(prefix))
    unlisted, listed_left = (i for i in range(1, 100_000) if i not in listed), iter(listed)
    return [f"{prefix}_{(next(listed_left, None) if k % 5 == 1 else None) or next(unlisted):03d}" for k in range(n)]


def write_synthetic_camelyon16(
    out: str | Path,
    n_train: int = 4,
    n_test: int = 2,
    seed: int = 0,
    size: tuple[int, int] = (8192, 6144),
    mpp: float = 0.25,
) -> Path:
    """training/{normal,tumor}/, training/lesion_annotations/, testing/images/, testing/lesion_annotations/
    and testing/reference.csv; half the training slides (rounded down) and every other test slide,
    starting with test_001, have tumor. Four training slides put one of each class in eva's val."""
    _check_counts("camelyon16", n_train=(n_train, 4), n_test=(n_test, 1))
    out = _new_folder(out)
    base = SyntheticSlideSpec(size[0], size[1], mpp=mpp, tissue_regions=3)
    n_normal = n_train // 2
    slides = [(out / "training" / "normal", name, 0) for name in _training_ids("normal", n_normal)]
    slides += [(out / "training" / "tumor", name, 2) for name in _training_ids("tumor", n_train - n_normal)]
    slides += [(out / "testing" / "images", f"test_{k + 1:03d}", 2 if k % 2 == 0 else 0) for k in range(n_test)]
    for number, (folder, name, tumors) in enumerate(slides):
        folder.mkdir(parents=True, exist_ok=True)
        spec = replace(base, seed=_seed(seed, 4, number), tumor_regions=tumors)
        slide = write_synthetic_slide(folder / f"{name}.tif", spec)
        if slide.annotation_path is not None:
            annotations = folder.parent / "lesion_annotations"
            annotations.mkdir(exist_ok=True)
            shutil.move(slide.annotation_path, annotations / slide.annotation_path.name)
    with open(out / "testing" / "reference.csv", "w", newline="") as f:
        csv.writer(f).writerows([name, "Tumor" if tumors else "Normal"] for _, name, tumors in slides[n_train:])
    return out


SYNTHETIC_DATASETS: dict[str, Callable[..., Path]] = {
    "pcam": write_synthetic_pcam,
    "crc": write_synthetic_crc,
    "mhist": write_synthetic_mhist,
    "bach": write_synthetic_bach,
    "camelyon16": write_synthetic_camelyon16,
}
COUNT_NAMES = {
    "pcam": ("n_train", "n_val", "n_test"),
    "crc": ("n_train", "n_test"),
    "mhist": ("n_train", "n_test"),
    "bach": ("n_per_class",),
    "camelyon16": ("n_train", "n_test"),
}
READ_OPTIONS = {"bach": {"split_rule": "stratified"}}  # eva's fixed BACH ranges need the 400 real images
