"""The demo's tiling part runs end to end and re-runs as a no-op; its Gen-SIS part is wired to the shipped
config (the loop itself runs end to end in tests/pathgen/genaug/test_genaug_pipeline.py)."""

from pathgen.demo import main


def test_demo_tiles_and_resumes(tmp_path, capsys, monkeypatch):
    import pathgen.demo as demo

    real = demo.pathgen

    def smaller(argv):  # keep the test quick: smaller slides than the real demo
        if argv[0] == "synth":
            argv = argv[:1] + [argv[1], "--n", "2", "--width", "4096", "--height", "3072", "--pen-strokes", "1"]
        return real(argv)

    monkeypatch.setattr(demo, "pathgen", smaller)
    assert main(["--out", str(tmp_path), "--no-ssl"]) == 0
    assert (tmp_path / "tiles" / "qc" / "index.html").is_file()
    assert main(["--out", str(tmp_path), "--no-ssl"]) == 0
    assert "0 done, 0 failed, 2 skipped" in capsys.readouterr().out


def test_demo_runs_the_gensis_loop_on_its_tiles(tmp_path, capsys, monkeypatch):
    import pathgen.demo as demo

    calls = []
    monkeypatch.setattr(demo, "pathgen", lambda argv: calls.append(argv) or 0)  # the loop itself: test_genaug_pipeline
    (tmp_path / "slides").mkdir()
    (tmp_path / "slides" / "s.tif").touch()  # synth already done
    assert main(["--out", str(tmp_path)]) == 0
    assert [argv[0] for argv in calls] == ["tile", "gensis"]
    assert calls[1] == [
        "gensis",
        "--config",
        "configs/genaug/gensis_demo.yaml",
        f"tiles={tmp_path / 'tiles'}",
        f"out={tmp_path / 'gensis'}",
    ]
    assert str(tmp_path / "gensis" / "report" / "report.md") in capsys.readouterr().out
