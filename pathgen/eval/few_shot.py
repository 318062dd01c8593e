"""Few-shot episodes with a SimpleShot nearest-centroid classifier on frozen features.

SimpleShot (Wang et al., "SimpleShot: Revisiting Nearest-Neighbor Classification for Few-Shot
Learning", arXiv 1911.04623): centre the features, L2-normalise them ("CL2N"), average the k
support features of each class into a centroid, and assign each query to the nearest centroid
(Euclidean). SimpleShot centres with the mean of its base-class training features; here the
mean of the whole training split is used (label-free, so each episode still sees only k labels
per class, and the same for every episode). The full test set is scored in every episode, and
results are reported as mean ± sd over episodes with a normal-approximation interval of the mean
(mean ± z·sd/√episodes), the usual few-shot report.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from pathgen.eval.metrics import METRICS, classification_metrics, mean_sd
from pathgen.eval.probe_result import check_split, count_classes

CI_METHOD_EPISODES = "normal approximation of the mean over episodes: mean ± z(1 − alpha/2)·sd/√episodes"


@dataclass
class FewShotConfig:
    """Few-shot protocol.

    Attributes:
        shots: Labelled examples per class in each episode (k).
        episodes: Episodes per k; each draws a fresh support set from train.
        normalisation: "cl2n" (centre on the train mean, then L2), "l2n" or "none".
        alpha: 1 − confidence level of the interval over episodes.
    """

    shots: tuple[int, ...] = (1, 2, 4, 8, 16)
    episodes: int = 100
    normalisation: str = "cl2n"
    alpha: float = 0.05


def normalise(features: np.ndarray, centre: np.ndarray | None, mode: str) -> np.ndarray:
    """Apply SimpleShot's feature transform: "cl2n" centres then L2-normalises, "l2n" only normalises."""
    if mode not in ("cl2n", "l2n", "none"):
        raise ValueError(f"FewShotConfig.normalisation must be 'cl2n', 'l2n' or 'none', got {mode!r}")
    out = features.astype(np.float64)
    if mode == "cl2n":
        out = out - centre
    if mode != "none":
        out = out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
    return out


def sample_support(labels: np.ndarray, shots: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `shots` distinct training rows per class, drawn without replacement."""
    support = []
    for c in range(n_classes):
        rows = np.flatnonzero(labels == c)
        if len(rows) < shots:
            raise ValueError(f"few_shot: class {c} has {len(rows)} training rows, fewer than {shots} shots")
        support.append(rng.choice(rows, size=shots, replace=False))
    return np.concatenate(support)


def centroid_scores(support_x: np.ndarray, support_y: np.ndarray, query_x: np.ndarray, n_classes: int) -> np.ndarray:
    """(N_query, C) softmax over negative Euclidean distances to the class centroids.

    The arg-max is the nearest centroid (SimpleShot's rule); the softmax only turns distances
    into scores for AUROC (binary AUROC depends on d₀ − d₁ alone, so the scale is immaterial).
    """
    centroids = np.stack([support_x[support_y == c].mean(axis=0) for c in range(n_classes)])
    sq = (query_x**2).sum(1, keepdims=True) - 2 * query_x @ centroids.T + (centroids**2).sum(1)
    logits = -np.sqrt(np.clip(sq, 0.0, None))
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def summarise_episodes(name: str, per_episode: list[dict[str, float]], shots: int, cfg: FewShotConfig) -> dict:
    """Mean ± sd and normal-approximation CI over episodes, in `probes.summarise_runs`' layout."""
    z = float(norm.ppf(1 - cfg.alpha / 2))
    metrics, ci = {}, {}
    for m in METRICS:
        values = [episode[m] for episode in per_episode]
        mean, sd = mean_sd(values)
        metrics[m] = {"mean": mean, "sd": sd, "values": values}
        half = z * (sd or 0.0) / np.sqrt(len(values))
        ci[m] = [float(mean - half), float(mean + half)] if sd is not None else None
    return {
        "probe": name,
        "runs": len(per_episode),
        "metrics": {"test": metrics},
        "ci": {"test": ci},
        "alpha": cfg.alpha,
        "ci_method": CI_METHOD_EPISODES,
        "selected": [{"shots": shots}],
        "roc": None,
        "report_split": "test",
    }


def few_shot(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    cfg: FewShotConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> list[dict]:
    """k-shot SimpleShot episodes for each k in `cfg.shots`, scored on the full test set.

    Episodes for shot count k come from numpy's generator seeded with (seed, k), so adding or
    removing a k leaves the others' episodes unchanged. `device` is accepted for a uniform
    signature (numpy is fast enough: one (N_test, D) @ (D, C) product per episode).

    Returns:
        One summary per k (probe "few_shot_k{k}"), laid out as `probes.summarise_runs` does,
        with "runs" = episodes, "n_test", "n_classes" and the config.
    """
    cfg = cfg or FewShotConfig()
    (tx, ty), (sx, sy) = check_split(train_x, train_y, "train"), check_split(test_x, test_y, "test")
    n_classes = count_classes(ty, sy)
    centre = tx.astype(np.float64).mean(axis=0)
    train_n, test_n = normalise(tx, centre, cfg.normalisation), normalise(sx, centre, cfg.normalisation)
    summaries = []
    for shots in cfg.shots:
        rng = np.random.default_rng([seed, shots])
        per_episode = []
        for _ in range(cfg.episodes):
            support = sample_support(ty, shots, n_classes, rng)
            scores = centroid_scores(train_n[support], ty[support], test_n, n_classes)
            per_episode.append(classification_metrics(sy, scores))
        summary = summarise_episodes(f"few_shot_k{shots}", per_episode, shots, cfg)
        summary.update(n_test=int(len(sy)), n_classes=n_classes, seeds=[seed], config=dataclasses.asdict(cfg))
        summaries.append(summary)
    return summaries
