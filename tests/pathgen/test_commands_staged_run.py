"""`pathgen gensis` / `pathgen ablate`: what they share — the `--only` stage list and one-line errors."""

from __future__ import annotations

import pytest

from pathgen.cli import main
from pathgen.commands.staged_run import stage_list


def test_stage_list_splits_and_drops_blanks():
    assert stage_list(None) is None
    assert stage_list("") is None
    assert stage_list(" ssl_round1, ,vae ") == ["ssl_round1", "vae"]


@pytest.mark.parametrize("command", ["gensis", "ablate"])
def test_unknown_key_is_one_line_error(command, tmp_path, capsys):
    assert main([command, "no_such_key=1", f"out={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pathgen {command}: ") and "no_such_key" in err and "\n" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["gensis", "ablate"])
def test_missing_config_file_is_one_line_error(command, tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    assert main([command, "--config", str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"pathgen {command}: ") and "missing.yaml" in err and "\n" not in err
