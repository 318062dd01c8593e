"""run_probe summaries (mean ± sd over seeds, pooled bootstrap CI) and the report files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from eval_features import clustered, linear_signal, splits
from pathgen.eval.few_shot import FewShotConfig
from pathgen.eval.probes import LinearProbeConfig, add_bootstrap_ci, knn_probe, run_probe
from pathgen.eval.report import format_cell, markdown_table, write_report

LINEAR = LinearProbeConfig(lr=1e-2, max_steps=200, val_every_steps=50, patience=None)


@pytest.fixture(scope="module")
def results() -> list[dict]:
    """Two encoders (a good and a poor one) × two tasks × probes, as `pathgen bench` would collect."""
    out = []
    for encoder, noise in (("good-encoder", 0.2), ("poor-encoder", 1.5)):
        binary = splits(linear_signal(n_classes=2, noise=noise))
        for summary in run_probe("linear", *binary, cfg=LINEAR, seeds=(0, 1, 2), n_boot=40):
            out.append({"encoder": encoder, "task": "planted-binary", **summary})
        for summary in run_probe("knn", *binary, n_boot=40):
            out.append({"encoder": encoder, "task": "planted-binary", **summary})
        three = clustered(n_classes=3, clusters_per_class=1, spread=1.0 + 2 * noise)
        for summary in run_probe("few_shot", *splits(three), cfg=FewShotConfig(shots=(4,), episodes=10)):
            out.append({"encoder": encoder, "task": "clusters-3", **summary})
    return out


def test_run_probe_summarises_seeds_with_a_pooled_interval(results) -> None:
    linear = results[0]
    stats = linear["metrics"]["test"]["balanced_accuracy"]
    assert linear["runs"] == 3 and linear["seeds"] == [0, 1, 2] and len(stats["values"]) == 3
    assert stats["mean"] == pytest.approx(np.mean(stats["values"]))
    assert stats["sd"] == pytest.approx(np.std(stats["values"], ddof=1))
    low, high = linear["ci"]["test"]["balanced_accuracy"]
    assert low <= stats["mean"] <= high  # the interval is around the seed mean
    assert linear["config"]["max_steps"] == 200 and len(linear["selected"]) == 3
    assert len(linear["roc"]["fpr"]) == len(linear["roc"]["tpr"]) <= 400
    knn = results[1]
    assert knn["runs"] == 1 and knn["metrics"]["test"]["auroc"]["sd"] == 0.0  # deterministic: one run


def test_add_bootstrap_ci_fills_the_test_intervals() -> None:
    data = linear_signal()
    result = add_bootstrap_ci(knn_probe(*splits(data)), data["test"][1], n_boot=50)
    for name, (low, high) in result.ci["test"].items():
        assert low <= result.metrics["test"][name] <= high
    assert "test_scores" not in result.to_dict() and result.to_dict()["ci"]["test"]


def test_run_probe_rejects_unknown_probes_and_wrong_configs() -> None:
    data = splits(linear_signal())
    with pytest.raises(ValueError, match="unknown probe 'svm'"):
        run_probe("svm", *data)
    with pytest.raises(TypeError, match="LinearProbeConfig"):
        run_probe("linear", *data, cfg=FewShotConfig())


def test_cell_format() -> None:
    result = {
        "metrics": {"test": {"auroc": {"mean": 0.91234, "sd": 0.00412}}},
        "ci": {"test": {"auroc": [0.9012, 0.9234]}},
    }
    assert format_cell(result, "auroc") == "0.912 ± 0.004 [0.90, 0.92]"
    assert format_cell(result, "macro_f1") == "—"


def test_report_writes_json_markdown_and_plots(results, tmp_path) -> None:
    paths = write_report(results, tmp_path, metadata={"suite": "synthetic"})
    document = json.loads(paths["json"].read_text())
    assert document["metadata"] == {"suite": "synthetic"} and len(document["results"]) == len(results)
    assert document["results"][0]["metrics"]["test"]["balanced_accuracy"]["values"] == pytest.approx(
        results[0]["metrics"]["test"]["balanced_accuracy"]["values"]
    )
    table = paths["markdown"].read_text().splitlines()
    assert table[2] == "| encoder | planted-binary / linear | planted-binary / knn | clusters-3 / few_shot_k4 |"
    assert table[4].startswith("| good-encoder | ") and table[5].startswith("| poor-encoder | ")
    assert table[4].count(" ± ") == 3 and table[4].count("[") == 3
    assert [p.name for p in paths["bars"]] == ["bars_planted-binary.png", "bars_clusters-3.png"]
    assert [p.name for p in paths["roc"]] == ["roc_planted-binary.png"]  # ROC only for binary tasks
    for path in paths["bars"] + paths["roc"]:
        with Image.open(path) as image:
            assert image.size[0] > 300 and image.size[1] > 300


def test_markdown_marks_missing_cells() -> None:
    base = {"probe": "knn", "metrics": {"test": {"balanced_accuracy": {"mean": 0.8, "sd": 0.0}}}}
    table = markdown_table([{"encoder": "a", "task": "t1", **base}, {"encoder": "b", "task": "t2", **base}])
    assert "| a | 0.800 ± 0.000 | — |" in table and "| b | — | 0.800 ± 0.000 |" in table
