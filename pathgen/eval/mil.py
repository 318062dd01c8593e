"""Slide-level MIL on frozen features: train, select on validation, repeat over seeds or folds.

A bag is one slide's tile embeddings, an (N_i, D) float array; labels are (n_bags,) integers in
[0, C). Models live in `pathgen.eval.mil_models` (mean-pool, ABMIL, TransMIL, CLAM-SB).

Defaults are eva's Camelyon16-small ABMIL recipe (kaiko-ai/eva
``configs/vision/pathology/offline/classification/camelyon16_small.yaml`` at HEAD 73b61a79):
AdamW lr 1e-3, betas (0.9, 0.999), torch's weight decay 0.01, no scheduler, batches of 32 bags
padded to a common length, at most 100 epochs, validation once per epoch, early stopping with
patience 20 checks on validation balanced accuracy, the best-on-validation weights kept, 20 runs.
eva caps a slide at 1,000 patches ("small"; 10,000 for the full camelyon16.yaml), drawn once by
a seeded shuffle of the foreground grid. Here the cap `max_patches` is applied to bags already
extracted: training draws a fresh random subset every time a bag is used (an augmentation eva
does not have; its bags are fixed), validation and test use one fixed subset per bag (seed 42,
eva's sampler seed). `max_patches=None` is the full-bag recipe. The other papers' own recipes
are options (`optimizer`, `monitor="loss"`; named runs in benchmarks/suites/camelyon16.yaml):
CLAM Adam lr 1e-4, weight decay 1e-5, one bag per step, early stopping on validation loss;
TransMIL RAdam + Lookahead lr 2e-4, weight decay 1e-5, one bag per step, early stopping on
validation loss.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from pathgen.eval.head_training import CheckpointSelector
from pathgen.eval.metrics import METRICS, classification_metrics
from pathgen.eval.mil_models import MIL_MODELS, MILModel
from pathgen.eval.mil_optim import MIL_OPTIMIZERS, make_mil_optimizer
from pathgen.eval.probe_result import ProbeResult, count_classes
from pathgen.eval.probes import summarise_runs
from pathgen.threads import torch_threads

EVAL_SUBSAMPLE_SEED = 42  # eva's ForegroundGridSampler shuffle seed


@dataclass
class MILConfig:
    """MIL training on bags of frozen features; defaults are eva's Camelyon16-small ABMIL run.

    Attributes:
        model: One of `mil_models.MIL_MODELS`: "mean_pool", "abmil", "transmil", "clam_sb".
        hidden_dim: Instance embedding width; None = the model's published size (ABMIL 128 as
            eva, TransMIL 512, CLAM 512).
        attention_dim: Gated-attention hidden width; None = ABMIL 128 (eva), CLAM 256.
        n_heads: TransMIL attention heads; None = 8.
        dropout: None = the model's own (ABMIL 0 as eva, CLAM 0.25, TransMIL 0.1).
        k_sample: CLAM instances pseudo-labelled per side (None = CLAM's 8).
        instance_loss: CLAM instance loss "svm" (smooth top-1 SVM, CLAM's README runs) or "ce"
            (None = "svm").
        instance_loss_weight: CLAM's 1 − bag_weight (None = 0.3).
        residual_kernel: TransMIL's depthwise value-residual conv taps (None = 33, the original's;
            0 turns it off).
        optimizer: One of `mil_optim.MIL_OPTIMIZERS`: "adamw" (eva), "adam" (CLAM),
            "radam_lookahead" (TransMIL).
        lr, weight_decay: eva's AdamW 1e-3 and torch's 0.01 by default; CLAM's recipe is Adam
            1e-4 / 1e-5, TransMIL's RAdam + Lookahead 2e-4 / 1e-5 (benchmarks/suites/camelyon16.yaml).
        batch_size: Bags per step, padded to the longest; 1 is the CLAM/TransMIL setting.
        max_epochs: Epochs at most (eva 100); `max_steps`, when set, overrides it.
        val_every_steps: Validate every this many steps; None = once per epoch (eva).
        monitor: A metric of `metrics.METRICS` (higher is better) or "loss" (validation bag loss,
            lower is better; CLAM's choice).
        patience: Validation checks without strict improvement before stopping; None = never.
        max_patches: Instances per bag at most (eva Camelyon16-small 1,000); None = full bags.
        folds: > 1 makes `run_mil` cross-validate on train + val instead of repeating seeds.
        cpu_threads: torch threads while training on CPU; None leaves them as they are.
    """

    model: str = "abmil"
    hidden_dim: int | None = None
    attention_dim: int | None = None
    n_heads: int | None = None
    dropout: float | None = None
    k_sample: int | None = None
    instance_loss: str | None = None
    instance_loss_weight: float | None = None
    residual_kernel: int | None = None
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 32
    max_epochs: int = 100
    max_steps: int | None = None
    val_every_steps: int | None = None
    monitor: str = "balanced_accuracy"
    patience: int | None = 20
    max_patches: int | None = None
    folds: int = 1
    cpu_threads: int | None = None

    @classmethod
    def eva_camelyon16_small(cls, **overrides: Any) -> MILConfig:
        """eva's "camelyon16_small" run: ABMIL on at most 1,000 patches per slide."""
        return cls(**{"max_patches": 1000, **overrides})


MODEL_OPTIONS = (
    "hidden_dim",
    "attention_dim",
    "n_heads",
    "dropout",
    "k_sample",
    "instance_loss",
    "instance_loss_weight",
    "residual_kernel",
)


def build_mil_model(cfg: MILConfig, in_features: int, n_classes: int) -> MILModel:
    """The model `cfg.model` with the options set in `cfg` (None keeps the model's default)."""
    if cfg.model not in MIL_MODELS:
        raise ValueError(f"unknown MIL model {cfg.model!r}; choose from {sorted(MIL_MODELS)}")
    model_class = MIL_MODELS[cfg.model]
    accepted = inspect.signature(model_class).parameters
    options = {name: getattr(cfg, name) for name in MODEL_OPTIONS if getattr(cfg, name) is not None}
    unused = sorted(set(options) - set(accepted))
    if unused:
        raise ValueError(f"MILConfig sets {unused}, which model {cfg.model!r} does not take; leave them None")
    return model_class(in_features, n_classes, **options)


def check_bags(bags: Sequence[np.ndarray], labels: np.ndarray, split: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Validate one split: a non-empty list of finite (N_i ≥ 1, D) arrays and (n_bags,) integer labels."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(bags) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"{split}: need a list of bags and (n_bags,) labels, got {len(bags)} bags, labels {labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{split}: labels must be integers 0..C-1, got dtype {labels.dtype}; map class names first")
    checked = [np.asarray(bag, dtype=np.float32) for bag in bags]
    for i, bag in enumerate(checked):
        if bag.ndim != 2 or len(bag) == 0:
            raise ValueError(f"{split}: bag {i} has shape {bag.shape}; each bag must be (N ≥ 1, D) tile embeddings")
        if not np.isfinite(bag).all():
            raise ValueError(f"{split}: bag {i} contains NaN or inf (a broken extraction?)")
    widths = {bag.shape[1] for bag in checked}
    if len(widths) > 1:
        raise ValueError(f"{split}: bags differ in width {sorted(widths)}: were they made by one encoder?")
    return checked, labels.astype(np.int64)


def subsample_indices(n_instances: int, max_patches: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most `max_patches` instances drawn without replacement (all when fewer)."""
    if max_patches is None or n_instances <= max_patches:
        return np.arange(n_instances)
    return np.sort(rng.choice(n_instances, size=max_patches, replace=False))


def bag_subset(bag: np.ndarray, max_patches: int | None, rng: np.random.Generator) -> np.ndarray:
    """The bag itself when it fits `max_patches` (no copy: full Camelyon16 bags are ~15 MB each),
    else a random subset of its rows (`subsample_indices`)."""
    if max_patches is None or len(bag) <= max_patches:
        return bag
    return bag[subsample_indices(len(bag), max_patches, rng)]


def pad_bags(bags: Sequence[np.ndarray], device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Bags (N_i, D) → zero-padded (B, max N_i, D) float32 tensor and (B, max N_i) mask of real rows."""
    longest = max(len(bag) for bag in bags)
    x = np.zeros((len(bags), longest, bags[0].shape[1]), dtype=np.float32)
    mask = np.zeros((len(bags), longest), dtype=bool)
    for i, bag in enumerate(bags):
        x[i, : len(bag)], mask[i, : len(bag)] = bag, True
    return torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device)


def eval_indices(bags: Sequence[np.ndarray], max_patches: int | None) -> list[np.ndarray]:
    """The fixed instance subset each evaluated bag is scored on (seeded per bag position)."""
    return [
        subsample_indices(len(bag), max_patches, np.random.default_rng((EVAL_SUBSAMPLE_SEED, i)))
        for i, bag in enumerate(bags)
    ]


@torch.no_grad()
def predict_bags(
    model: MILModel,
    bags: Sequence[np.ndarray],
    batch_size: int = 32,
    max_patches: int | None = None,
    device: str = "cpu",
) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """(n_bags, C) float64 class probabilities and per-bag attention, in eval mode.

    Attention comes back as one (N_i,) array per bag over all its instances (NaN on instances
    left out by `max_patches`), or None for a model without attention.
    """
    model.eval()
    subsets = eval_indices(bags, max_patches)
    probabilities, attention = [], []
    for start in range(0, len(bags), batch_size):
        chunk = range(start, min(start + batch_size, len(bags)))
        x, mask = pad_bags([bags[i] if len(subsets[i]) == len(bags[i]) else bags[i][subsets[i]] for i in chunk], device)
        output = model(x, mask)
        probabilities.append(logits_to_probabilities(output.logits))
        if output.attention is not None:
            for row, i in zip(output.attention.double().cpu().numpy(), chunk):
                full = np.full(len(bags[i]), np.nan)
                full[subsets[i]] = row[: len(subsets[i])]
                attention.append(full)
    return np.concatenate(probabilities), (attention or None)


def logits_to_probabilities(logits: torch.Tensor) -> np.ndarray:
    """(B, 1) → [1 − σ, σ]; (B, C) → softmax; float64 numpy."""
    logits = logits.double()
    if logits.shape[1] == 1:
        positive = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - positive, positive], dim=1).cpu().numpy()
    return torch.softmax(logits, dim=1).cpu().numpy()


def validation_score(probabilities: np.ndarray, labels: np.ndarray, monitor: str) -> float:
    """The monitored quantity as a score to maximise (the negated mean bag loss for "loss")."""
    if monitor == "loss":
        return float(np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, None))))
    return METRICS[monitor](labels, probabilities)


