"""The MIL papers' optimisers: Lookahead against hand-computed slow weights, the recipe names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pathgen.eval.mil import MILConfig, train_mil
from pathgen.eval.mil_optim import Lookahead, decay_groups, make_mil_optimizer


def test_lookahead_pulls_slow_weights_every_k_steps() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = Lookahead(torch.optim.SGD([w], lr=0.1), k=2, alpha=0.5)
    for _ in range(2):  # gradient of w² / 2 is w: fast steps 1 → 0.9 → 0.81
        opt.zero_grad()
        (0.5 * w**2).sum().backward()
        opt.step()
    assert w.item() == pytest.approx(1.0 + 0.5 * (0.81 - 1.0))  # slow 1.0 pulled half-way, fast reset to it
    opt.zero_grad()
    (0.5 * w**2).sum().backward()
    opt.step()
    assert w.item() == pytest.approx(0.905 * 0.9)  # an ordinary fast step in between
    with pytest.raises(ValueError, match="k ≥ 1"):
        Lookahead(torch.optim.SGD([w], lr=0.1), k=0)


def test_recipe_optimisers_and_decay_groups() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    groups = decay_groups(model, 1e-5)
    assert [len(g["params"]) for g in groups] == [1, 3] and groups[1]["weight_decay"] == 0.0  # only the 2-D weight
    radam = make_mil_optimizer(model, "radam_lookahead", 2e-4, 1e-5)
    assert isinstance(radam, Lookahead) and isinstance(radam.inner, torch.optim.RAdam) and radam.k == 6
    assert type(make_mil_optimizer(model, "adam", 1e-4, 1e-5)) is torch.optim.Adam
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_mil_optimizer(model, "lamb", 1e-4, 0.0)


@pytest.mark.parametrize("optimizer", ["adam", "radam_lookahead"])
def test_paper_recipes_train_and_select_on_validation_loss(optimizer: str) -> None:
    rng = np.random.default_rng(0)
    bags = [rng.normal(size=(6, 8)).astype(np.float32) + (i % 2) for i in range(12)]
    y = np.arange(12) % 2
    cfg = MILConfig(
        model="clam_sb" if optimizer == "adam" else "transmil",
        optimizer=optimizer,
        lr=1e-3,
        batch_size=1,
        max_epochs=3,
        monitor="loss",
        patience=None,
        hidden_dim=16,
        n_heads=2 if optimizer != "adam" else None,
        attention_dim=8 if optimizer == "adam" else None,
    )
    result = train_mil(bags[:8], y[:8], bags[8:], y[8:], bags[8:], y[8:], cfg)
    history = result.extra["val_history"]
    assert len(history) == 3 and all(h["val_loss"] > 0 for h in history)  # validation loss, positive
    assert result.selected["step"] == min(history, key=lambda h: h["val_loss"])["step"]
