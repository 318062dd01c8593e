"""benchmarks/perf/generation_speed.py runs end to end at the tiniest settings (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "perf" / "generation_speed.py"
TINY = [
    "--device",
    "cpu",
    "--batch-size",
    "4",
    "--warmup",
    "0",
    "--steps",
    "1",
    "--repeats",
    "1",
    "--sources",
    "4",
    "--views",
    "2",
    "--sample-batch",
    "8",
    "--ddim-steps",
    "3",
    "--dpm-steps",
    "2",
    "--reference-steps",
    "4",
    "--sample-repeats",
    "1",
]


@pytest.fixture(scope="module")
def script():
    """The script as a module (benchmarks/ is not a package); torch's thread count restored after."""
    spec = importlib.util.spec_from_file_location("generation_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    before = torch.get_num_threads()
    yield module
    torch.set_num_threads(before)
    del sys.modules[spec.name]


@pytest.fixture(scope="module")
def built(script, tmp_path_factory) -> tuple[Path, dict]:
    """One tiny self-built run: a 2048-px synthetic slide, 2 VAE and 2 LDM steps; (work folder, JSON results)."""
    root = tmp_path_factory.mktemp("generation_speed")
    out = root / "results.json"
    script.main(
        [
            *TINY,
            "--work",
            str(root / "work"),
            "--slides",
            "1",
            "--slide-px",
            "2048",
            "--vae-steps",
            "2",
            "--ldm-steps",
            "2",
            "--out",
            str(out),
        ]
    )
    return root / "work", json.loads(out.read_text())


def test_builds_a_model_and_reports_training_and_sampling(built, capsys):
    work, results = built
    assert (work / "ldm" / "model" / "config.json").is_file()
    assert set(results["build_seconds"]) == {"slides_and_tiles", "vae", "ldm"}
    training = results["training"]
    assert [(r["mode"], r["step"].split()[0]) for r in training] == [("fp32", "denoiser"), ("fp32", "LDM")]
    assert all(r["batch"] == 4 and r["seconds"] > 0 and r["images_per_s"] > 0 for r in training)
    sampling = results["sampling"]
    assert [(r["sampler"], r["steps"], r["nfe"]) for r in sampling] == [("ddim", 3, 6), ("dpm++", 2, 4), ("ddim", 4, 8)]
    for row in sampling:
        assert row["images"] == 8 and row["images_per_s"] > 0
        assert math.isfinite(row["frechet"]) and row["frechet"] >= 0
        assert -1 <= row["fidelity"]["fidelity"] <= 1 and "random_pairs" in row["fidelity"]
    assert sampling[-1]["rms_to_reference"] == 0.0  # the reference against itself
    assert all(v >= 0 for v in results["frechet_floors"].values())


def test_measures_a_saved_model_against_its_training_tiles(script, built, capsys):
    work, _ = built
    results = script.main([*TINY, "--model", str(work / "ldm" / "model"), "--reference-steps", "0"])
    printed = capsys.readouterr().out
    assert "LDM objective / bare denoiser images/s" in printed and "DPM-Solver++-2 / DDIM-3 images/s" in printed
    assert [r["sampler"] for r in results["sampling"]] == ["ddim", "dpm++"]
    assert all(r["rms_to_reference"] is None for r in results["sampling"])
