"""SLERP of SSL embeddings and the embedding conditioner (L2-normalise → Linear → tokens, null = bias)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pathgen.diffusion.conditioning import EmbeddingConditioner, slerp


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(5, 16, generator=generator) * 3, torch.randn(5, 16, generator=generator)


def test_slerp_end_points_are_the_normalised_inputs(pair):
    e1, e2 = pair
    torch.testing.assert_close(slerp(e1, e2, 1.0), F.normalize(e1, dim=-1))
    torch.testing.assert_close(slerp(e1, e2, 0.0), F.normalize(e2, dim=-1))


def test_slerp_stays_on_the_unit_sphere(pair):
    e1, e2 = pair
    for alpha in (0.1, 0.37, 0.5, 0.9):
        torch.testing.assert_close(slerp(e1, e2, alpha).norm(dim=-1), torch.ones(5))
    alphas = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])  # one alpha per row
    mixed = slerp(e1, e2, alphas)
    torch.testing.assert_close(mixed.norm(dim=-1), torch.ones(5))
    torch.testing.assert_close(mixed[0], F.normalize(e2[0], dim=-1))
    torch.testing.assert_close(mixed[4], F.normalize(e1[4], dim=-1))


def test_slerp_midpoint_is_at_equal_angles_and_angles_are_linear_in_alpha(pair):
    e1, e2 = pair
    u1, u2 = F.normalize(e1, dim=-1), F.normalize(e2, dim=-1)
    total = torch.arccos((u1 * u2).sum(-1))
    mid = slerp(e1, e2, 0.5)
    torch.testing.assert_close((mid * u1).sum(-1), (mid * u2).sum(-1))
    quarter = slerp(e1, e2, 0.25)  # weight 0.25 on e1: three quarters of the way from e1 to e2
    torch.testing.assert_close(torch.arccos((quarter * u1).sum(-1).clamp(-1, 1)), 0.75 * total, atol=1e-4, rtol=0)


def test_slerp_falls_back_to_lerp_for_parallel_vectors():
    e1 = torch.tensor([1.0, 2.0, 3.0])
    out = slerp(e1, 4 * e1, 0.3)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, F.normalize(e1, dim=-1))
    near = slerp(e1, e1 + 1e-7, 0.5)
    assert torch.isfinite(near).all() and math.isclose(float(near.norm()), 1.0, rel_tol=1e-5)


def test_conditioner_shape_and_scale_invariance():
    torch.manual_seed(0)
    conditioner = EmbeddingConditioner(embed_dim=16, context_dim=8, n_tokens=2)
    embeddings = torch.randn(3, 16)
    context = conditioner(embeddings)
    assert context.shape == (3, 2, 8)
    torch.testing.assert_close(conditioner(5 * embeddings), context)  # L2-normalised first
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        conditioner(torch.randn(3, 15))


def test_dropped_rows_and_zero_embeddings_get_the_null_context_which_is_the_bias():
    torch.manual_seed(0)
    conditioner = EmbeddingConditioner(embed_dim=16, context_dim=8, n_tokens=2)
    embeddings = torch.randn(4, 16)
    drop = torch.tensor([True, False, True, False])
    context = conditioner(embeddings, drop)
    null = conditioner.null(4)
    torch.testing.assert_close(null[0], conditioner.proj.bias.view(2, 8))
    torch.testing.assert_close(context[drop], null[drop])
    torch.testing.assert_close(context[~drop], conditioner(embeddings[~drop]))
    torch.testing.assert_close(conditioner(torch.zeros(2, 16)), conditioner.null(2))
    assert conditioner.null(3, dtype=torch.float64).dtype == torch.float64


def test_standardised_conditioner_tells_apart_embeddings_that_share_one_direction():
    """A small encoder's embeddings: one shared direction plus small per-tile parts (cosine ~0.999)."""
    torch.manual_seed(0)
    common = 30 * torch.randn(16)
    embeddings = common + torch.randn(64, 16)
    conditioner = EmbeddingConditioner(embed_dim=16, context_dim=8)
    unit_raw = torch.nn.functional.normalize(embeddings, dim=-1)
    assert (unit_raw @ unit_raw.T).min() > 0.99
    before = conditioner(embeddings).flatten(1)
    conditioner.set_statistics(embeddings)
    after = conditioner(embeddings).flatten(1)
    unit = torch.nn.functional.normalize(embeddings, dim=-1)
    standardised = (unit - unit.mean(0)) / unit.std(0)
    torch.testing.assert_close(after, conditioner.proj(torch.nn.functional.normalize(standardised, dim=-1)))
    # statistics live on the unit sphere: a SLERP output (unit norm) and the raw embedding condition alike
    torch.testing.assert_close(conditioner(slerp(embeddings[:4], embeddings[4:8], 1.0)), after[:4].view(4, 1, 8))
    torch.testing.assert_close(conditioner(7 * embeddings[:4]), after[:4].view(4, 1, 8))
    assert after.std(dim=0).mean() > 5 * before.std(dim=0).mean()
    drop = torch.zeros(64, dtype=torch.bool)
    drop[:3] = True
    torch.testing.assert_close(conditioner(embeddings, drop)[:3], conditioner.null(3))
    with pytest.raises(ValueError, match="statistics"):
        conditioner.set_statistics(embeddings[:1])
