"""`pathgen gensis` end to end on tiny tiles: every stage's output, a report with both encoders, a
re-run that skips every stage, a killed stage that resumes, and the refusals (stale outputs, --only)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from pathgen.cli import main
from pathgen.config import ConfigError, load_config
from pathgen.diffusion.bank import bank_complete
from pathgen.genaug.manifest import read_status
from pathgen.genaug.pipeline import GenSISConfig, gensis_stages, run_gensis, switch_overrides
from pathgen.genaug.stages import PipelineError, Stage, run_stages

from gensis_tiny import DEMO, ROOT, SSL_TINY, tiny_words


def tiny_config(tiles: Path, out: Path, *more: str) -> GenSISConfig:
    return load_config(GenSISConfig, DEMO, [*tiny_words(tiles, out), *more])


@pytest.fixture(scope="module")
def toy_run(tiny_tiles, tmp_path_factory) -> tuple[GenSISConfig, list[str]]:
    out = tmp_path_factory.mktemp("gensis") / "run"
    cfg = tiny_config(tiny_tiles, out)
    lines: list[str] = []
    run_gensis(cfg, log=lines.append)
    return cfg, lines


def test_every_stage_writes_its_output(toy_run):
    cfg, lines = toy_run
    out = Path(cfg.out)
    for run in ("ssl_round1", "vae", "ldm", "ssl_round2", "ssl_init"):
        assert (out / run / "model" / "config.json").is_file() and (out / run / "config.yaml").is_file()
    for kind in ("views", "interpolate"):
        assert bank_complete(out / f"bank_{kind}") and (out / f"bank_{kind}" / "eval" / "metrics.json").is_file()
    assert (out / "bench_data" / "complete.json").is_file() and (out / "bench" / "results.json").is_file()
    assert load_config(GenSISConfig, out / "config.yaml") == cfg
    status = read_status(out)
    assert [s.name for s in gensis_stages(cfg)] == list(status)
    assert all(entry["status"] == "done" and entry["seconds"] >= 0 for entry in status.values())
    round2 = (out / "ssl_round2" / "config.yaml").read_text()
    assert str(out / "bank_views") in round2 and str(out / "bank_interpolate") in round2
    assert "disentangle_loss" in (out / "ssl_round2" / "metrics.jsonl").read_text()


def test_report_compares_both_encoders(toy_run):
    cfg, _ = toy_run
    report = Path(cfg.out) / "report"
    text = (report / "report.md").read_text()
    assert "baseline (round 1)" in text and "Gen-SIS (round 2)" in text and "from scratch" in text
    assert "pcam / logistic" in text and "camelyon16_small / abmil" in text
    assert "within the intervals" in text or "(disjoint)" in text
    assert {"comparison.png", "grid_views.png", "grid_interpolate.png", "results.json"} <= {
        p.name for p in report.iterdir()}
    encoders = {r["encoder"] for r in json.loads((report / "results.json").read_text())["results"]}
    assert encoders == {"baseline", "gensis", "init"}
    assert "its own initial weights" in text


def test_rerun_skips_every_stage(toy_run, capsys):
    cfg, _ = toy_run
    words = ["gensis", "--config", str(DEMO), *tiny_words(Path(cfg.tiles[0]), Path(cfg.out))]
    assert main(words) == 2  # the run exists: continuing it is asked for explicitly
    assert "already holds a run" in capsys.readouterr().err
    assert main([*words, "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "running" not in printed and printed.count("skipped (complete") == len(gensis_stages(cfg))
    assert all(entry["status"] == "skipped" for entry in read_status(cfg.out).values())


def test_changed_settings_are_refused_not_mixed(toy_run):
    cfg, _ = toy_run
    changed = tiny_config(Path(cfg.tiles[0]), Path(cfg.out), "seed=1")
    with pytest.raises(PipelineError, match="other settings.*ssl_round1"):
        run_gensis(changed)


def test_killed_training_stage_resumes_from_its_checkpoint(tiny_tiles, tmp_path, monkeypatch):
    import pathgen.ssl.train_ssl as train_ssl

    cfg = tiny_config(tiny_tiles, tmp_path / "run")
    real, calls = train_ssl.train_ssl, []

    def killed_once(ssl_cfg, resume=False):
        calls.append(resume)
        if len(calls) == 1:  # killed after the step-2 checkpoint, before the export
            ssl_cfg.train.max_steps = 2
            real(ssl_cfg)
            shutil.rmtree(Path(ssl_cfg.out) / "model")
            raise KeyboardInterrupt
        return real(ssl_cfg, resume=resume)

    monkeypatch.setattr(train_ssl, "train_ssl", killed_once)
    with pytest.raises(KeyboardInterrupt):
        run_gensis(cfg, only=["ssl_round1"])
    assert read_status(cfg.out)["ssl_round1"]["status"] == "failed"
    run_gensis(cfg, only=["ssl_round1"])
    assert calls == [False, True] and read_status(cfg.out)["ssl_round1"]["status"] == "done"
    logged = (Path(cfg.out) / "ssl_round1" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in logged] == [1, 2, 3]


def _stage(name: str, log: list[str], inputs: tuple[str, ...] = ()) -> Stage:
    marker = Path(log[0]) / f"{name}.done"
    return Stage(name, marker.parent, {"name": name}, marker.is_file,
                 lambda: (log.append(name), marker.touch()), inputs)


def test_only_runs_named_stages_and_needs_their_inputs(tmp_path):
    log = [str(tmp_path)]
    stages = [_stage("a", log), _stage("b", log, ("a",))]
    with pytest.raises(PipelineError, match="stage b needs a first"):
        run_stages(stages, tmp_path, only=["b"], log=lambda _: None)
    with pytest.raises(PipelineError, match="unknown stage 'c'"):
        run_stages(stages, tmp_path, only=["c"], log=lambda _: None)
    run_stages(stages, tmp_path, only=["a"], log=lambda _: None)
    run_stages(stages, tmp_path, log=lambda _: None)
    assert log[1:] == ["a", "b"]


@pytest.mark.parametrize("switches, message", [
    (["bank_views", "adaptive_noise"], "one bank"),
    (["bank_views", "bank_real"], "one bank"),
    (["bank_real"], "banks.real_views=true"),
    (["adaptive_noise"], "banks.img2img.enabled=true"),
    (["quality"], "foreground.enabled=true"),
    (["mixup"], "unknown generative switch"),
])
def test_switches_are_checked(tmp_path, switches, message):
    with pytest.raises(ConfigError, match=message):
        switch_overrides(GenSISConfig(out=str(tmp_path), tiles=["t"]), switches)


def test_bank_real_switch_trains_on_the_real_control_after_the_views_bank(tiny_tiles, tmp_path):
    cfg = load_config(GenSISConfig, DEMO, [f"tiles={tiny_tiles}", f"out={tmp_path}", "banks.real_views=true"])
    words, inputs = switch_overrides(cfg, ["bank_real", "disentangle"])
    assert f"genaug.bank={tmp_path / 'bank_real'}" in words and inputs == ("bank_real", "bank_interpolate")
    names = [stage.name for stage in gensis_stages(cfg)]
    assert names.index("bank_views") < names.index("bank_real")
    assert next(s for s in gensis_stages(cfg) if s.name == "bank_real").inputs == ("bank_views",)


@pytest.mark.parametrize("name", ["gensis_demo.yaml", "gensis_vits16.yaml"])
def test_shipped_configs_build_every_stage(name, tiny_tiles, tmp_path):
    cfg = load_config(GenSISConfig, ROOT / "configs" / "genaug" / name, [f"tiles={tiny_tiles}", f"out={tmp_path}"])
    stages = gensis_stages(cfg)
    assert stages[0].name == "ssl_round1" and stages[-1].name == "report"
    assert stages[0].settings["method"] == "dino"


def test_a_seed_fixes_the_ssl_run(tiny_tiles, tmp_path):
    from safetensors.torch import load_file

    from pathgen.genaug.stages import ssl_stage

    words = [*SSL_TINY, f"data={tiny_tiles}", "train.seed=3", "train.progress=false"]
    weights = []
    for name in ("a", "b"):
        ssl_stage(name, tmp_path / name, str(ROOT / "configs" / "ssl" / "dino_tiny.yaml"), words).run()
        weights.append(load_file(tmp_path / name / "model" / "model.safetensors"))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_the_init_encoder_is_round_ones_starting_point(tiny_tiles, tmp_path):
    """With lr 0 the student stays put, so the exported round-1 teacher (its EMA) must equal the step-0
    export up to the EMA's float rounding; a different initialisation would differ by ~1e-2."""
    from safetensors.torch import load_file

    from pathgen.genaug.stages import ssl_init_stage, ssl_stage

    config = str(ROOT / "configs" / "ssl" / "dino_tiny.yaml")
    words = [*SSL_TINY, f"data={tiny_tiles}", "train.seed=5", "train.progress=false"]
    ssl_init_stage("init", tmp_path / "init", config, words).run()
    ssl_stage("frozen", tmp_path / "frozen", config, [*words, "train.lr=0", "train.min_lr=0"]).run()
    init, frozen = (load_file(tmp_path / name / "model" / "model.safetensors") for name in ("init", "frozen"))
    assert all(torch.allclose(init[k], frozen[k], rtol=0, atol=1e-6) for k in init)
