"""Model folders: timm folders in, pathgen folders out to plain timm, format-1 folders still load, the trust boundary
of config.json (timm kwargs allow-list) and of weights files (corrupt / renamed pickles), and VAE / LDM folders
through the same helper."""

from __future__ import annotations

import json
import pickle

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models import save_for_hf
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from pathgen.cli import main
from pathgen.diffusion.ldm_io import load_ldm
from pathgen.diffusion.vae import VAEConfig, build_vae, load_codec, save_vae
from pathgen.models.embeddings import preprocess
from pathgen.models.folder import FORMAT_VERSION, ModelFolderError, load_weights
from pathgen.models.io import load_encoder, read_encoder_config


def _timm_folder(path, crop_pct=0.875):
    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False, num_classes=0, img_size=64, dynamic_img_size=True).eval()
    save_for_hf(
        model,
        str(path),
        safe_serialization=True,
        data_config={
            "input_size": (3, 64, 64),
            "mean": (0.7, 0.6, 0.7),
            "std": (0.2, 0.25, 0.2),
            "interpolation": "bicubic",
            "crop_pct": crop_pct,
        },
    )
    return model


def test_a_timm_folder_loads_with_its_pretrained_cfg_preprocessing(tmp_path):
    _timm_folder(tmp_path)
    encoder, config = load_encoder(tmp_path)
    assert (config.input_size_px, config.interpolation, config.crop_pct) == (64, "bicubic", 0.875)
    assert config.mean == (0.7, 0.6, 0.7) and config.source["format"] == "timm"
    tiles = torch.randint(0, 256, (2, 3, 80, 80), dtype=torch.uint8)
    reference = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    transform = T.Compose(
        [
            T.ToDtype(torch.float32, scale=True),
            T.Resize(73, InterpolationMode.BICUBIC, antialias=True),
            T.CenterCrop(64),
            T.Normalize((0.7, 0.6, 0.7), (0.2, 0.25, 0.2)),
        ]
    )  # floor(64 / 0.875)
    with torch.no_grad():
        torch.testing.assert_close(encoder(preprocess(tiles, config)), reference(transform(tiles)))


def test_pathgen_reads_format_1_folders(tmp_path, tiny_encoder):
    legacy = {
        "timm_name": "test_vit",
        "embed_dim": 64,
        "tile_size_px": 32,
        "mpp": 1.0,
        "timm_kwargs": {"num_classes": 0, "drop_path_rate": 0.0, "img_size": 32, "dynamic_img_size": True},
        "mean": [0.5, 0.5, 0.5],
        "std": [0.2, 0.2, 0.2],
        "source": {},
        "pathgen_version": "0.1",
    }
    (tmp_path / "config.json").write_text(json.dumps(legacy))
    (tmp_path / "model.safetensors").write_bytes((tiny_encoder / "model.safetensors").read_bytes())
    encoder, config = load_encoder(tmp_path)
    assert config.input_size_px == 32 and config.mean == (0.5, 0.5, 0.5) and config.pooling == "model"
    reference, _ = load_encoder(tiny_encoder)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(encoder(x), reference(x))
    block = json.loads((tiny_encoder / "config.json").read_text())["pathgen"]
    assert block["kind"] == "pathgen-encoder" and block["format_version"] == FORMAT_VERSION


