"""Every command fails cleanly: bad input gives one line on stderr naming the file or key and exit 2
(1 for a run that started), and nothing half-written reads as complete afterwards."""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
import zarr

from pathgen.atomic import DiskFullError, is_json_file, read_json, write_json_atomic
from pathgen.checkpoint import load_checkpoint, save_checkpoint
from pathgen.cli import main
from pathgen.diffusion.bank import BankError, BankWriter, ViewBank, bank_complete
from pathgen.errors import error_line
from pathgen.models.embeddings import embedding_path
from pathgen.stages.steps import model_complete
from tiling.shards import CorruptShard
from tiling.store import StoreError, complete_store_paths, list_store_paths, open_store

REPO = Path(__file__).resolve().parents[2]
DINO_TINY = str(REPO / "configs" / "ssl" / "dino_tiny.yaml")
VAE_TINY = str(REPO / "configs" / "diffusion" / "vae_tiny.yaml")
SMOKE = ["train.max_steps=1", "train.batch_size=4", "train.progress=false", "train.num_workers=0"]


def run_cli(args: list[str], capfd) -> tuple[int, list[str], str]:
    """Exit status, the non-empty stderr lines and stdout of one in-process `pathgen` call."""
    status = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return status, [line for line in err.splitlines() if line.strip()], out


def assert_one_line(status: int, lines: list[str], expected_status: int, *words: str) -> None:
    assert status == expected_status, lines
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0] and "weights_only=False" not in lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.fixture
def tiles_copy(tiny_tiles, tmp_path) -> Path:
    """A private copy of the session's tiny tile folder that a test may damage."""
    return Path(shutil.copytree(tiny_tiles, tmp_path / "tiles"))


def first_shard(tile_dir: Path) -> Path:
    store = list_store_paths(tile_dir)[0]
    return next(p for p in sorted((store / "tiles" / "c").rglob("*")) if p.is_file())


@pytest.mark.parametrize(
    "override, words",
    [
        ("method_options.out_dim=abc", ["method_options.out_dim", "expected int"]),
        ("backbone.kwargs.foo=1", ["backbone.kwargs", "foo"]),
        ("backbone.name=not_a_model", ["backbone.name", "not_a_model"]),
        ("train.batch_size=0", ["train.batch_size", "at least 1"]),
        ("train.checkpoint_every=0", ["train.checkpoint_every", "at least 1"]),
        ("train.optimizer=adam", ["train.optimizer", "adamw"]),
        ("train.lr=[1", ["train.lr=[1", "not valid YAML"]),
    ],
)
def test_train_ssl_config_values_fail_before_training(override, words, tiny_tiles, tmp_path, capfd):
    out = tmp_path / "run"
    status, lines, _ = run_cli(
        ["train-ssl", "--config", DINO_TINY, f"data={tiny_tiles}", f"out={out}", *SMOKE, override], capfd
    )
    assert_one_line(status, lines, 2, *words)
    assert not (out / "checkpoints").exists()  # refused before any step


def test_train_vae_image_size_that_the_vae_cannot_halve(tiny_tiles, tmp_path, capfd):
    status, lines, _ = run_cli(
        ["train-vae", "--config", VAE_TINY, f"data={tiny_tiles}", f"out={tmp_path / 'v'}", "image_size=30", *SMOKE],
        capfd,
    )
    assert_one_line(status, lines, 2, "image_size", "30", "multiple")


def test_bench_unknown_reader_option(tmp_path, capfd):
    suite = REPO / "benchmarks" / "suites" / "pcam.yaml"
    status, lines, _ = run_cli(
        [
            "bench",
            suite,
            "--encoder",
            "random:test_vit",
            "data.options.foo=1",
            f"data.root={tmp_path}",
            "--out",
            tmp_path / "b",
        ],
        capfd,
    )
    assert_one_line(status, lines, 2, "options.foo", "pcam")


def test_export_of_a_vae_run_folder_names_it(tmp_path, capfd):
    run_dir = tmp_path / "vae_run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"data": [], "out": str(run_dir), "vae": {}}))
    status, lines, _ = run_cli(["export", run_dir, "--out", tmp_path / "m"], capfd)
    assert_one_line(status, lines, 2, str(run_dir), "train-vae run folder")


