"""run_probe summaries (mean ± sd over seeds, pooled bootstrap CI) and the report files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_features import clustered, linear_signal, splits
from PIL import Image

from pathgen.eval.few_shot import FewShotConfig
from pathgen.eval.probes import LinearProbeConfig, add_bootstrap_ci, knn_probe, run_probe
from pathgen.eval.report import format_cell, load_results, markdown_table, results_markdown, write_report

LINEAR = LinearProbeConfig(lr=1e-2, max_steps=200, val_every_steps=50, patience=None)


@pytest.fixture(scope="module")
def results() -> list[dict]:
    """Two encoders (a good and a poor one) × two tasks × probes, as `pathgen bench` would collect."""
    out = []
    clean = linear_signal(n_classes=2, noise=0.2)
    rng = np.random.default_rng(7)
    for encoder, noise in (("good-encoder", 0.2), ("poor-encoder", 1.5)):
        # the same samples and labels seen by two encoders; the poor one's features are blurred by noise
        blur = 0.0 if encoder == "good-encoder" else 1.5
        binary = splits(
            {
                k: (clean[k][0] + blur * rng.normal(size=clean[k][0].shape).astype(np.float32), clean[k][1])
                for k in ("train", "val", "test")
            }
        )
        for summary in run_probe("linear", *binary, cfg=LINEAR, seeds=(0, 1, 2), n_boot=40):
            out.append({"encoder": encoder, "task": "planted-binary", **summary})
        for summary in run_probe("knn", *binary, n_boot=40):
            out.append({"encoder": encoder, "task": "planted-binary", **summary})
        three = clustered(n_classes=3, clusters_per_class=1, spread=1.0 + 2 * noise)
        for summary in run_probe("few_shot", *splits(three), cfg=FewShotConfig(shots=(4,), episodes=10)):
            out.append({"encoder": encoder, "task": "clusters-3", **summary})
    return out


def test_run_probe_summarises_seeds_with_a_two_level_interval(results) -> None:
    linear = results[0]
    stats = linear["metrics"]["test"]["balanced_accuracy"]
    assert linear["runs"] == 3 and linear["seeds"] == [0, 1, 2] and len(stats["values"]) == 3
    assert stats["mean"] == pytest.approx(np.mean(stats["values"]))
    assert stats["sd"] == pytest.approx(np.std(stats["values"], ddof=1))
    low, high = linear["ci"]["test"]["balanced_accuracy"]
    assert low <= stats["mean"] <= high  # the interval is around the seed mean
    assert "seeds (runs) with replacement" in linear["ci_method"]
    assert linear["config"]["max_steps"] == 200 and len(linear["selected"]) == 3
    assert linear["roc"]["runs"] == 3 and len(linear["roc"]["fpr"]) == len(linear["roc"]["tpr_sd"])
    assert linear["test_scores"].shape == (3, len(linear["test_labels"]), 2)
    knn = results[1]
    assert knn["runs"] == 1 and knn["metrics"]["test"]["auroc"]["sd"] is None  # deterministic: one run
    assert "one deterministic run" in knn["ci_method"]


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
        "runs": 5,
        "metrics": {"test": {"auroc": {"mean": 0.91234, "sd": 0.00412}, "binary_f1": {"mean": float("nan")}}},
        "ci": {"test": {"auroc": [0.9012, 0.9234]}},
    }
    assert format_cell(result, "auroc") == "0.912 ± 0.004 [0.90, 0.92]"
    assert format_cell(result, "macro_f1") == "—"
    assert format_cell(result, "binary_f1") == "n/a"
    one_run = {
        "runs": 1,
        "metrics": {"test": {"auroc": {"mean": 0.91234, "sd": None}}},
        "ci": {"test": {"auroc": [0.9012, 0.9234]}},
    }
    assert format_cell(one_run, "auroc") == "0.912 (1 run) [0.90, 0.92]"  # never "± 0.000"


def test_report_writes_json_scores_markdown_and_figures(results, tmp_path) -> None:
    paths = write_report(
        results, tmp_path, metadata={"suite": "synthetic", "data": {"planted": {"test": "abc"}}}, n_boot=50
    )
    document = json.loads(paths["json"].read_text())
    assert document["metadata"]["suite"] == "synthetic" and len(document["results"]) == len(results)
    assert document["environment"]["versions"]["numpy"] == np.__version__
    assert "test_scores" not in document["results"][0] and document["results"][0]["scores_key"] == 0
    assert document["results"][0]["metrics"]["test"]["balanced_accuracy"]["values"] == pytest.approx(
        results[0]["metrics"]["test"]["balanced_accuracy"]["values"]
    )
    reloaded = load_results(paths["json"])
    np.testing.assert_array_equal(reloaded[0]["test_scores"], results[0]["test_scores"])
    text = paths["markdown"].read_text()
    assert "- git commit: " in text and "numpy " + np.__version__ in text and "- data planted: test abc" in text
    for title in (
        "## Balanced accuracy",
        "## AUROC",
        "## F1 of the positive class",
        "## Macro-F1",
        "## Few-shot (SimpleShot)",
        "## Encoder comparison",
    ):
        assert title in text
    assert "| encoder | planted-binary / linear (test) | planted-binary / knn (test) |" in text
    assert "clusters-3 / few_shot_k4 (test)" in text.split("## Few-shot")[1]  # few-shot in its own table only
    assert "clusters-3 / few_shot_k4" not in text.split("## Few-shot")[0]
    good_row = next(line for line in text.splitlines() if line.startswith("| good-encoder | "))
    assert " ± " in good_row and "(1 run)" in good_row  # linear over seeds, kNN one run
    assert "| planted-binary / linear (test) | auroc | poor-encoder − good-encoder |" in text
    linear_auc = next(r for r in paths["comparisons"] if r["probe"] == "linear" and r["metric"] == "auroc")
    assert linear_auc["delta"] < 0 and linear_auc["high"] < 0 and linear_auc["p"] < 0.05  # poor < good, shown
    assert linear_auc["delong"]["p"] < 0.05
    assert [p.name for p in paths["bars"]] == ["bars_planted-binary.png", "fewshot_clusters-3.png"]
    assert [p.name for p in paths["roc"]] == ["roc_planted-binary.png"]  # ROC only for binary tasks
    for path in paths["bars"] + paths["roc"]:
        assert path.with_suffix(".svg").stat().st_size > 0 and path.with_suffix(".pdf").stat().st_size > 0
        with Image.open(path) as image:
            assert image.size[0] > 300 and image.size[1] > 300


def test_roc_legend_is_the_area_of_the_mean_curve_drawn(results) -> None:
    roc = results[0]["roc"]
    assert roc["auroc_of_curve"] == pytest.approx(np.trapezoid(roc["tpr"], roc["fpr"]))
    mean_auc = results[0]["metrics"]["test"]["auroc"]["mean"]
    assert roc["auroc_of_curve"] == pytest.approx(mean_auc, abs=0.01)  # vertical averaging ≈ mean AUROC


def test_report_split_val_is_named_as_the_selection_split() -> None:
    base = {
        "probe": "knn",
        "runs": 1,
        "report_split": "val",
        "metrics": {"test": {"balanced_accuracy": {"mean": 0.8, "sd": None}}},
    }
    table = markdown_table([{"encoder": "a", "task": "crc", **base}])
    assert "| encoder | crc / knn (val (selection split)) |" in table and "| a | 0.800 (1 run) |" in table


def test_per_class_recall_table_for_multiclass_tasks() -> None:
    result = {
        "encoder": "a",
        "task": "crc",
        "probe": "linear",
        "runs": 2,
        "n_classes": 3,
        "class_names": ["ADI", "BACK", "TUM"],
        "per_class_recall": {"test": {"mean": [1.0, 0.5, 0.25], "sd": [0.0, 0.1, 0.2]}},
        "metrics": {"test": {"balanced_accuracy": {"mean": 0.583, "sd": 0.01}}},
    }
    text = results_markdown([result])
    assert "| encoder | ADI | BACK | TUM |" in text and "| a | 1.000 ± 0.000 | 0.500 ± 0.100 | 0.250 ± 0.200 |" in text


def test_markdown_marks_missing_cells() -> None:
    base = {"probe": "knn", "runs": 1, "metrics": {"test": {"balanced_accuracy": {"mean": 0.8, "sd": None}}}}
    table = markdown_table([{"encoder": "a", "task": "t1", **base}, {"encoder": "b", "task": "t2", **base}])
    assert "| a | 0.800 (1 run) | — |" in table and "| b | — | 0.800 (1 run) |" in table
