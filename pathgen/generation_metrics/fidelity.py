"""Conditioning fidelity: does a generated view carry the embedding it was conditioned on?

A view made from embedding e should embed close to e again (the cycle check of representation-
conditioned generation: Graikos et al., CVPR 2024; Gen-SIS, GenView). The raw cosine means little
on its own — SSL embeddings of unrelated tiles are often far from orthogonal — so it is reported
beside two references in the same feature space:

- `random_pairs`: mean cosine between *random pairs* of distinct real tiles (what an unconditioned
  or ignored conditioning would score; shuffling views across sources falls to this level);
- `augmented_self` (optional): mean cosine between a real tile's embedding and the embedding of a
  geometric augmentation of the same tile (what a view "as faithful as a flip/rotation" scores).

`difference` = fidelity − random_pairs and `ratio` = fidelity / random_pairs; `normalised` =
(fidelity − random_pairs) / (augmented_self − random_pairs) puts the fidelity on the scale
0 = random tile, 1 = augmented copy of the source.

`retrieval_top1` needs no reference scale: the share of views whose own target is the nearest of
all N targets. Views, targets and real tiles are first put on the unit sphere (SLERP targets have
unit norm, raw embeddings do not: centring both with the mean of raw embeddings, norm ~8 for a
small encoder, pushed unit-norm targets to one point), then centred on the real tiles' mean unit
embedding, so a direction every tile shares does not decide. A view that is an exact copy of what
it was conditioned on is retrieved with 1.0 in both modes. Chance is 1 / N (`retrieval_chance`);
`retrieval_augmented` is the same for augmented copies of real tiles among their sources.
"""

from __future__ import annotations

import numpy as np


def l2_normalise(features: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows divided by their L2 norm (float64)."""
    features = np.asarray(features, dtype=np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), eps)


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two (..., D) arrays (broadcasting like numpy)."""
    return (l2_normalise(a) * l2_normalise(b)).sum(axis=-1)


def random_pair_cosine(features: np.ndarray, n_pairs: int = 10_000, seed: int = 0) -> float:
    """Mean cosine between random pairs of distinct rows of an (M, D) real feature set.

    Uses every pair (i < j) when there are no more than `n_pairs` of them, else `n_pairs` random ones.
    """
    features = l2_normalise(features)
    m = len(features)
    if m < 2:
        raise ValueError(f"need at least 2 real embeddings for the random-pair baseline, got {m}")
    if m * (m - 1) // 2 <= n_pairs:
        upper = np.triu_indices(m, k=1)
        return float((features @ features.T)[upper].mean())
    rng = np.random.default_rng(seed)
    first = rng.integers(0, m, n_pairs)
    second = (first + rng.integers(1, m, n_pairs)) % m  # never the same row
    return float((features[first] * features[second]).sum(axis=1).mean())


def conditioning_fidelity(
    view_features: np.ndarray,
    condition: np.ndarray,
    real_features: np.ndarray,
    augmented: tuple[np.ndarray, np.ndarray] | None = None,
    n_pairs: int = 10_000,
    seed: int = 0,
) -> dict:
    """Fidelity of generated views to their conditioning embeddings, with its references.

    view_features (N, K, D): embeddings of the K views of each source row; condition (N, D) or
    (N, K, D): the embedding each row (or each view: interpolation mixes each view with its own α)
    was conditioned on; real_features (M, D):
    embeddings of real tiles for the random-pair baseline; augmented: optional (real (A, D),
    augmented copies (A, D)) embeddings for the augmented-self reference.
    """
    view_features, condition = np.asarray(view_features), np.asarray(condition)
    if condition.ndim == 2:
        condition = condition[:, None, :]
    if (
        view_features.ndim != 3
        or condition.ndim != 3
        or condition.shape[0] != view_features.shape[0]
        or condition.shape[2] != view_features.shape[2]
        or condition.shape[1] not in (1, view_features.shape[1])
    ):
        raise ValueError(
            f"views must be (N, K, D) and conditions (N, D) or (N, K, D); got {view_features.shape} "
            f"and {condition.shape}"
        )
    per_view = row_cosine(view_features, condition)
    fidelity = float(per_view.mean())
    baseline = random_pair_cosine(real_features, n_pairs, seed)
    result = {
        "fidelity": fidelity,
        "fidelity_std": float(per_view.std()),
        "random_pairs": baseline,
        "difference": fidelity - baseline,
        "ratio": fidelity / baseline if abs(baseline) > 1e-8 else float("nan"),
        "n_views": int(per_view.size),
    }
    centre = unit_centre(real_features)
    result.update(source_retrieval(view_features, condition, centre))
    if augmented is not None:
        reference = float(row_cosine(*augmented).mean())
        result["augmented_self"] = reference
        gap = reference - baseline
        result["normalised"] = (fidelity - baseline) / gap if abs(gap) > 1e-8 else float("nan")
        real_copies, augmented_copies = augmented
        result["retrieval_augmented"] = source_retrieval(augmented_copies[:, None, :], real_copies[:, None, :], centre)[
            "retrieval_top1"
        ]
    return result


def unit_centre(real_features: np.ndarray) -> np.ndarray:
    """The mean of the real embeddings once each is L2-normalised: the centre retrieval subtracts."""
    return l2_normalise(real_features).mean(axis=0)


def source_retrieval(view_features: np.ndarray, condition: np.ndarray, centre: np.ndarray) -> dict:
    """Top-1 retrieval of each view's own target among the N sources' targets: views (N, K, D),
    condition (N, 1 or K, D), both L2-normalised, centred on `centre` (`unit_centre` of real tiles)
    and normalised again. With per-view targets (interpolation) a view is scored against every
    source's target for the same view slot."""
    centre = np.asarray(centre, dtype=np.float64)
    views = l2_normalise(l2_normalise(view_features) - centre)
    targets = l2_normalise(np.broadcast_to(l2_normalise(condition), views.shape) - centre)
    n, k, _ = views.shape
    hits = [np.argmax(views[:, slot] @ targets[:, slot].T, axis=1) == np.arange(n) for slot in range(k)]
    return {"retrieval_top1": float(np.mean(hits)), "retrieval_chance": 1.0 / n}
