"""The `pathgen` CLI end to end for the tiling stage: synth → tile → export-coords, exit codes."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from PIL import Image

from pathgen.cli import main
from tiling.reader import open_slide
from tiling.store import open_store

REPO = Path(__file__).resolve().parents[2]


def test_synth_tile_export_end_to_end(tmp_path, capsys):
    assert (
        main(
            ["synth", str(tmp_path / "slides"), "--n", "2", "--width", "4096", "--height", "3072", "--pen-strokes", "1"]
        )
        == 0
    )
    assert (
        main(
            [
                "tile",
                str(tmp_path / "slides"),
                "--out",
                str(tmp_path / "out"),
                "--workers",
                "2",
                "--no-progress",
                "tissue.min_region_mm2=0.01",
                "--min-tissue",
                "0.5",
            ]
        )
        == 0
    )
    resolved = yaml.safe_load(next((tmp_path / "out" / "runs").glob("*.yaml")).read_text())
    assert resolved["min_tissue"] == 0.5 and resolved["tissue"]["min_region_mm2"] == 0.01
    assert "2 done" in capsys.readouterr().out
    assert main(["export-coords", str(tmp_path / "out"), "--out", str(tmp_path / "h5")]) == 0
    h5_path = next((tmp_path / "h5").glob("*.h5"))
    store = open_store(tmp_path / "out" / "tiles.zarr" / h5_path.stem)
    with h5py.File(h5_path, "r") as handle:
        coords, attrs = handle["coords"][:], dict(handle["coords"].attrs)
    np.testing.assert_array_equal(coords, store.coords)
    assert attrs["patch_level"] == 1 and attrs["patch_size"] == 224 and attrs["patch_size_level0"] == 448
    # a CLAM-style read of the exported coordinates gives back the stored tile
    slide = open_slide(store.attrs["slide"]["path"])
    x, y = coords[0]
    clam_tile = slide.read_rgb((int(x), int(y)), int(attrs["patch_level"]), (int(attrs["patch_size"]),) * 2)
    np.testing.assert_array_equal(np.asarray(Image.fromarray(clam_tile)), store[0])


def test_synth_lymph_node_writes_the_lymph_node_slides(tmp_path):
    import openslide

    from tiling.synthetic import SyntheticSlideSpec, synthetic_slide_image

    size = ["--width", "1024", "--height", "768", "--mpp", "1.0", "--tumor-every", "1"]
    assert main(["synth", str(tmp_path / "node"), "--n", "1", *size, "--lymph-node"]) == 0
    with openslide.OpenSlide(tmp_path / "node" / "slide_000.tif") as osr:
        written = np.asarray(osr.read_region((0, 0), 0, (1024, 768)).convert("RGB")).astype(float)
    spec = SyntheticSlideSpec(1024, 768, mpp=1.0, tumor_regions=2)
    node, plain = (synthetic_slide_image(s).numpy().astype(float) for s in (replace(spec, lymph_node=True), spec))
    assert np.abs(written - node).mean() < 3 < np.abs(written - plain).mean()  # JPEG-close to its own spec only


def test_exit_status_is_1_when_a_slide_fails(tmp_path):
    (tmp_path / "slides").mkdir()
    (tmp_path / "slides" / "broken.svs").write_text("nope")
    assert main(["tile", str(tmp_path / "slides"), "--out", str(tmp_path / "out"), "--no-progress"]) == 1


def test_bad_override_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "slides").mkdir()
    assert main(["tile", str(tmp_path / "slides"), "--out", str(tmp_path / "out"), "tissue.nope=1"]) == 2
    assert "unknown config key tissue.nope" in capsys.readouterr().err


def test_tiling_never_imports_torch(synthetic_dir, tmp_path):
    code = (
        "import sys; from pathgen.cli import main; "
        f"rc = main(['tile', r'{synthetic_dir}', '--out', r'{tmp_path / 'out'}', '--workers', '2', '--no-progress']); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("argv", [["--version"], ["tile", "--help"]])
def test_help_and_version(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
