"""MoCo v3 and v2 losses and the key queue, against hand-worked values and loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pathgen.ssl.losses.moco import KeyQueue, mocov2_loss, mocov3_contrastive, mocov3_loss


def naive_mocov3(query: np.ndarray, key: np.ndarray, temperature: float) -> float:
    query = query / np.linalg.norm(query, axis=1, keepdims=True)
    key = key / np.linalg.norm(key, axis=1, keepdims=True)
    losses = []
    for i in range(query.shape[0]):
        logits = [float(query[i] @ key[j]) / temperature for j in range(key.shape[0])]
        losses.append(-logits[i] + math.log(sum(math.exp(x) for x in logits)))
    return float(np.mean(losses)) * 2 * temperature


def test_mocov3_matches_loop_and_is_symmetrised():
    rng = np.random.default_rng(0)
    q1, q2, k1, k2 = (rng.normal(size=(5, 4)) for _ in range(4))
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    single = mocov3_contrastive(as_tensor(q1), as_tensor(k2), 0.2)
    assert single.item() == pytest.approx(naive_mocov3(q1, k2, 0.2), rel=1e-5)
    both = mocov3_loss(as_tensor(q1), as_tensor(q2), as_tensor(k1), as_tensor(k2), 0.2)
    assert both.item() == pytest.approx(naive_mocov3(q1, k2, 0.2) + naive_mocov3(q2, k1, 0.2), rel=1e-5)


def test_mocov3_hand_worked_identity():
    # q = k = identity rows: logits = I/τ, CE = log(1 + e^{-1/τ}) per row, times 2τ
    eye = torch.eye(2)
    expected = math.log(1 + math.exp(-1 / 0.5)) * 2 * 0.5
    assert mocov3_contrastive(eye, eye, 0.5).item() == pytest.approx(expected, rel=1e-6)


def test_mocov3_keys_get_no_gradient():
    query, key = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    mocov3_contrastive(query, key, 0.2).backward()
    assert query.grad is not None and key.grad is None


def test_mocov2_hand_worked_queue():
    # positive 1, negatives 0 and −1: CE = −log(e^{1/τ} / (e^{1/τ} + 1 + e^{−1/τ}))
    query, key = torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    tau = 0.2
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 1 + math.exp(-1 / tau)))
    assert mocov2_loss(query, key, queue, tau).item() == pytest.approx(expected, rel=1e-5)


def test_queue_enqueue_wraps_round_and_normalises():
    queue = KeyQueue(size=5, dim=2)
    first, second = torch.tensor([[3.0, 0.0]] * 3), torch.tensor([[0.0, 2.0]] * 3)
    queue.enqueue(first)
    assert int(queue.pointer) == 3
    queue.enqueue(second)
    assert int(queue.pointer) == 1
    expected = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert torch.allclose(queue.keys, expected)
    assert torch.allclose(queue.keys.norm(dim=1), torch.ones(5))
    with pytest.raises(ValueError, match="exceeds the queue size"):
        queue.enqueue(torch.randn(6, 2))


def test_mocov2_under_autocast_is_fp32():
    query = torch.randn(4, 8, requires_grad=True)
    queue = F.normalize(torch.randn(16, 8), dim=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = mocov2_loss(query.bfloat16(), torch.randn(4, 8).bfloat16(), queue)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(query.grad).all()