def test_unsafe_checkpoint_is_refused_without_offering_to_unpickle(tiny_tiles, tmp_path, capfd):
    out = tmp_path / "run"
    assert main(["train-ssl", "--config", DINO_TINY, f"data={tiny_tiles}", f"out={out}", *SMOKE]) == 0
    capfd.readouterr()
    torch.save({"step": 1, "payload": argparse.Namespace(a=1)}, out / "checkpoints" / "last.pt")
    status, lines, _ = run_cli(["train-ssl", "--resume", f"out={out}", "train.max_steps=2"], capfd)
    assert_one_line(status, lines, 2, "last.pt", "not a pathgen checkpoint (refused to unpickle")
    with pytest.raises(ValueError, match="refused to unpickle"):
        load_checkpoint(out / "checkpoints" / "last.pt")


@pytest.mark.parametrize(
    "failure",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError("[enforce fail at inline_container.cc:664] unexpected pos 64 vs 0"),
    ],
)
def test_full_disk_while_saving_a_checkpoint(failure, tmp_path, monkeypatch):
    def half_written(state, path):  # noqa: ANN001 -- torch.save's signature
        Path(path).write_bytes(b"partial")
        raise failure

    target = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(target, {"step": 1})
    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(DiskFullError, match=f"no space left on device writing {target}"):
        save_checkpoint(target, {"step": 2})
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.pt"]  # temp file removed
    monkeypatch.undo()
    assert load_checkpoint(target)["step"] == 1  # the previous checkpoint is intact


def test_disk_full_error_pickles_with_its_message(tmp_path):
    import pickle

    err = pickle.loads(pickle.dumps(DiskFullError(tmp_path / "x")))
    assert str(err) == f"no space left on device writing {tmp_path / 'x'}" and err.errno == errno.ENOSPC


