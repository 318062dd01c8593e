"""MIL models: shapes, masking (a padded bag scores as it does alone), CLAM's instance loss."""

from __future__ import annotations

import math

import pytest
import torch

from pathgen.eval.mil import MILConfig, build_mil_model
from pathgen.eval.mil_models import CLAMSB, MIL_MODELS, smooth_top1_svm_loss

TINY = {  # small widths so every model builds and runs in milliseconds
    "mean_pool": MILConfig("mean_pool"),
    "abmil": MILConfig("abmil", hidden_dim=16, attention_dim=8),
    "transmil": MILConfig("transmil", hidden_dim=16, n_heads=2),
    "clam_sb": MILConfig("clam_sb", hidden_dim=16, attention_dim=8, k_sample=3),
}
HAS_ATTENTION = {"abmil", "transmil", "clam_sb"}


def tiny_model(name: str, n_classes: int = 2, dim: int = 12) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_mil_model(TINY[name], dim, n_classes).eval()


def test_every_registered_model_has_a_tiny_config() -> None:
    assert set(TINY) == set(MIL_MODELS)


@pytest.mark.parametrize("name", sorted(MIL_MODELS))
@pytest.mark.parametrize("n_classes", [2, 3])
def test_shapes_and_a_training_step(name: str, n_classes: int) -> None:
    model = tiny_model(name, n_classes).train()
    x, mask = torch.randn(4, 9, 12), torch.ones(4, 9, dtype=torch.bool)
    mask[1, 5:] = False
    output = model(x, mask)
    assert output.logits.shape == (4, 1 if n_classes == 2 else n_classes)
    if name in HAS_ATTENTION:
        assert output.attention.shape == (4, 9)
        torch.testing.assert_close(output.attention.sum(dim=1), torch.ones(4))
        assert (output.attention[1, 5:] == 0).all()
    else:
        assert output.attention is None
    model.loss(output, torch.tensor([0, 1, n_classes - 1, 0]), mask).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", sorted(MIL_MODELS))
def test_a_bag_scores_the_same_alone_padded_or_batched(name: str) -> None:
    model = tiny_model(name)
    torch.manual_seed(1)
    bags = [torch.randn(n, 12) for n in (7, 13, 4)]
    alone = [model(bag[None], torch.ones(1, len(bag), dtype=torch.bool)) for bag in bags]
    batch = torch.zeros(3, 20, 12)  # longer than any bag: every row has masked zero padding
    mask = torch.zeros(3, 20, dtype=torch.bool)
    for i, bag in enumerate(bags):
        batch[i, : len(bag)], mask[i, : len(bag)] = bag, True
    together = model(batch, mask)
    for i, (bag, single) in enumerate(zip(bags, alone)):
        torch.testing.assert_close(together.logits[i], single.logits[0], atol=1e-5, rtol=1e-5)
        if name in HAS_ATTENTION:
            torch.testing.assert_close(together.attention[i, : len(bag)], single.attention[0], atol=1e-6, rtol=1e-5)
            assert (together.attention[i, len(bag) :] == 0).all()


def test_padding_never_enters_clams_instance_loss() -> None:
    model = CLAMSB(12, 2, hidden_dim=16, attention_dim=8, dropout=0.0, k_sample=3)
    torch.manual_seed(2)
    bag, labels = torch.randn(1, 8, 12), torch.tensor([1])
    alone = model.loss(model(bag, torch.ones(1, 8, dtype=torch.bool)), labels, torch.ones(1, 8, dtype=torch.bool))
    # padding rows with a huge value would be picked by top-k if they were not masked
    padded, mask = torch.cat([bag, torch.full((1, 5, 12), 1e3)], dim=1), torch.zeros(1, 13, dtype=torch.bool)
    mask[0, :8] = True
    torch.testing.assert_close(model.loss(model(padded, mask), labels, mask), alone)


