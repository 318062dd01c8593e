"""`pathgen gensis` end to end on tiny tiles: every stage's output, a report with both encoders, a
re-run that skips every stage, a killed stage that resumes, and the refusals (stale outputs, --only)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from gensis_tiny import DEMO, ROOT, SSL_TINY, tiny_words

from pathgen.cli import main
from pathgen.config import ConfigError, load_config
from pathgen.diffusion.bank import bank_complete
from pathgen.stages.gensis import GenSISConfig, gensis_stages, run_gensis, with_switches
from pathgen.stages.run_status import fingerprint, read_status
from pathgen.stages.steps import PipelineError, Stage, run_stages
from pathgen.stages.train_ldm import LDMTrainConfig
from pathgen.stages.train_ssl import SSLConfig


def tiny_config(tiles: Path, out: Path, *more: str) -> GenSISConfig:
    return load_config(GenSISConfig, DEMO, [*tiny_words(tiles, out), *more])


WEIRD_NAME = "run #3: a b"  # '#' once cut a derived bank path short; ':' and spaces are YAML syntax too


@pytest.fixture(scope="module")
def toy_run(tiny_tiles, tmp_path_factory) -> tuple[GenSISConfig, list[str]]:
    """The whole pipeline, run from a directory without configs/ (the defaults are the packaged ones) into
    a folder whose name holds '#', ':' and spaces."""
    out = tmp_path_factory.mktemp("gensis") / WEIRD_NAME
    cfg = tiny_config(tiny_tiles, out)
    lines: list[str] = []
    elsewhere, before = tmp_path_factory.mktemp("elsewhere"), Path.cwd()
    os.chdir(elsewhere)
    try:
        run_gensis(cfg, log=lines.append)
    finally:
        os.chdir(before)
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
    assert out.name == WEIRD_NAME and cfg.ssl.config == "configs/ssl/dino_tiny.yaml"  # relative, found packaged
    round2 = load_config(SSLConfig, out / "ssl_round2" / "config.yaml")
    assert round2.genaug.bank == str(out / "bank_views")
    assert round2.genaug.disentangle.bank == str(out / "bank_interpolate")
    assert round2.data == cfg.tiles and round2.out == str(out / "ssl_round2")
    ldm = load_config(LDMTrainConfig, out / "ldm" / "config.yaml")
    assert ldm.encoder == str(out / "ssl_round1" / "model") and ldm.vae == str(out / "vae" / "model")
    assert "disentangle_loss" in (out / "ssl_round2" / "metrics.jsonl").read_text()


def test_report_compares_both_encoders(toy_run):
    cfg, _ = toy_run
    report = Path(cfg.out) / "report"
    text = (report / "report.md").read_text()
    assert "baseline (round 1)" in text and "Gen-SIS (round 2)" in text and "from scratch" in text
    assert "pcam / logistic" in text and "camelyon16_small / abmil" in text
    assert "within the intervals" in text or "(disjoint)" in text
    assert {"comparison.png", "grid_views.png", "grid_interpolate.png", "results.json"} <= {
        p.name for p in report.iterdir()
    }
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


def test_a_run_from_before_a_new_setting_is_resumed_not_refused(toy_run):
    """As if made by a pathgen without `cache_first_stage`: the LDM's record and saved config lack it, and every
    fingerprint from it on is what that pathgen computed (the status file predates recorded settings). A re-run
    skips every stage: the LDM by its saved config, the later stages because their own settings are unchanged."""
    cfg, _ = toy_run
    old_prints: dict[str, str] = {}
    for stage in gensis_stages(cfg):
        settings = {k: v for k, v in stage.settings.items() if not (stage.name == "ldm" and k == "cache_first_stage")}
        old_prints[stage.name] = fingerprint(settings, [old_prints[i] for i in stage.inputs])
    status_file = Path(cfg.out) / "status.json"
    status = json.loads(status_file.read_text())
    for name, entry in status["stages"].items():
        entry.pop("settings", None)
        entry["fingerprint"] = old_prints[name]
    status_file.write_text(json.dumps(status))
    saved = Path(cfg.out) / "ldm" / "config.yaml"
    old_config = yaml.safe_load(saved.read_text())
    del old_config["cache_first_stage"]
    saved.write_text(yaml.safe_dump(old_config, sort_keys=False))
    run_gensis(cfg)  # the same settings today, cache_first_stage at its default
    after = read_status(cfg.out)
    assert all(entry["status"] == "skipped" for entry in after.values())
    assert after["ssl_round1"]["fingerprint"] == old_prints["ssl_round1"] != after["ldm"]["fingerprint"]
    assert "cache_first_stage" in after["ldm"]["settings"]


def test_killed_training_stage_resumes_from_its_checkpoint(tiny_tiles, tmp_path, monkeypatch):
    import pathgen.stages.steps as steps

    cfg = tiny_config(tiny_tiles, tmp_path / "run")
    real, calls = steps.train_ssl, []

    def killed_once(ssl_cfg, resume=False):
        calls.append(resume)
        if len(calls) == 1:  # killed after the step-2 checkpoint, before the export
            ssl_cfg.train.max_steps = 2
            real(ssl_cfg)
            shutil.rmtree(Path(ssl_cfg.out) / "model")
            raise KeyboardInterrupt
        return real(ssl_cfg, resume=resume)

    monkeypatch.setattr(steps, "train_ssl", killed_once)
    with pytest.raises(KeyboardInterrupt):
        run_gensis(cfg, only=["ssl_round1"])
    assert read_status(cfg.out)["ssl_round1"]["status"] == "failed"
    run_gensis(cfg, only=["ssl_round1"])
    assert calls == [False, True] and read_status(cfg.out)["ssl_round1"]["status"] == "done"
    logged = (Path(cfg.out) / "ssl_round1" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in logged] == [1, 2, 3]


def _stage(name: str, log: list[str], inputs: tuple[str, ...] = ()) -> Stage:
    marker = Path(log[0]) / f"{name}.done"
    return Stage(
        name, marker.parent, {"name": name}, marker.is_file, lambda: (log.append(name), marker.touch()), inputs
    )


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


@pytest.mark.parametrize(
    "switches, message",
    [
        (["bank_views", "adaptive_noise"], "one bank"),
        (["bank_views", "bank_real"], "one bank"),
        (["bank_real"], "banks.real_views=true"),
        (["adaptive_noise"], "banks.img2img.enabled=true"),
        (["quality"], "foreground.enabled=true"),
        (["mixup"], "unknown generative switch"),
    ],
)
def test_switches_are_checked(tmp_path, switches, message):
    with pytest.raises(ConfigError, match=message):
        with_switches(SSLConfig(), GenSISConfig(out=str(tmp_path), tiles=["t"]), switches)


def test_bank_real_switch_trains_on_the_real_control_after_the_views_bank(tiny_tiles, tmp_path):
    cfg = load_config(GenSISConfig, DEMO, [f"tiles={tiny_tiles}", f"out={tmp_path}", "banks.real_views=true"])
    ssl, inputs = with_switches(SSLConfig(), cfg, ["bank_real", "disentangle"])
    assert ssl.genaug.bank == str(tmp_path / "bank_real") and ssl.genaug.policy == "generativessl"
    assert ssl.genaug.disentangle.bank == str(tmp_path / "bank_interpolate")
    assert inputs == ("bank_real", "bank_interpolate")
    names = [stage.name for stage in gensis_stages(cfg)]
    assert names.index("bank_views") < names.index("bank_real")
    assert next(s for s in gensis_stages(cfg) if s.name == "bank_real").inputs == ("bank_views",)


@pytest.mark.parametrize("name", ["gensis_demo.yaml", "gensis_vits16.yaml"])
def test_shipped_configs_build_every_stage(name, tiny_tiles, tmp_path):
    cfg = load_config(GenSISConfig, ROOT / "configs" / "genaug" / name, [f"tiles={tiny_tiles}", f"out={tmp_path}"])
    stages = gensis_stages(cfg)
    assert stages[0].name == "ssl_round1" and stages[-1].name == "report"
    assert stages[0].settings["method"] == "dino"


def test_a_feature_loss_vae_is_given_round_ones_encoder(tiny_tiles, tmp_path):
    cfg = load_config(GenSISConfig, DEMO, [f"tiles={tiny_tiles}", f"out={tmp_path}"])
    plain = next(s for s in gensis_stages(cfg) if s.name == "vae")
    assert plain.inputs == () and plain.settings["feature_encoder"] == ""
    cfg.vae.overrides.append("feature_weight=0.5")
    vae = next(s for s in gensis_stages(cfg) if s.name == "vae")
    assert vae.inputs == ("ssl_round1",)
    assert vae.settings["feature_encoder"] == str(tmp_path / "ssl_round1" / "model")


def test_a_seed_fixes_the_ssl_run(tiny_tiles, tmp_path):
    from safetensors.torch import load_file

    from pathgen.stages.steps import ssl_stage

    words = [*SSL_TINY, f"data={tiny_tiles}", "train.seed=3", "train.progress=false"]
    weights = []
    for name in ("a", "b"):
        cfg = load_config(SSLConfig, ROOT / "configs" / "ssl" / "dino_tiny.yaml", [*words, f"out={tmp_path / name}"])
        ssl_stage(name, cfg).run()
        weights.append(load_file(tmp_path / name / "model" / "model.safetensors"))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_the_init_encoder_is_round_ones_starting_point(tiny_tiles, tmp_path):
    """With lr 0 the student stays put, so the exported round-1 teacher (its EMA) must equal the step-0
    export up to the EMA's float rounding; a different initialisation would differ by ~1e-2."""
    from safetensors.torch import load_file

    from pathgen.stages.steps import ssl_init_stage, ssl_stage

    config = ROOT / "configs" / "ssl" / "dino_tiny.yaml"
    words = [*SSL_TINY, f"data={tiny_tiles}", "train.seed=5", "train.progress=false"]
    ssl_init_stage("init", load_config(SSLConfig, config, [*words, f"out={tmp_path / 'init'}"])).run()
    frozen = load_config(SSLConfig, config, [*words, "train.lr=0", "train.min_lr=0", f"out={tmp_path / 'frozen'}"])
    ssl_stage("frozen", frozen).run()
    init, frozen = (load_file(tmp_path / name / "model" / "model.safetensors") for name in ("init", "frozen"))
    assert all(torch.allclose(init[k], frozen[k], rtol=0, atol=1e-6) for k in init)


