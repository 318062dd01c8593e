"""The Gen-SIS report's reading of bench results: when a difference is called, and how it is said."""

from __future__ import annotations

import pytest

from pathgen.stages.gensis_report import comparison_rows, comparison_table, learned_sentence, summary_sentence, verdict


def result(encoder: str, values: list[float], ci: list[float], probe: str = "abmil") -> dict:
    mean = sum(values) / len(values)
    return {
        "encoder": encoder,
        "task": "c16",
        "probe": probe,
        "n_test": 8,
        "ci": {"test": {"auroc": ci}},
        "metrics": {"test": {"auroc": {"mean": mean, "sd": 0.0, "values": values}}},
    }


@pytest.mark.parametrize(
    "base, other, expected",
    [
        (([0.70, 0.72], [0.68, 0.74]), ([0.90, 0.92], [0.88, 0.94]), "higher"),
        (([0.90, 0.92], [0.88, 0.94]), ([0.70, 0.72], [0.68, 0.74]), "lower"),
        (([0.70, 0.80], [0.68, 0.82]), ([0.78, 0.90], [0.80, 0.92]), "within"),  # intervals overlap
        # a head that is perfect at one seed and constant at two scores 0.67 on every resample: the bootstrap
        # intervals are disjoint, but the seeds overlap, so nothing is called
        (([1.0, 0.5, 0.5], [0.67, 0.67]), ([1.0, 1.0, 0.75], [0.88, 1.0]), "within"),
    ],
)
def test_a_difference_needs_disjoint_intervals_and_seed_ranges(base, other, expected):
    assert verdict(result("b", *base), result("g", *other), "auroc") == expected


def test_missing_intervals_are_said_not_judged():
    assert verdict(None, result("g", [0.5], [0.4, 0.6]), "auroc") == "none"


def test_table_and_sentences_name_what_they_find():
    results = [
        result("baseline", [0.70, 0.72], [0.68, 0.74]),
        result("gensis", [0.90, 0.92], [0.88, 0.94]),
        result("init", [0.71, 0.73], [0.69, 0.75]),
    ]
    rows = comparison_rows(results, ["baseline", "gensis", "init"], "baseline")
    assert len(rows) == 1 and rows[0]["delta"]["gensis"] == pytest.approx(0.2)
    table = comparison_table(rows, ["baseline", "gensis", "init"], "baseline", {"gensis": "Gen-SIS"})
    assert "| c16 / abmil | auroc | 8 |" in table and "above the baseline (disjoint)" in table
    assert "c16 / abmil auroc +0.200 (above)" in summary_sentence(rows, "gensis", "Gen-SIS")
    assert "not above its own initial weights" in learned_sentence(rows)
    same = comparison_rows(
        results[:1] + [result("gensis", [0.71, 0.72], [0.69, 0.75])], ["baseline", "gensis"], "baseline"
    )
    assert summary_sentence(same, "gensis", "Gen-SIS").startswith("**No difference shown.**")


def test_gensis_report_has_the_paired_comparison_table() -> None:
    import numpy as np

    from pathgen.eval.compare import compare_results
    from pathgen.stages.gensis_report import paired_section

    y = np.arange(100) % 2
    rng = np.random.default_rng(0)

    def scored(encoder: str, signal: float) -> dict:
        p = 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(size=(2, len(y))))))
        return {
            "encoder": encoder,
            "task": "pcam",
            "probe": "linear",
            "ci_method": "two-level",
            "test_scores": np.stack([1 - p, p], axis=-1),
            "test_labels": y,
        }

    lines = paired_section(compare_results([scored("baseline", 0.5), scored("gensis", 2.0)], "baseline", n_boot=50))
    text = "\n".join(lines)
    assert (
        "### Paired comparison with the baseline" in text
        and "| pcam / linear (test) | auroc | gensis − baseline |" in text
    )
    assert paired_section([]) == []