def test_clam_picks_top_and_bottom_k_and_uses_the_label_classifier() -> None:
    model = CLAMSB(4, 2, hidden_dim=4, attention_dim=4, dropout=0.0, k_sample=2, instance_loss="ce")
    h = torch.eye(4).repeat(2, 1)[:6]  # 6 instances
    attention = torch.tensor([0.05, 0.4, 0.1, 0.3, 0.1, 0.05])
    top, bottom = [1, 3], [0, 5]
    for label in (0, 1):
        classifier = model.instance_classifiers[label]
        chosen = h[top + bottom]
        expected = torch.nn.functional.cross_entropy(classifier(chosen), torch.tensor([1, 1, 0, 0]))
        torch.testing.assert_close(model.bag_instance_loss(h, attention, label), expected)
    assert model.bag_instance_loss(h[:1], attention[:1], 1) is None  # one instance: nothing to contrast


def test_smooth_top1_svm_matches_hand_computed_values() -> None:
    logits = torch.tensor([[2.0, 0.0], [2.0, 0.0]])
    loss = smooth_top1_svm_loss(logits, torch.tensor([0, 1]))
    # τ log Σ_j exp((α[j≠y] + s_j − s_y)/τ) with α = τ = 1: y=0 → log(1 + e^-1); y=1 → log(e^3 + 1)
    expected = (math.log(1 + math.exp(-1)) + math.log(math.exp(3) + 1)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    sharp = smooth_top1_svm_loss(logits, torch.tensor([0, 1]), tau=1e-3)  # τ → 0: hinge max(0, 1 + s_j − s_y)
    assert sharp.item() == pytest.approx((0.0 + 3.0) / 2, abs=1e-2)


def test_model_options_are_checked() -> None:
    with pytest.raises(ValueError, match="does not take"):
        build_mil_model(MILConfig("abmil", n_heads=4), 12, 2)
    with pytest.raises(ValueError, match="unknown MIL model"):
        build_mil_model(MILConfig("dsmil"), 12, 2)
    with pytest.raises(ValueError, match="divisible"):
        build_mil_model(MILConfig("transmil", hidden_dim=10, n_heads=4), 12, 2)
    with pytest.raises(ValueError, match="instance_loss"):
        build_mil_model(MILConfig("clam_sb", instance_loss="hinge"), 12, 2)


def test_published_sizes_are_the_defaults() -> None:
    abmil = build_mil_model(MILConfig("abmil"), 384, 2)  # eva: 384 → 128, attention 128, MLP 128 → 64 → 1
    widths = [m.out_features for m in abmil.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [128, 128, 128, 1, 128, 64, 1]
    assert all(m.p == 0.0 for m in abmil.modules() if isinstance(m, torch.nn.Dropout))
    clam = build_mil_model(MILConfig("clam_sb"), 1024, 2)
    assert (clam.project[0].out_features, clam.attention.score.in_features, clam.k_sample) == (512, 256, 8)
    assert clam.project[2].p == 0.25 and clam.instance_loss_weight == 0.3
    transmil = build_mil_model(MILConfig("transmil"), 1024, 2)
    assert (transmil.cls_token.shape[-1], transmil.layer1.n_heads) == (512, 8)


def test_transmil_keeps_the_originals_value_residual_conv() -> None:
    from pathgen.eval.mil_models import TransMIL

    model = TransMIL(16, 2, hidden_dim=32, n_heads=8)
    conv = model.layer1.value_residual
    assert conv.weight.shape == (8, 1, 33, 1) and conv.groups == 8 and conv.bias is None  # 33 taps per head
    assert TransMIL(16, 2, hidden_dim=32, residual_kernel=0).layer1.value_residual is None
    x, mask = torch.randn(1, 5, 16), torch.ones(1, 5, dtype=torch.bool)
    with torch.no_grad():
        before = model(x, mask).logits.clone()
        conv.weight.zero_()
        assert not torch.allclose(before, model(x, mask).logits)  # the residual reaches the output
