"""Seeded stratified splits, for datasets whose publishers give no validation (or no test) split.

Deterministic: the same labels in the same order and the same seed always give the same split,
and readers list files in sorted order, so a split is a pure function of the files and the seed.
"""

from __future__ import annotations

import numpy as np


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices 0..N-1 into (kept, held out), holding out `fraction` of every class.

    Each class with at least 2 members gives round(fraction · n) members, at least 1 and at most
    n − 1, so both parts see every such class; a class with one member stays in the kept part.
    Both index arrays come back sorted.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        if len(members) < 2:
            continue
        count = min(max(round(fraction * len(members)), 1), len(members) - 1)
        held.append(rng.permutation(members)[:count])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    kept = np.setdiff1d(np.arange(len(labels)), held_out)
    return kept, held_out


def three_way_split(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """{"train", "val", "test": sorted indices}: test first, then val from what is left, both
    stratified; val_fraction and test_fraction are shares of the whole set."""
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    rest, test = stratified_holdout(labels, test_fraction, seed)
    train, val = stratified_holdout(labels[rest], val_fraction / (1 - test_fraction), seed + 1)
    return {"train": rest[train], "val": rest[val], "test": test}
