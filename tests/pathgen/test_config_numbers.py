"""Numbers in config files and `key=value` overrides read as YAML 1.2 reads them (`1e-4` is a float),
and configs are saved atomically with absolute paths."""

from __future__ import annotations

import pickle

import pytest
import yaml

from pathgen.config import ConfigError, load_config, parse_override, save_config, yaml_load
from pathgen.stages.train_ssl import SSLConfig
from pathgen.train import TrainingDiverged


@pytest.mark.parametrize(
    "text, value",
    [
        ("1e-4", 1e-4),
        ("1E5", 1e5),
        ("-2.5e+3", -2500.0),
        ("1.0e-4", 1e-4),
        (".5", 0.5),
        ("10", 10),
        ("1_000", 1000),
        ("0x10", 16),
        ("true", True),
        ("x1e3", "x1e3"),
        ("1e", "1e"),
        ("[1e-4, 2]", [1e-4, 2]),
    ],
)
def test_override_numbers_parse_as_yaml_1_2(text, value):
    key, parsed = parse_override(f"train.lr={text}")
    assert key == "train.lr" and parsed == value and type(parsed) is type(value)


def test_lr_1e_4_is_accepted_on_the_command_line_and_in_a_file(tmp_path):
    assert load_config(SSLConfig, None, ["train.lr=1e-4"]).train.lr == pytest.approx(1e-4)
    path = tmp_path / "cfg.yaml"
    path.write_text("train:\n  lr: 3e-4\n  min_lr: 1E-6\n")
    cfg = load_config(SSLConfig, path)
    assert cfg.train.lr == pytest.approx(3e-4) and cfg.train.min_lr == pytest.approx(1e-6)
    assert yaml_load("a: .inf")["a"] == float("inf")


def test_an_unparsable_override_value_is_one_config_error():
    with pytest.raises(ConfigError, match=r"override 'train.lr=\[1': the value is not valid YAML"):
        parse_override("train.lr=[1")


def test_saved_config_holds_absolute_paths_and_no_temp_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(
        SSLConfig,
        None,
        ["data=[tiles_a, tiles_b]", "out=runs/x", "genaug.bank=banks/v", "loss.quality_scorer=random:test_vit"],
    )
    save_config(cfg, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["data"] == [str(tmp_path / "tiles_a"), str(tmp_path / "tiles_b")]
    assert saved["out"] == str(tmp_path / "runs" / "x") and saved["genaug"]["bank"] == str(tmp_path / "banks" / "v")
    assert saved["loss"]["quality_scorer"] == "random:test_vit" and saved["genaug"]["disentangle"]["bank"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_training_errors_pickle_round_trip():
    error = TrainingDiverged("loss is nan at step 5: training stopped")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is TrainingDiverged and str(again) == str(error)