def test_gate_records_coverage_from_the_bank_and_the_tiles(toy_run):
    from pathgen.data.tiles import TileDataset
    from pathgen.diffusion.bank import ViewBank
    from pathgen.stages.quality_gate import bank_coverage

    cfg, _ = toy_run
    out = Path(cfg.out)
    gate = json.loads((out / "gate" / "gate.json").read_text())
    n_tiles = len(TileDataset(cfg.tiles))
    for kind in ("views", "interpolate"):
        cov = gate["coverage"][kind]
        done = int(ViewBank(out / f"bank_{kind}").group["done"][:].sum())
        assert cov["tiles"] == n_tiles and cov["with_row"] == done == 6
        assert cov["share_with_row"] == pytest.approx(6 / n_tiles) and cov["per_epoch"] == pytest.approx(6 / n_tiles)
    # the tiny generator fails the demo's thresholds (coverage 6 tiles of all): recorded and overridden
    assert not gate["passed"] and gate["overridden"] and "min_coverage" in gate["reasons"][-1]
    text = (out / "report" / "report.md").read_text()
    assert "What round 2 saw" in text and "failed, overridden" in text and "of each batch on average" in text
    assert text.index("What round 2 saw") < text.index("## Benchmark")
    half = bank_coverage(out / "bank_views", cfg.tiles, 0.0, p=0.5)
    assert half["per_epoch"] == pytest.approx(cov["share_with_row"] / 2)


