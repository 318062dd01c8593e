"""Every shipped task and suite YAML builds its typed config; bad keys fail naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pathgen.config import ConfigError
from pathgen.eval.bench import load_tasks
from pathgen.eval.mil import MILConfig

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
