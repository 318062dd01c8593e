"""Run folders from the command line: an existing run is refused without --resume / --overwrite, a
locked one names the folder, --resume works from any directory (the saved config is absolute), and
--quiet / --verbose set the log level."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from test_train_safety import _hold_lock_in_another_process

from pathgen.cli import main
from pathgen.run_folder import RunFolderError, prepare_run_folder

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "backbone.img_size=32",
    "augment.global_size=32",
    "augment.local_size=16",
    "train.max_steps=2",
    "train.batch_size=8",
    "train.num_workers=0",
    "train.progress=false",
    "train.log_every=1",
    "train.checkpoint_every=1",
]


def _train(tiles: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "train-ssl",
            "--config",
            str(REPO / "configs/ssl/simclr_tiny.yaml"),
            f"data={tiles}",
            f"out={out}",
            *TINY,
            *extra,
        ]
    )


def _steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_train_ssl_refuses_an_existing_run_then_overwrites_or_resumes_it(tiny_tiles, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(tiny_tiles, run) == 0
    weights = (run / "model" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert _train(tiny_tiles, run, "train.max_steps=1") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(run) in err and "already holds a run" in err and "--resume" in err
    assert (run / "model" / "model.safetensors").read_bytes() == weights  # nothing touched
    assert _steps(run) == [1, 2]
    assert _train(tiny_tiles, run, "train.max_steps=1", "--overwrite") == 0
    assert _steps(run) == [1]  # a fresh run: the old metrics went with the old run
    assert main(["train-ssl", "--resume", f"out={run}", "train.max_steps=3"]) == 0
    assert _steps(run) == [1, 2, 3]


def test_resume_from_another_directory_reads_the_absolute_saved_config(tiny_tiles, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_tiles.parent)
    assert (
        main(
            [
                "train-ssl",
                "--config",
                str(REPO / "configs/ssl/simclr_tiny.yaml"),
                f"data={tiny_tiles.name}",
                "out=relative_run",
                *TINY,
            ]
        )
        == 0
    )
    run = tiny_tiles.parent / "relative_run"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"] == [str(tiny_tiles)] and saved["out"] == str(run)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train-ssl", "--resume", f"out={run}", "train.max_steps=3"]) == 0
    assert _steps(run) == [1, 2, 3] and not list(elsewhere.iterdir())


def test_a_concurrent_train_ssl_into_the_same_out_exits_non_zero_naming_it(tiny_tiles, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(tiny_tiles, run) == 0
    holder = _hold_lock_in_another_process(run, tmp_path / "ready")
    try:
        capsys.readouterr()
        assert main(["train-ssl", "--resume", f"out={run}", "train.max_steps=3"]) == 2
        assert f"{run}: in use by another run (pid {holder.pid}" in capsys.readouterr().err
        assert _train(tiny_tiles, run, "--overwrite") == 2  # never deletes a folder another run writes
        assert (run / "model" / "model.safetensors").is_file()
    finally:
        holder.kill()
        holder.wait()
    assert _steps(run) == [1, 2]


def test_prepare_run_folder_rules(tmp_path):
    assert prepare_run_folder(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "empty").mkdir()
    prepare_run_folder(tmp_path / "empty")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(RunFolderError, match="holds no pathgen output"):
        prepare_run_folder(foreign, overwrite=True)
    assert (foreign / "thesis.tex").is_file()
    with pytest.raises(RunFolderError, match="contradict"):
        prepare_run_folder(foreign, resume=True, overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunFolderError, match="not a folder"):
        prepare_run_folder(tmp_path / "file")
    error = RunFolderError(f"{foreign}: in use")
    assert str(pickle_round_trip(error)) == str(error) and type(pickle_round_trip(error)) is RunFolderError


def pickle_round_trip(value):  # noqa: ANN001, ANN201
    import pickle

    return pickle.loads(pickle.dumps(value))


@pytest.mark.parametrize("command, out_flag", [("generate", "--out"), ("bench", "--out"), ("gensis", "out=")])
def test_every_run_folder_command_refuses_an_existing_output(command, out_flag, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.yaml").write_text("{}")
    words = {
        "generate": ["generate", str(tmp_path / "ldm"), str(tmp_path / "tiles"), "--out", str(out)],
        "bench": [
            "bench",
            str(REPO / "benchmarks/suites/pcam.yaml"),
            "--encoder",
            "random:test_vit",
            "--out",
            str(out),
        ],
        "gensis": [
            "gensis",
            "--config",
            str(REPO / "configs/genaug/gensis_demo.yaml"),
            f"out={out}",
            f"tiles={tmp_path / 'tiles'}",
        ],
    }[command]
    assert main(words) == 2
    err = capsys.readouterr().err
    assert f"pathgen {command}: {out}: already holds a run (config.yaml)" in err


def test_quiet_and_verbose_set_the_log_level(tmp_path, capsys):
    logger = logging.getLogger("pathgen")
    before = logger.level
    levels = {}
    try:
        for flags in (["--quiet"], ["--verbose"], [], ["-q"]):
            # before or after the subcommand, as a user types them
            argv = (
                flags + ["tile", str(tmp_path / "no_slides"), "--out", str(tmp_path / "out")]
                if flags != ["-q"]
                else ["tile", str(tmp_path / "no_slides"), "--out", str(tmp_path / "out"), "-q"]
            )
            main(argv)
            levels[" ".join(flags)] = logger.level
    finally:
        logger.setLevel(before)
    assert levels == {"--quiet": logging.WARNING, "--verbose": logging.DEBUG, "": logging.INFO, "-q": logging.WARNING}
    with pytest.raises(SystemExit):
        main(["--quiet", "--verbose", "tile", "x", "--out", "y"])
