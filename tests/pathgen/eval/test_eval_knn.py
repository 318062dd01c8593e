"""kNN internals: DINO's similarity weighting by hand, and the blocked top-k against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pathgen.eval.knn_probe import KnnProbeConfig, knn_scores, top_k_similar

BANK = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
BANK_Y = np.array([0, 1, 1])
QUERY = np.array([[1.0, 0.2]], dtype=np.float32)


def test_dino_weighting_by_hand() -> None:
    # cosines of the query with the bank rows: 1/√1.04, 0.2/√1.04, 1.2/√(1.04·2)
    cos0, cos2 = 1 / math.sqrt(1.04), 1.2 / math.sqrt(2.08)
    share0 = math.exp(cos0 / 0.07) / (math.exp(cos0 / 0.07) + math.exp(cos2 / 0.07))  # k = 2: rows 0 and 2
    scores = knn_scores(BANK, BANK_Y, QUERY, 2, KnnProbeConfig(k=2))
    np.testing.assert_allclose(scores, [[share0, 1 - share0]], rtol=1e-5)
    assert share0 == pytest.approx(0.893, abs=1e-3)


def test_majority_vote_counts_neighbours() -> None:
    for k, expected in ((2, [[0.5, 0.5]]), (3, [[1 / 3, 2 / 3]])):
        scores = knn_scores(BANK, BANK_Y, QUERY, 2, KnnProbeConfig(k=k, weighting="majority"))
        np.testing.assert_allclose(scores, expected)
    with pytest.raises(ValueError, match="weighting"):
        knn_scores(BANK, BANK_Y, QUERY, 2, KnnProbeConfig(weighting="softmax"))


def test_k_larger_than_the_bank_uses_the_whole_bank() -> None:
    scores = knn_scores(BANK, BANK_Y, QUERY, 2, KnnProbeConfig(k=20, weighting="majority"))
    np.testing.assert_allclose(scores, [[1 / 3, 2 / 3]])


@pytest.mark.parametrize("block_rows", [64, 20], ids=["short-last-block", "one-row-last-block"])
def test_blocked_top_k_equals_brute_force(block_rows: int) -> None:
    generator = torch.Generator().manual_seed(0)
    queries = F.normalize(torch.randn(37, 16, generator=generator), dim=1)
    bank = F.normalize(torch.randn(1001, 16, generator=generator), dim=1)
    expected_sims, expected_idx = (queries @ bank.T).topk(20, dim=1)
    sims, idx = top_k_similar(queries, bank, 20, chunk_elements=37 * block_rows)  # 1001 rows: last block 41 or 1
    torch.testing.assert_close(sims, expected_sims)
    assert torch.equal(idx, expected_idx)
