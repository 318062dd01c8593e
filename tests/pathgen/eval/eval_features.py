"""Synthetic frozen features with a planted (or no) signal, for the probe tests.

Each maker returns {"train": (x, y), "val": (x, y), "test": (x, y)} plus, where one exists, the
Bayes-optimal prediction on test ("oracle"), so a test can compare a probe with the best any
classifier could do on the same rows.
"""

from __future__ import annotations

import numpy as np

SIZES = {"train": 3000, "val": 1000, "test": 4000}


def linear_signal(n_classes: int = 2, dim: int = 32, n_signal: int = 3, noise: float = 0.2, seed: int = 0) -> dict:
    """x ~ N(0, I_dim); y = argmax_c (x[:, :n_signal] @ W)_c + noise (binary: 1[x·w + ε > 0]).

    The label is a known linear function of `n_signal` directions; the other dims are pure noise.
    The oracle predicts with the true W and no label noise.
    """
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(n_signal, 1 if n_classes == 2 else n_classes))
    w /= np.linalg.norm(w, axis=0, keepdims=True)
    data = {}
    for split, n in SIZES.items():
        x = rng.normal(size=(n, dim)).astype(np.float32)
        clean = x[:, :n_signal] @ w
        noisy = clean + noise * rng.normal(size=clean.shape)
        label = lambda z: (z[:, 0] > 0).astype(np.int64) if n_classes == 2 else z.argmax(1)  # noqa: E731
        data[split] = (x, label(noisy))
        if split == "test":
            data["oracle"] = label(clean)
    return data


def clustered(
    n_classes: int = 2, clusters_per_class: int = 2, dim: int = 32, spread: float = 0.8, seed: int = 0
) -> dict:
    """Each class is a union of Gaussian clusters around orthonormal unit directions (noise norm ≈ spread).

    With n_classes = 2 and clusters_per_class = 2 the clusters sit at ±u (class 0) and ±v
    (class 1): an XOR-like layout that no linear classifier separates but cosine kNN does.
    """
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, dim)))[0][:, : n_classes * clusters_per_class].T
    if n_classes == 2 and clusters_per_class == 2:
        centres, owner = np.stack([basis[0], -basis[0], basis[1], -basis[1]]), np.array([0, 0, 1, 1])
    else:
        centres, owner = basis, np.repeat(np.arange(n_classes), clusters_per_class)
    data = {}
    for split, n in SIZES.items():
        which = rng.integers(0, len(centres), size=n)
        x = centres[which] + spread / np.sqrt(dim) * rng.normal(size=(n, dim))  # noise norm ≈ spread
        data[split] = (x.astype(np.float32), owner[which])
    return data


def random_labels(n_classes: int = 2, dim: int = 32, seed: int = 0) -> dict:
    """Gaussian features and labels drawn independently of them: no probe can beat chance."""
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in SIZES.items():
        y = np.arange(n) % n_classes  # every class present, then shuffled
        data[split] = (rng.normal(size=(n, dim)).astype(np.float32), rng.permutation(y).astype(np.int64))
    return data


def splits(data: dict) -> tuple[np.ndarray, ...]:
    """(train_x, train_y, val_x, val_y, test_x, test_y) in the probes' argument order."""
    return (*data["train"], *data["val"], *data["test"])