def training_batches(n_bags: int, batch_size: int, rng: np.random.Generator):
    """Endless bag-index batches: a fresh permutation per epoch, the last batch may be short."""
    while True:
        yield from np.array_split(rng.permutation(n_bags), list(range(batch_size, n_bags, batch_size)))


def fit_mil(
    train: tuple[list[np.ndarray], np.ndarray],
    val: tuple[list[np.ndarray], np.ndarray],
    n_classes: int,
    cfg: MILConfig,
    seed: int = 0,
    device: str = "cpu",
) -> tuple[MILModel, CheckpointSelector]:
    """Train `cfg.model` with periodic validation; returns it loaded with the best-on-validation weights.

    `seed` fixes the initialisation and dropout (torch, inside a forked RNG so the global state
    is untouched) and the bag order and training subsets (numpy), so a rerun on the same device
    and thread count repeats exactly.
    """
    if min(cfg.batch_size, cfg.max_epochs, cfg.max_steps or 1, cfg.val_every_steps or 1, cfg.max_patches or 1) < 1:
        raise ValueError(
            f"MILConfig: batch_size, max_epochs, max_steps, val_every_steps, max_patches must be ≥ 1: {cfg}"
        )
    if cfg.optimizer not in MIL_OPTIMIZERS:
        raise ValueError(f"MILConfig.optimizer must be one of {MIL_OPTIMIZERS}, got {cfg.optimizer!r}")
    if cfg.monitor != "loss" and cfg.monitor not in METRICS:
        raise ValueError(f"MILConfig.monitor must be 'loss' or one of {sorted(METRICS)}, got {cfg.monitor!r}")
    (bags, labels), (val_bags, val_labels) = train, val
    steps_per_epoch = math.ceil(len(bags) / cfg.batch_size)
    total_steps = cfg.max_steps or cfg.max_epochs * steps_per_epoch
    val_every = cfg.val_every_steps or steps_per_epoch
    rng, selector = np.random.default_rng(seed), CheckpointSelector(cfg.patience)
    cuda = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        model = build_mil_model(cfg, bags[0].shape[1], n_classes).to(device)
        optimizer = make_mil_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay)
        for step, batch in zip(range(1, total_steps + 1), training_batches(len(bags), cfg.batch_size, rng)):
            model.train()
            x, mask = pad_bags([bag_subset(bags[i], cfg.max_patches, rng) for i in batch], device)
            y = torch.as_tensor(labels[batch], device=device)
            loss = model.loss(model(x, mask), y, mask)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % val_every == 0 or step == total_steps:
                probabilities, _ = predict_bags(model, val_bags, cfg.batch_size, cfg.max_patches, device)
                if selector.update(step, validation_score(probabilities, val_labels, cfg.monitor), model):
                    break
    model.load_state_dict(selector.best_state)
    return model, selector