def test_gate_refuses_round_two_in_one_line_unless_overridden(toy_run, tmp_path):
    from pathgen.stages.quality_gate import GateConfig, GateRefused, run_gate

    cfg, _ = toy_run
    out = Path(cfg.out)
    banks = (out / "bank_views", out / "bank_interpolate")
    with pytest.raises(GateRefused) as refused:
        run_gate(GateConfig(min_retrieval=1.01, min_coverage=0.0), tmp_path / "gate", *banks, cfg.tiles, 0.0, 1.0)
    message = str(refused.value)
    assert "\n" not in message and "min_retrieval 1.01" in message and "quality_gate.refuse=false" in message
    assert isinstance(refused.value, PipelineError)
    record = json.loads((tmp_path / "gate" / "gate.json").read_text())
    assert not record["passed"] and not record["overridden"] and len(record["reasons"]) == 1
    passed = run_gate(GateConfig(min_retrieval=0.0, min_coverage=0.0), tmp_path / "gate", *banks, cfg.tiles, 0.0, 1.0)
    assert passed["passed"] and passed["reasons"] == []
    forced = run_gate(GateConfig(refuse=False, min_retrieval=1.01), tmp_path / "gate", *banks, cfg.tiles, 0.0, 1.0)
    assert forced["overridden"] and len(forced["reasons"]) == 2
