"""eva's linear probe: checkpoint selection, patience in validation checks, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from eval_features import linear_signal, random_labels, splits

from pathgen.eval.head_training import CheckpointSelector
from pathgen.eval.linear_probe import LinearProbeConfig, linear_probe, make_optimizer
from pathgen.eval.metrics import balanced_accuracy

QUICK = LinearProbeConfig(lr=1e-2, max_steps=400, val_every_steps=20, patience=None)


def test_selector_keeps_the_first_best_and_counts_checks_without_improvement() -> None:
    head = torch.nn.Linear(2, 1)
    selector = CheckpointSelector(patience=3)
    scores = [0.5, 0.7, 0.6, 0.7, 0.65, 0.9]  # a tie (0.7) is no improvement, as in Lightning
    stops = [selector.update(10 * (i + 1), s, head) for i, s in enumerate(scores)]
    assert stops == [False, False, False, False, True, False]
    assert (selector.best_step, selector.best_score) == (60, 0.9)
    never = CheckpointSelector(patience=None)
    assert not any(never.update(i, 0.5, head) for i in range(1, 50))
    assert never.best_step == 1


def test_the_head_kept_is_the_best_validation_check() -> None:
    data = linear_signal(n_classes=2, noise=1.0)  # noisy labels: validation goes up and down
    result = linear_probe(*splits(data), QUICK)
    history = result.extra["val_history"]
    scores = [h["val_balanced_accuracy"] for h in history]
    assert [h["step"] for h in history] == list(range(20, 401, 20))
    best = int(np.argmax(scores))  # first maximum
    assert result.selected["step"] == history[best]["step"]
    assert result.metrics["val"]["balanced_accuracy"] == pytest.approx(scores[best])
    # the test scores come from that same head: its val metric is the best, not the last
    assert result.metrics["test"]["balanced_accuracy"] == pytest.approx(
        balanced_accuracy(data["test"][1], result.test_scores)
    )


def test_patience_counts_validation_checks_not_epochs() -> None:
    # 300 training rows = 2 steps per epoch: eva's epoch-based patience of 3 would stop by step ~8
    data = random_labels(n_classes=2)
    small = [data[s] for s in ("train", "val", "test")]
    small[0] = (small[0][0][:300], small[0][1][:300])
    cfg = LinearProbeConfig(max_steps=5000, val_every_steps=50, patience=3)
    result = linear_probe(*small[0], *small[1], *small[2], cfg)
    stopped, best = result.extra["stopped_step"], result.selected["step"]
    assert stopped == best + 3 * 50  # three checks without improvement after the best one
    assert len(result.extra["val_history"]) == stopped // 50
    assert stopped < 5000


def test_validation_runs_after_the_last_step_too() -> None:
    cfg = dataclasses.replace(QUICK, max_steps=90, val_every_steps=40)
    result = linear_probe(*splits(linear_signal()), cfg)
    assert [h["step"] for h in result.extra["val_history"]] == [40, 80, 90]


def test_same_seed_same_result_other_seed_other_result() -> None:
    data = linear_signal(n_classes=4)
    cfg = dataclasses.replace(QUICK, max_steps=100)
    first = linear_probe(*splits(data), cfg, seed=7)
    again = linear_probe(*splits(data), cfg, seed=7)
    other = linear_probe(*splits(data), cfg, seed=8)
    np.testing.assert_array_equal(first.test_scores, again.test_scores)
    assert first.extra["val_history"] == again.extra["val_history"]
    assert not np.array_equal(first.test_scores, other.test_scores)


def test_global_rng_and_thread_count_are_left_alone() -> None:
    threads = torch.get_num_threads()
    state = torch.get_rng_state()
    linear_probe(*splits(linear_signal()), dataclasses.replace(QUICK, max_steps=20, cpu_threads=1))
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), state)


def test_cosine_schedule_runs_and_unknown_schedule_is_an_error() -> None:
    data = linear_signal()
    cosine = linear_probe(*splits(data), dataclasses.replace(QUICK, lr_schedule="cosine"))
    assert cosine.metrics["test"]["balanced_accuracy"] > 0.85
    with pytest.raises(ValueError, match="lr_schedule"):
        linear_probe(*splits(data), dataclasses.replace(QUICK, lr_schedule="step"))


def test_defaults_are_evas_pcam_recipe() -> None:
    cfg = LinearProbeConfig()
    assert (cfg.lr, cfg.optimizer, cfg.batch_size, cfg.max_steps) == (3e-4, "adamw", 256, 12_500)
    assert (cfg.lr_schedule, cfg.lr_schedule_interval, cfg.val_every_steps) == ("constant", "step", 1024)
    assert (cfg.monitor, cfg.patience, cfg.standardize) == ("balanced_accuracy", 3, False)
    optimizer = make_optimizer(torch.nn.Linear(2, 1).parameters(), cfg)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["weight_decay"] == 0.01


def _offset_and_shrunk(data: dict, offset: float = 8.0, scale: float = 0.1) -> dict:
    """The same features as a tiny encoder's look: every row shares one large offset, the variation is small."""
    direction = np.ones(data["train"][0].shape[1], dtype=np.float32)
    return {name: (offset * direction + scale * data[name][0], data[name][1]) for name in ("train", "val", "test")}


def test_standardize_equals_training_on_train_standardized_features() -> None:
    data = _offset_and_shrunk(linear_signal(n_classes=3))
    mean, sd = data["train"][0].mean(0), data["train"][0].std(0)
    by_hand = {name: ((x - mean) / sd, y) for name, (x, y) in data.items()}
    inside = linear_probe(*splits(data), dataclasses.replace(QUICK, standardize=True))
    outside = linear_probe(*splits(by_hand), QUICK)
    np.testing.assert_allclose(inside.test_scores, outside.test_scores, atol=1e-5)
    assert inside.selected == outside.selected


def test_standardize_rescues_an_offset_ill_conditioned_embedding() -> None:
    data = _offset_and_shrunk(linear_signal(n_classes=2, noise=0.0))
    short = dataclasses.replace(QUICK, max_steps=200)  # measured: raw 0.50, standardized 0.93
    raw = linear_probe(*splits(data), short).metrics["test"]["balanced_accuracy"]
    standardized = linear_probe(*splits(data), dataclasses.replace(short, standardize=True))
    assert raw < 0.7 < 0.9 < standardized.metrics["test"]["balanced_accuracy"], raw


@pytest.mark.slow
def test_evas_full_recipe_recovers_a_planted_signal() -> None:
    data = linear_signal(n_classes=2)
    oracle = balanced_accuracy(data["test"][1], data["oracle"])
    result = linear_probe(*splits(data), LinearProbeConfig())
    assert result.metrics["test"]["balanced_accuracy"] >= oracle - 0.03
