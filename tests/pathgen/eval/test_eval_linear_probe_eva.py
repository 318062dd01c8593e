"""The linear probe's eva options: monitored metric, SGD, and eva's per-epoch LR schedules."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from eval_features import linear_signal, splits

from pathgen.eval.linear_probe import LinearProbeConfig, linear_probe, make_optimizer
from pathgen.eval.metrics import balanced_accuracy

QUICK = LinearProbeConfig(lr=1e-2, max_steps=400, val_every_steps=20, patience=None)


def imbalanced_shift(seed: int = 2, dim: int = 8) -> tuple:
    """5 % positives in train, 10 % in val/test, one weakly shifted feature.

    The head first separates the classes a little (balanced accuracy peaks early), then its bias
    drifts towards "always negative" (accuracy keeps rising towards the 90 % majority), so the
    two metrics pick different validation checks.
    """
    rng = np.random.default_rng(seed)

    def draw(n: int, positive_share: float) -> tuple[np.ndarray, np.ndarray]:
        y = (rng.random(n) < positive_share).astype(np.int64)
        y[:2] = [0, 1]
        x = rng.normal(size=(n, dim)).astype(np.float32)
        x[:, 0] += 2 * y - 1
        return x, y

    return draw(600, 0.05), draw(400, 0.1), draw(200, 0.1)


def test_accuracy_monitor_selects_the_check_with_the_best_accuracy() -> None:
    train, val, test = imbalanced_shift()
    cfg = LinearProbeConfig(lr=3e-2, batch_size=100, max_steps=100, val_every_steps=5, patience=None)
    by_acc = linear_probe(*train, *val, *test, dataclasses.replace(cfg, monitor="accuracy"), seed=2)
    by_bacc = linear_probe(*train, *val, *test, cfg, seed=2)
    # patience off: both runs take the same steps, so their histories cover the same checks
    steps = [h["step"] for h in by_acc.extra["val_history"]]
    assert steps == [h["step"] for h in by_bacc.extra["val_history"]] == list(range(5, 101, 5))
    acc = [h["val_accuracy"] for h in by_acc.extra["val_history"]]
    bacc = [h["val_balanced_accuracy"] for h in by_bacc.extra["val_history"]]
    best_acc, best_bacc = steps[int(np.argmax(acc))], steps[int(np.argmax(bacc))]  # first maxima
    assert best_acc != best_bacc  # the case where the two metrics disagree
    assert (by_acc.selected["step"], by_bacc.selected["step"]) == (best_acc, best_bacc)
    assert by_acc.metrics["val"]["accuracy"] == pytest.approx(max(acc))
    assert by_bacc.metrics["val"]["balanced_accuracy"] == pytest.approx(max(bacc))
    assert by_acc.metrics["val"]["balanced_accuracy"] < by_bacc.metrics["val"]["balanced_accuracy"]


def test_accuracy_monitor_drives_early_stopping() -> None:
    train, val, test = imbalanced_shift()
    cfg = LinearProbeConfig(lr=3e-2, batch_size=100, max_steps=100, val_every_steps=5, patience=2, monitor="accuracy")
    result = linear_probe(*train, *val, *test, cfg, seed=2)
    acc = [h["val_accuracy"] for h in result.extra["val_history"]]
    best = int(np.argmax(acc))
    assert len(acc) - 1 - best == 2  # stopped two checks without a strictly better accuracy
    assert result.extra["stopped_step"] == result.selected["step"] + 2 * 5


def test_sgd_with_momentum_trains() -> None:
    data = linear_signal(n_classes=4)
    sgd = dataclasses.replace(QUICK, optimizer="sgd", lr=0.05, momentum=0.9)
    optimizer = make_optimizer(torch.nn.Linear(2, 4).parameters(), sgd)
    assert isinstance(optimizer, torch.optim.SGD)
    assert (optimizer.param_groups[0]["momentum"], optimizer.param_groups[0]["weight_decay"]) == (0.9, 0)
    result = linear_probe(*splits(data), sgd)
    oracle = balanced_accuracy(data["test"][1], data["oracle"])  # 0.80: the labels are noisy
    assert result.metrics["test"]["balanced_accuracy"] >= oracle - 0.03
    no_momentum = linear_probe(*splits(data), dataclasses.replace(sgd, momentum=0.0))
    assert not np.array_equal(result.test_scores, no_momentum.test_scores)


def test_eva_default_schedule_is_a_third_of_the_lr_for_five_epochs() -> None:
    data = linear_signal()
    small = [data[s] for s in ("train", "val", "test")]
    small[0] = (small[0][0][:300], small[0][1][:300])  # 3 steps per epoch at batch 100
    cfg = LinearProbeConfig(
        lr=0.03,
        batch_size=100,
        max_steps=24,
        val_every_steps=3,
        patience=None,
        lr_schedule="eva_default",
        lr_schedule_interval="epoch",
    )
    result = linear_probe(*small[0], *small[1], *small[2], cfg)
    lrs = [h["lr"] for h in result.extra["val_history"]]  # the lr of epochs 1..8
    assert lrs == pytest.approx([0.01] * 5 + [0.03] * 3)
    per_step = linear_probe(*small[0], *small[1], *small[2], dataclasses.replace(cfg, lr_schedule_interval="step"))
    assert [h["lr"] for h in per_step.extra["val_history"]] == pytest.approx([0.01] + [0.03] * 7)


def test_cosine_per_epoch_keeps_t_max_in_steps_as_eva_does() -> None:
    data = linear_signal()
    small = [data[s] for s in ("train", "val", "test")]
    small[0] = (small[0][0][:300], small[0][1][:300])
    cfg = LinearProbeConfig(
        lr=0.03,
        batch_size=100,
        max_steps=30,
        val_every_steps=3,
        patience=None,
        lr_schedule="cosine",
        lr_schedule_interval="epoch",
    )
    result = linear_probe(*small[0], *small[1], *small[2], cfg)
    epochs_done = range(10)  # before epoch k + 1 the scheduler has stepped k times, out of T_max = 30
    expected = [0.03 * 0.5 * (1 + math.cos(math.pi * k / 30)) for k in epochs_done]
    assert [h["lr"] for h in result.extra["val_history"]] == pytest.approx(expected)
    per_step = linear_probe(*small[0], *small[1], *small[2], dataclasses.replace(cfg, lr_schedule_interval="step"))
    expected = [0.03 * 0.5 * (1 + math.cos(math.pi * (s - 1) / 30)) for s in range(3, 31, 3)]
    assert [h["lr"] for h in per_step.extra["val_history"]] == pytest.approx(expected)


@pytest.mark.parametrize(
    "field, value",
    [("optimizer", "adam"), ("monitor", "loss"), ("lr_schedule_interval", "batch"), ("lr_schedule", "step")],
)
def test_unknown_options_are_errors_naming_the_field(field, value) -> None:
    with pytest.raises(ValueError, match=f"LinearProbeConfig.{field}"):
        linear_probe(*splits(linear_signal()), dataclasses.replace(QUICK, **{field: value}))
