"""`pathgen embed` records what made each embedding set (encoder weights hash): a second encoder whose folder is
also named `model` is refused (or re-embedded with --overwrite), the same encoder is "already done"; under torchrun
two gloo ranks split the slides and write what one process writes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from pathgen.cli import main
from pathgen.models import (
    BackboneConfig,
    EncoderConfig,
    create_backbone,
    load_encoder,
    save_encoder,
)
from pathgen.models.backbone import backbone_kwargs
from pathgen.models.embeddings import embed_store, embedding_path, read_embeddings
from pathgen.models.folder import weights_sha256
from tiling.store import TileStore, list_store_paths


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _encoder(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    cfg = BackboneConfig(name="test_vit", img_size=32)
    model, dim = create_backbone(cfg)
    return save_encoder(model, EncoderConfig("test_vit", dim, backbone_kwargs(cfg), input_size_px=32, mpp=1.0), folder)


@pytest.fixture()
def tiles(tiny_tiles, tmp_path) -> Path:
    copy = tmp_path / "tiles"
    shutil.copytree(tiny_tiles, copy)
    return copy


def test_a_second_encoder_named_model_is_refused_then_reembedded_with_overwrite(tiles, tmp_path, capsys):
    first, second = _encoder(tmp_path / "a" / "model", 0), _encoder(tmp_path / "b" / "model", 1)
    args = [str(tiles), "--workers", "0", "--no-progress"]
    assert main(["embed", str(first), *args]) == 0
    store = list_store_paths(tiles)[0]
    attrs = zarr.open_array(embedding_path(store, "model"), mode="r").attrs
    assert attrs["weights_sha256"] == weights_sha256(first / "model.safetensors")
    before = read_embeddings(store, "model")
    capsys.readouterr()
    assert main(["embed", str(first), *args]) == 0
    assert "0 slides embedded, 2 already done" in capsys.readouterr().out
    assert main(["embed", str(second), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "were made by another encoder" in err and "--overwrite" in err
    np.testing.assert_array_equal(read_embeddings(store, "model"), before)
    assert main(["embed", str(second), *args, "--overwrite"]) == 0
    assert "2 slides embedded" in capsys.readouterr().out
    model, config = load_encoder(second)
    expected = embed_store(model, config, TileStore(store), torch.device("cpu"), num_workers=0)
    np.testing.assert_allclose(read_embeddings(store, "model"), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(read_embeddings(store, "model"), before)


def test_torchrun_splits_slides_across_two_gloo_ranks(tiles, tiny_encoder, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [
        str(torchrun),
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        "-m",
        "pathgen.cli",
        "embed",
        str(tiny_encoder),
        str(tiles),
        "--name",
        "dist",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--no-progress",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("2 slides embedded, 0 already done") == 2  # the count is summed over both ranks
    model, config = load_encoder(tiny_encoder)
    for path in list_store_paths(tiles):
        expected = embed_store(model, config, TileStore(path), torch.device("cpu"), num_workers=0)
        np.testing.assert_allclose(read_embeddings(path, "dist"), expected, rtol=1e-5, atol=1e-6)