@pytest.mark.parametrize("where", ["pathgen", "timm"])
def test_timm_kwargs_outside_the_allow_list_are_refused_in_one_line(tmp_path, tiny_tiles, capsys, where):
    _timm_folder(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    if where == "timm":
        config["model_args"]["checkpoint_path"] = "/etc/hostname"
    else:
        config = {"timm_name": "test_vit", "embed_dim": 64, "timm_kwargs": {"checkpoint_path": "/etc/hostname"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json: timm argument\(s\) checkpoint_path not allowed"):
        read_encoder_config(tmp_path)
    assert main(["embed", str(tmp_path), str(tiny_tiles), "--name", "x", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "checkpoint_path not allowed" in err


def test_layer_names_outside_the_table_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"timm_name": "test_vit", "embed_dim": 64, "timm_kwargs": {"mlp_layer": "os.system"}})
    )
    with pytest.raises(ValueError, match="mlp_layer 'os.system' is not one of"):
        read_encoder_config(tmp_path)


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


@pytest.mark.parametrize("damage", ["truncated", "pickle_renamed", "random_bytes"])
def test_corrupt_weights_are_one_line_exit_2_in_embed(tmp_path, tiny_encoder, tiny_tiles, capsys, damage):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_encoder / "config.json").read_text())
    good = (tiny_encoder / "model.safetensors").read_bytes()
    damaged = {
        "truncated": good[: len(good) // 2],
        "pickle_renamed": pickle.dumps({"x": _Payload()}),
        "random_bytes": bytes(range(256)) * 8,
    }[damage]
    (folder / "model.safetensors").write_bytes(damaged)
    assert main(["embed", str(folder), str(tiny_tiles), "--name", "x", "--no-progress"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "model.safetensors: not a readable safetensors file" in err
    assert "unpickled!" not in captured.out + captured.err


def test_pickled_weights_only_with_the_flag_and_never_arbitrary_objects(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.bin")
    with pytest.raises(ModelFolderError, match="pickled weights file is not loaded by default"):
        load_weights(tmp_path / "ok.bin")
    assert torch.equal(load_weights(tmp_path / "ok.bin", allow_pickle=True)["w"], torch.ones(2))
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(_Payload()))
    with pytest.raises(ModelFolderError, match=r"evil.bin: not a pathgen checkpoint \(refused to unpickle"):
        load_weights(tmp_path / "evil.bin", allow_pickle=True)


def test_model_folder_errors_pickle_round_trip():
    err = ModelFolderError("/x/model.safetensors: not a readable safetensors file")
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is ModelFolderError and str(again) == str(err)


def test_vae_and_ldm_folders_use_the_helper(tmp_path, tiny_ldm_dir):
    cfg = VAEConfig(block_out_channels=[16, 32], norm_num_groups=8)
    vae_dir = save_vae(build_vae(cfg), cfg, 0.5, tmp_path / "vae", image_size=16)
    assert json.loads((vae_dir / "config.json").read_text())["format_version"] == FORMAT_VERSION
    assert not list(vae_dir.glob(".*tmp*"))
    (vae_dir / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"vae/model.safetensors: not a readable safetensors file"):
        load_codec(vae_dir)
    config = json.loads((tiny_ldm_dir / "config.json").read_text())
    assert config["kind"] == "pathgen-ldm" and config["format_version"] == FORMAT_VERSION
    broken = tmp_path / "ldm"
    broken.mkdir()
    for name in ("vae", "encoder"):
        (broken / name).symlink_to(tiny_ldm_dir / name)
    (broken / "config.json").write_text(json.dumps({**config, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(ValueError, match="format_version 3 is not one this pathgen reads"):
        load_ldm(broken)
    (broken / "config.json").write_text(json.dumps(config))
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match=r"ldm/model.safetensors: not a readable safetensors file"):
        load_ldm(broken)


def test_a_weights_file_that_does_not_fit_names_it(tmp_path, tiny_encoder):
    (tmp_path / "config.json").write_text((tiny_encoder / "config.json").read_text())
    save_file({"foo": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model.safetensors: weights do not fit test_vit"):
        load_encoder(tmp_path)


def test_a_timm_classifier_folder_loads_headless(tmp_path):
    torch.manual_seed(0)
    classifier = timm.create_model("test_vit", pretrained=False, num_classes=10, img_size=64).eval()
    save_for_hf(classifier, str(tmp_path), safe_serialization=True)
    encoder, config = load_encoder(tmp_path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = classifier.forward_head(classifier.forward_features(x), pre_logits=True)
    torch.testing.assert_close(encoder(x), expected)
    assert config.embed_dim == expected.shape[1]


def test_a_missing_recipe_weights_file_names_it(tmp_path, tiny_tiles, capsys):
    assert main(["embed", f"uni:{tmp_path / 'nope.safetensors'}", str(tiny_tiles), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.safetensors: weights file not found" in err
