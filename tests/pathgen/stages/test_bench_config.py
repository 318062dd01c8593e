"""Every shipped task and suite YAML builds its typed config; bad keys fail naming the key."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pathgen.config import ConfigError
from pathgen.eval.mil import MILConfig
from pathgen.stages.bench import load_tasks

SUITES = Path(__file__).resolve().parents[3] / "benchmarks" / "suites"


@pytest.mark.parametrize("path", sorted(SUITES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_suite_yaml_loads(path):
    tasks = load_tasks(path)
    assert tasks and all(t.name for t in tasks)
    for task in tasks:
        assert task.probes.selected() if task.level == "patch" else task.mil_configs()


def test_pcam_is_evas_linear_recipe_and_camelyon16_small_caps_patches():
    (pcam,) = load_tasks(SUITES / "pcam.yaml")
    linear = pcam.probes.selected()["linear"]
    assert (linear.lr, linear.batch_size, linear.max_steps) == (3e-4, 256, 12500)
    assert pcam.seeds == [0, 1, 2, 3, 4]
    (small,) = load_tasks(SUITES / "camelyon16_small.yaml")
    abmil = small.mil_configs()["abmil"]
    assert abmil == MILConfig.eva_camelyon16_small()
    assert (small.tiling.target_mpp, small.tiling.tile_size_px, len(small.seeds)) == (0.25, 224, 20)


# eva's offline linear probes (kaiko-ai/eva configs/vision/pathology/offline/classification/):
# (task, eva commit): optimizer, lr schedule (+ per-epoch stepping), monitor, patience in epochs,
# and eva's training-set size, whose epoch (batch 256) sets val_every_steps.
EVA_LINEAR = {
    "pcam": ("adamw", "eva_default", "balanced_accuracy", 3, 262_144),  # c36237c7 (docs/benchmarks/eva.md)
    "crc": ("adamw", "eva_default", "balanced_accuracy", 7, 100_000),  # 0fa9bce6
    "mhist": ("adamw", "cosine", "balanced_accuracy", 70, 2_175),  # 2fea425c
    "bach": ("adamw", "cosine", "balanced_accuracy", 400, 268),  # 2fea425c
}


@pytest.mark.parametrize("name", sorted(EVA_LINEAR))
def test_patch_suites_carry_evas_linear_probe(name):
    (task,) = load_tasks(SUITES / f"{name}.yaml")
    linear = task.probes.selected()["linear"]
    optimizer, schedule, monitor, patience, n_train = EVA_LINEAR[name]
    assert (linear.optimizer, linear.lr, linear.weight_decay) == (optimizer, 3e-4, None)
    assert (linear.lr_schedule, linear.lr_schedule_interval) == (schedule, "epoch")
    assert (linear.monitor, linear.patience) == (monitor, patience)
    assert (linear.batch_size, linear.max_steps) == (256, 12_500)
    assert linear.val_every_steps == math.ceil(n_train / linear.batch_size)
    assert task.seeds == [0, 1, 2, 3, 4]
    # eva's splits: selection (and, without a test split, the report) on eva's val
    assert task.data.options.get("protocol", "eva") == "eva"


def test_overrides_reach_all_tasks_or_one_task():
    tasks = load_tasks(SUITES / "patch_suite.yaml", ["device=cuda", "crc.data.root=/x/crc"])
    assert {t.device for t in tasks} == {"cuda"}
    roots = {t.name: t.data.root for t in tasks}
    assert roots["crc"] == "/x/crc" and roots["pcam"] == "/data/pcam"


def test_unknown_keys_are_errors_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="probes.linear: unknown config key lr_typo"):
        load_tasks(SUITES / "pcam.yaml", ["probes.linear.lr_typo=1"])
    with pytest.raises(ConfigError, match="mil.abmil: unknown config key hiden_dim"):
        load_tasks(SUITES / "camelyon16_small.yaml", ["mil.abmil.hiden_dim=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nlevel: slide\ndata: {dataset: pcam}\nprobes: {knn: {}}\n")
    with pytest.raises(ConfigError, match="does not fit level"):
        load_tasks(bad)
