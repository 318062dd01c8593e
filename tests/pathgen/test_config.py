"""Typed config: defaults, YAML, dotted overrides, errors that name the key, every shipped config loads."""

from pathlib import Path

import pytest
import yaml

from pathgen.config import ConfigError, is_override, load_config, parse_override, save_config
from tiling.config import TilingConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_defaults_then_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("target_mpp: 1\ntissue:\n  min_region_mm2: 0.5\n")
    cfg = load_config(TilingConfig, path, ["tissue.remove_pen=false", "store.codec=jpeg", "tile_size_px=256"])
    assert cfg.target_mpp == 1.0 and isinstance(cfg.target_mpp, float)
    assert cfg.tissue.min_region_mm2 == 0.5
    assert cfg.tissue.remove_pen is False
    assert cfg.tissue.closing_um == TilingConfig().tissue.closing_um  # untouched default
    assert cfg.store.codec == "jpeg" and cfg.tile_size_px == 256


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="tissue.min_regoin_mm2"):
        load_config(TilingConfig, None, ["tissue.min_regoin_mm2=1"])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match="tile_size_px"):
        load_config(TilingConfig, None, ["tile_size_px=big"])
    with pytest.raises(ConfigError, match="tile_size_px"):
        load_config(TilingConfig, None, ["tile_size_px=true"])


def test_optional_field_accepts_none_and_str():
    assert load_config(TilingConfig, None, ["mpp_override=a.csv"]).mpp_override == "a.csv"
    assert load_config(TilingConfig, None, ["mpp_override=null"]).mpp_override is None


def test_override_parsing():
    assert parse_override("a.b=0.5") == ("a.b", 0.5)
    assert is_override("store.codec=jpeg")
    assert not is_override("/data/slides")
    assert not is_override("weird name=1")
    with pytest.raises(ConfigError):
        parse_override("=1")


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(TilingConfig, None, ["target_mpp=0.25", "tissue.remove_pen=false"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(TilingConfig, tmp_path / "config.yaml") == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["target_mpp"] == 0.25


@pytest.mark.parametrize("path", sorted((CONFIGS / "tile").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_tile_config_builds(path):
    cfg = load_config(TilingConfig, path)
    assert cfg.tile_size_px > 0 and cfg.target_mpp > 0


def test_non_mapping_yaml_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(TilingConfig, path)


@pytest.mark.parametrize(
    "text, value",
    [
        ("out=/data/gensis #3", "/data/gensis #3"),  # YAML would drop " #3" as a comment
        ("out=/data/run: a b", "/data/run: a b"),  # YAML would read a mapping
        ("out=/data/x:1", "/data/x:1"),
        ("out='/data/q #1'", "/data/q #1"),
        ("tags=[a, b]", ["a", "b"]),
        ("opts={a: 1}", {"a": 1}),
        ("lr=1e-4", 1e-4),
    ],
)
def test_override_values_that_are_plainly_text_stay_whole(text, value):
    from pathgen.config import parse_override

    assert parse_override(text)[1] == value
