"""k-nearest-neighbour probe on cosine similarity, with DINO's similarity-weighted vote.

Caron et al., "Emerging Properties in Self-Supervised Vision Transformers" (ICCV 2021), the
``knn_classifier`` of facebookresearch/dino ``eval_knn.py``: L2-normalised features, the k
most similar training rows vote with weight exp(cos / T), T = 0.07; k = 20, the k of DINO's
reported k-NN accuracies. The bank is the training split; val and test rows are the queries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pathgen.eval.metrics import classification_metrics
from pathgen.eval.probe_result import ProbeResult, check_splits


@dataclass
class KnnProbeConfig:
    """k-nearest-neighbour probe on cosine similarity (DINO's eval_knn.py defaults).

    Attributes:
        k: Neighbours per query (DINO's reported 20-NN).
        temperature: T in the DINO weight exp(cos / T).
        weighting: "dino" (similarity-weighted) or "majority" (one vote per neighbour).
        query_block: Query rows scored per pass over the bank.
        chunk_elements: Cap on query × bank similarities held at once (memory bound).
    """

    k: int = 20
    temperature: float = 0.07
    weighting: str = "dino"
    query_block: int = 1024
    chunk_elements: int = 1 << 24


def top_k_similar(
    queries: torch.Tensor, bank: torch.Tensor, k: int, chunk_elements: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(similarities, bank indices) of the k largest q·b per query row, bank read in blocks.

    Blocks keep at most `chunk_elements` similarities in memory; each block's top k is merged
    into the running top k, so one pass over the bank serves the whole query block.
    """
    block = max(k, chunk_elements // max(1, len(queries)))
    best_sims, best_idx = None, None
    for start in range(0, len(bank), block):
        sims, idx = (queries @ bank[start : start + block].T).topk(min(k, len(bank) - start), dim=1)
        idx = idx + start
        if best_sims is not None:
            sims, merged = torch.cat([best_sims, sims], dim=1).topk(k, dim=1)
            idx = torch.cat([best_idx, idx], dim=1).gather(1, merged)
        best_sims, best_idx = sims, idx
    return best_sims, best_idx


def knn_scores(
    bank_x: np.ndarray,
    bank_y: np.ndarray,
    query_x: np.ndarray,
    n_classes: int,
    cfg: KnnProbeConfig,
    device: str = "cpu",
) -> np.ndarray:
    """Class vote shares (N_query, C) from the k most cosine-similar bank rows.

    Following DINO (Caron et al., ICCV 2021, ``eval_knn.py``): rows are L2-normalised, the
    similarity is s = x·b, and neighbour j votes for its class with weight exp(s_j / T)
    ("dino") or 1 ("majority"); the votes are divided by their sum so each row sums to 1.
    """
    if cfg.weighting not in ("dino", "majority"):
        raise ValueError(f"KnnProbeConfig.weighting must be 'dino' or 'majority', got {cfg.weighting!r}")
    bank = F.normalize(torch.as_tensor(bank_x, device=device), dim=1)
    labels = torch.as_tensor(bank_y, device=device)
    queries = F.normalize(torch.as_tensor(query_x, device=device), dim=1)
    k = min(cfg.k, len(bank))
    out = []
    for start in range(0, len(queries), cfg.query_block):
        sims, idx = top_k_similar(queries[start : start + cfg.query_block], bank, k, cfg.chunk_elements)
        weights = (sims / cfg.temperature).exp() if cfg.weighting == "dino" else torch.ones_like(sims)
        votes = torch.zeros(len(sims), n_classes, device=device).scatter_add_(1, labels[idx], weights)
        out.append(votes / votes.sum(dim=1, keepdim=True))
    return torch.cat(out).cpu().numpy().astype(np.float64)


def knn_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    cfg: KnnProbeConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> ProbeResult:
    """kNN probe: train features are the bank, val and test rows the queries (k fixed, no selection).

    Deterministic; `seed` is accepted for a uniform signature only.
    """
    cfg = cfg or KnnProbeConfig()
    (tx, ty), (vx, vy), (sx, sy), n_classes = check_splits((train_x, train_y), (val_x, val_y), (test_x, test_y))
    val_scores = knn_scores(tx, ty, vx, n_classes, cfg, device)
    test_scores = knn_scores(tx, ty, sx, n_classes, cfg, device)
    return ProbeResult(
        name="knn",
        metrics={"val": classification_metrics(vy, val_scores), "test": classification_metrics(sy, test_scores)},
        selected={"k": min(cfg.k, len(tx)), "weighting": cfg.weighting, "temperature": cfg.temperature},
        test_scores=test_scores,
    )
