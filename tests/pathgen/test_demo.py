"""The demo's tiling part runs end to end and re-runs as a no-op (its SSL part is the tiny-config test's path)."""

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
