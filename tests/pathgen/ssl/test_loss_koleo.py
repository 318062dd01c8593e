"""KoLeo regulariser on hand-worked point sets."""

from __future__ import annotations

import math

import pytest
import torch

from pathgen.ssl.losses.koleo import koleo_loss


def test_three_points_on_the_circle():
    # after normalisation: (1,0), (0,1), (-1,0); every nearest-neighbour distance is sqrt(2)
    features = torch.tensor([[3.0, 0.0], [0.0, 0.5], [-2.0, 0.0]])
    assert koleo_loss(features).item() == pytest.approx(-math.log(math.sqrt(2)), rel=1e-5)


def test_close_pair_dominates():
    # angles 0, 0.1 rad, pi: the first two are each other's neighbours (chord 2 sin 0.05),
    # the third's nearest is the 0.1-rad point (chord 2 sin((pi - 0.1) / 2))
    angles = [0.0, 0.1, math.pi]
    features = torch.tensor([[math.cos(a), math.sin(a)] for a in angles])
    close = 2 * math.sin(0.05)
    far = 2 * math.sin((math.pi - 0.1) / 2)
    expected = -(2 * math.log(close) + math.log(far)) / 3
    assert koleo_loss(features).item() == pytest.approx(expected, rel=1e-5)


def test_koleo_needs_two_rows_and_runs_under_autocast():
    with pytest.raises(ValueError, match="at least 2 rows"):
        koleo_loss(torch.randn(1, 4))
    features = torch.randn(8, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = koleo_loss(features.bfloat16())
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(features.grad).all()
