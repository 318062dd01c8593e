"""`pathgen ablate` on tiny tiles: the shipped ablation config with every variant at a test budget, one
shared generative part, equal budgets within a family, the results table, a re-run that skips all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from gensis_tiny import ROOT, SSL_TINY, tiny_words

from pathgen.config import ConfigError, load_config
from pathgen.diffusion.bank import ViewBank
from pathgen.stages.ablate import AblationConfig, FamilyConfig, ablation_stages, run_ablation
from pathgen.stages.run_status import read_status

ABLATION = ROOT / "configs" / "genaug" / "ablation_tiny.yaml"


def tiny_ablation(tiles: Path, out: Path) -> AblationConfig:
    cfg = load_config(AblationConfig, ABLATION, [f"out={out}", f"tiles={tiles}"])
    assert cfg.seeds == [0, 1, 2]  # what ships: three pretraining seeds (the README's ablation numbers)
    cfg.seeds = [0]  # one here, to keep the test fast
    cfg.shared_overrides = [
        *cfg.shared_overrides,
        *tiny_words(tiles, out / "shared"),
        "foreground.max_tiles=64",
        "banks.img2img.overrides=[adaptive_noise=true, foreground=pca]",
    ]
    for family in cfg.families:
        family.ssl.overrides = SSL_TINY
    return cfg


def test_every_variant_trains_at_one_budget_and_is_tabled(tiny_tiles, tmp_path):
    out = tmp_path / "ablation"
    cfg = tiny_ablation(tiny_tiles, out)
    run_ablation(cfg, log=lambda _: None)
    labels = {f"{f.name}_{v}_s0" for f in cfg.families for v in [*f.variants, "step0"]}
    assert len(labels) == 14
    results = json.loads((out / "report" / "results.json").read_text())["results"]
    assert {r["encoder"] for r in results} == labels
    trains = {}
    for label in labels - {"dino_step0_s0", "mocov3_step0_s0"}:
        run_cfg = yaml.safe_load((out / "ssl" / label / "config.yaml").read_text())
        trains.setdefault(run_cfg["method"], []).append(run_cfg["train"])
    assert set(trains) == {"dino", "mocov3"} and all(t == runs[0] for runs in trains.values() for t in runs)
    assert ViewBank(out / "shared" / "bank_img2img").attrs["settings"]["adaptive_noise"] is True
    real_run = yaml.safe_load((out / "ssl" / "dino_views_real_s0" / "config.yaml").read_text())
    assert real_run["genaug"]["bank"] == str(out / "shared" / "bank_real")
    assert ViewBank(out / "shared" / "bank_real").keys() == ViewBank(out / "shared" / "bank_views").keys()
    assert "pair_weight_max" in (out / "ssl" / "mocov3_quality_s0" / "metrics.jsonl").read_text()
    assert "disentangle_loss" in (out / "ssl" / "dino_combined_s0" / "metrics.jsonl").read_text()
    table = (out / "report" / "ablation.md").read_text()
    assert "## dino" in table and "## mocov3" in table and "| quality |" in table and "| step0 |" in table
    assert "within the intervals" in table
    assert (out / "report" / "dino.png").is_file() and (out / "report" / "mocov3.png").is_file()
    lines: list[str] = []
    run_ablation(tiny_ablation(tiny_tiles, out), log=lines.append)
    assert lines and all("skipped" in line for line in lines)
    assert all(entry["status"] == "skipped" for entry in read_status(out).values())


@pytest.mark.parametrize(
    "variants, message",
    [
        ({"views": ["bank_views"]}, "exactly one variant must have no switches"),
        ({"a": [], "b": []}, "exactly one variant must have no switches"),
        ({"a": [], "b": "bank_views"}, "list of switches"),
        ({"a": [], "b": ["disentangle", "mixup"]}, "unknown generative switch"),
        ({"a": [], "step0": ["bank_views"]}, "reserved"),
    ],
)
def test_bad_families_are_refused(tiny_tiles, tmp_path, variants, message):
    cfg = tiny_ablation(tiny_tiles, tmp_path)
    cfg.families = [FamilyConfig("dino", variants=variants)]
    with pytest.raises(ConfigError, match=message):
        ablation_stages(cfg)