def train_mil(
    train_bags: Sequence[np.ndarray],
    train_y: np.ndarray,
    val_bags: Sequence[np.ndarray],
    val_y: np.ndarray,
    test_bags: Sequence[np.ndarray],
    test_y: np.ndarray,
    cfg: MILConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> ProbeResult:
    """Train one MIL model on train, select on val, score test; a `ProbeResult` named after the model.

    Returns:
        metrics for val and test of the selected weights, `selected` {"step", "epoch"}, the test
        probabilities, and in `extra` the validation history (the monitored value per check),
        the step training stopped at, steps per epoch and the seed.
    """
    cfg = cfg or MILConfig()
    train = check_bags(train_bags, train_y, "train")
    val, test = check_bags(val_bags, val_y, "val"), check_bags(test_bags, test_y, "test")
    n_classes = count_classes(train[1], val[1], test[1])
    if len({split[0][0].shape[1] for split in (train, val, test)}) > 1:
        raise ValueError("train/val/test bags differ in width: were they made by one encoder?")
    with torch_threads(cfg.cpu_threads if torch.device(device).type == "cpu" else None):
        model, selector = fit_mil(train, val, n_classes, cfg, seed, device)
        val_scores, _ = predict_bags(model, val[0], cfg.batch_size, cfg.max_patches, device)
        test_scores, _ = predict_bags(model, test[0], cfg.batch_size, cfg.max_patches, device)
    steps_per_epoch = math.ceil(len(train[0]) / cfg.batch_size)
    sign = -1.0 if cfg.monitor == "loss" else 1.0
    return ProbeResult(
        name=cfg.model,
        metrics={
            "val": classification_metrics(val[1], val_scores),
            "test": classification_metrics(test[1], test_scores),
        },
        selected={"step": selector.best_step, "epoch": math.ceil(selector.best_step / steps_per_epoch)},
        test_scores=test_scores,
        extra={
            "val_history": [{"step": s, f"val_{cfg.monitor}": sign * v} for s, v in selector.history],
            "stopped_step": selector.history[-1][0],
            "steps_per_epoch": steps_per_epoch,
            "seed": seed,
        },
    )


def fold_splits(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified, shuffled (train indices, validation indices) for each of `folds` folds."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def run_mil(
    train_bags: Sequence[np.ndarray],
    train_y: np.ndarray,
    val_bags: Sequence[np.ndarray],
    val_y: np.ndarray,
    test_bags: Sequence[np.ndarray],
    test_y: np.ndarray,
    cfg: MILConfig | None = None,
    seeds: Sequence[int] = tuple(range(20)),
    device: str = "cpu",
    n_boot: int = 1000,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Repeat `train_mil` and summarise as `probes.run_probe` does (mean ± sd, bootstrap CI on test).

    cfg.folds == 1: one run per seed on the given splits (eva reports 20 runs for slide tasks).
    cfg.folds > 1: train and val are pooled and split into stratified folds (shuffled with
    seeds[0]); fold f trains on the other folds, early-stops on fold f, is trained with seed
    seeds[0] + f, and is scored on the untouched test split.

    Returns:
        The dict of `probes.summarise_runs` ("probe" is the model name) plus "seeds", "folds"
        and "config".
    """
    cfg = cfg or MILConfig()
    if cfg.folds > 1:
        pooled_bags, pooled_y = [*train_bags, *val_bags], np.concatenate([train_y, val_y])
        run_seeds, runs = [seeds[0] + f for f in range(cfg.folds)], []
        for seed, (fit_idx, hold_idx) in zip(run_seeds, fold_splits(pooled_y, cfg.folds, seeds[0])):
            runs.append(
                train_mil(
                    [pooled_bags[i] for i in fit_idx],
                    pooled_y[fit_idx],
                    [pooled_bags[i] for i in hold_idx],
                    pooled_y[hold_idx],
                    test_bags,
                    test_y,
                    cfg,
                    seed=seed,
                    device=device,
                )
            )
    else:
        run_seeds = list(seeds)
        runs = [
            train_mil(train_bags, train_y, val_bags, val_y, test_bags, test_y, cfg, seed=s, device=device)
            for s in run_seeds
        ]
    summary = summarise_runs(cfg.model, runs, test_y, n_boot, alpha)
    summary.update(seeds=run_seeds, folds=cfg.folds, config=dataclasses.asdict(cfg))
    return summary
