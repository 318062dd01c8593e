"""`pathgen bench` end to end on a synthetic PCam with a random-init encoder: report files appear."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pathgen.commands import bench
from pathgen.eval.synth_datasets import write_synthetic_pcam

SUITES = Path(__file__).resolve().parents[3] / "benchmarks" / "suites"


def bench_args(words: list[str]) -> argparse.Namespace:
    """Parse like the CLI does: options to argparse, key=value words to the overrides."""
    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers())
    args, extra = parser.parse_known_args(["bench", *words])
    args.overrides = extra
    return args


def test_bench_writes_json_markdown_and_plots(tmp_path, capsys):
    root = write_synthetic_pcam(tmp_path / "pcam", 96, 32, 32)
    out = tmp_path / "out"
    args = bench_args(
        [
            str(SUITES / "pcam.yaml"),
            "--encoder",
            "random:test_vit",
            "--out",
            str(out),
            f"data.root={root}",
            "device=cpu",
            "num_workers=0",
            "n_boot=50",
            "seeds=[0, 1]",
            "probes.linear.max_steps=40",
            "probes.linear.val_every_steps=10",
            "probes.few_shot.shots=[1, 4]",
            "probes.few_shot.episodes=5",
        ]
    )
    assert args.run(args) == 0
    table = capsys.readouterr().out
    assert "| random:test_vit |" in table and "pcam / linear" in table and "pcam / knn" in table
    assert {"results.json", "results.md", "config.yaml"} <= {p.name for p in out.iterdir()}
    assert list(out.glob("*.png"))
    results = json.loads((out / "results.json").read_text())["results"]
    probes = {r["probe"] for r in results}
    assert {"linear", "logistic", "knn", "few_shot_k1", "few_shot_k4"} <= probes
    assert all(r["encoder"] == "random:test_vit" and r["task"] == "pcam" for r in results)
    logistic = next(r for r in results if r["probe"] == "logistic")
    assert logistic["metrics"]["test"]["balanced_accuracy"]["mean"] > 0.7  # the textures differ a lot


def test_bench_reports_a_config_error(tmp_path, capsys):
    args = bench_args(
        [str(SUITES / "pcam.yaml"), "--encoder", "random:test_vit", "--out", str(tmp_path), "probes.knn.kk=3"]
    )
    assert args.run(args) == 2
    assert "probes.knn: unknown config key kk" in capsys.readouterr().err