@pytest.mark.parametrize("damage", ["truncate_half", "truncate_to_100_bytes", "overwrite_index"])
def test_damaged_shard_is_named_when_read(damage, tiles_copy):
    shard = first_shard(tiles_copy)
    size = shard.stat().st_size
    with shard.open("r+b") as handle:
        if damage == "truncate_half":
            handle.truncate(size // 2)
        elif damage == "truncate_to_100_bytes":
            handle.truncate(100)
        else:
            handle.seek(size - 40)
            handle.write(b"\x07" * 36)
    store = open_store(list_store_paths(tiles_copy)[0])
    with pytest.raises(CorruptShard, match=f"{shard}: corrupt shard file"):
        store.read([0])


def test_corrupt_tile_bytes_inside_a_valid_index(tiles_copy):
    shard = first_shard(tiles_copy)
    with shard.open("r+b") as handle:
        handle.seek(0)
        handle.write(b"\x00" * 64)  # the first tile's zstd frame header
    with pytest.raises(CorruptShard, match="tile 0 does not decode"):
        open_store(list_store_paths(tiles_copy)[0]).read([0])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_train_ssl_on_a_truncated_shard_is_one_line(num_workers, tiles_copy, tmp_path, capfd):
    shard = first_shard(tiles_copy)
    with shard.open("r+b") as handle:
        handle.truncate(100)
    status, lines, _ = run_cli(
        [
            "train-ssl",
            "--config",
            DINO_TINY,
            f"data={tiles_copy}",
            f"out={tmp_path / 'r'}",
            *SMOKE,
            f"train.num_workers={num_workers}",
            "train.batch_size=64",
        ],
        capfd,
    )
    assert_one_line(status, lines, 2, str(shard), "corrupt shard file")


def test_error_line_keeps_the_original_error_of_a_dataloader_worker():
    wrapped = CorruptShard(
        "Caught CorruptShard in DataLoader worker process 0.\nOriginal Traceback (most recent "
        'call last):\n  File "x.py", line 1, in f\n    g()\ntiling.shards.CorruptShard: '
        "/s/0: corrupt shard file, truncated"
    )
    assert error_line(wrapped) == "/s/0: corrupt shard file, truncated"
    assert error_line(ValueError("first\nsecond")) == "first"


def test_corrupt_bank_chunk_is_a_bank_error(tmp_path):
    stores = [str(tmp_path / "a"), str(tmp_path / "b")]
    writer = BankWriter(
        tmp_path / "bank", stores, np.array([0, 1]), np.array([3, 4]), {"mode": "views", "n_views": 1, "image_size": 8}
    )
    for row in range(2):
        writer.write_row(row, np.full((1, 8, 8, 3), row + 1, np.uint8), np.array([row]))
    writer.finish()
    chunks = [p for p in (tmp_path / "bank").rglob("*") if p.is_file() and "views" in p.parts and p.name != "zarr.json"]
    for chunk in chunks:
        chunk.write_bytes(b"\x28\xb5\x2f\xfd garbage")  # a zstd magic number and nothing valid after it
    with pytest.raises(BankError, match="row 0 of the views cannot be read"):
        ViewBank(tmp_path / "bank").views(0)


def test_truncated_completion_files_never_read_as_complete(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"x")
    (model / "config.json").write_text('{"timm_name": "test_vit", "embed')  # a write cut short
    assert not model_complete(model)
    write_json_atomic(model / "config.json", {"timm_name": "test_vit"})
    assert model_complete(model) and is_json_file(model / "config.json")
    assert not list(model.glob(".*.tmp"))
    (tmp_path / "results.json").write_text('{"results": [')
    with pytest.raises(ValueError, match=f"{tmp_path / 'results.json'}: unreadable benchmark results"):
        read_json(tmp_path / "results.json", "benchmark results")


def test_write_json_atomic_leaves_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "results.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1} and os.listdir(tmp_path) == ["results.json"]


def mark_incomplete(store: Path) -> None:
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["complete"] = False
    (store / "zarr.json").write_text(json.dumps(meta))


def test_embed_on_a_folder_without_complete_stores_fails(tiles_copy, tiny_encoder, capfd):
    for store in list_store_paths(tiles_copy):
        mark_incomplete(store)
    status, lines, _ = run_cli(["embed", tiny_encoder, tiles_copy, "--workers", "0", "--no-progress"], capfd)
    assert_one_line(status, lines, 2, str(tiles_copy), "none of its 2 slide stores is complete")


def test_readers_of_a_partly_incomplete_folder_name_the_skipped_stores(tiles_copy, caplog):
    skipped = list_store_paths(tiles_copy)[0]
    mark_incomplete(skipped)
    with caplog.at_level("WARNING"):
        kept = complete_store_paths(tiles_copy)
    assert kept == list_store_paths(tiles_copy)[1:]
    assert skipped.name in caplog.text and "1 incomplete" in caplog.text


def test_no_stores_at_all_is_a_store_error(tmp_path):
    (tmp_path / "tiles.zarr").mkdir()
    with pytest.raises(StoreError, match="no slide stores"):
        complete_store_paths(tmp_path)


def test_generate_refuses_embeddings_with_the_wrong_row_count(tiles_copy, tiny_encoder, tiny_ldm_dir, tmp_path, capfd):
    assert main(["embed", str(tiny_encoder), str(tiles_copy), "--name", "enc", "--workers", "0", "--no-progress"]) == 0
    store = list_store_paths(tiles_copy)[0]
    array = embedding_path(store, "enc")
    rows = zarr.open_array(array, mode="r+")
    rows.resize((rows.shape[0] - 5, rows.shape[1]))
    capfd.readouterr()
    bank = tmp_path / "bank"
    status, lines, _ = run_cli(
        [
            "generate",
            tiny_ldm_dir,
            tiles_copy,
            "--out",
            bank,
            "--embeddings",
            "enc",
            "--n-views",
            "1",
            "--steps",
            "2",
            "--device",
            "cpu",
        ],
        capfd,
    )
    assert_one_line(status, lines, 2, str(array), "embedding rows for")
    assert not bank_complete(bank)
