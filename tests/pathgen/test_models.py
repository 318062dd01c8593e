"""Encoders on disk: safetensors + config.json round trip, timm loading, local initial weights."""

import pytest
import timm
import torch
from safetensors.torch import save_file

from pathgen.models import (
    BackboneConfig,
    EncoderConfig,
    create_backbone,
    load_encoder,
    save_encoder,
)
from pathgen.models.backbone import backbone_kwargs


def _saved(tmp_path):
    cfg = BackboneConfig(name="test_vit", img_size=64)
    model, dim = create_backbone(cfg)
    save_encoder(model, EncoderConfig("test_vit", dim, backbone_kwargs(cfg), input_size_px=64, mpp=1.0), tmp_path)
    return model.eval()


def test_round_trip_with_one_call_and_with_timm(tmp_path):
    model = _saved(tmp_path)
    x = torch.randn(2, 3, 64, 64)
    loaded, config = load_encoder(tmp_path)
    assert config.embed_dim == 64 and config.mpp == 1.0 and config.input_size_px == 64
    torch.testing.assert_close(loaded(x), model(x))
    via_timm = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    torch.testing.assert_close(via_timm(x), model(x))
    data = timm.data.resolve_data_config({}, model=via_timm)
    assert data["input_size"] == (3, 64, 64) and tuple(data["mean"]) == config.mean and tuple(data["std"]) == config.std


def test_init_checkpoint_loads_local_safetensors_only(tmp_path):
    model = _saved(tmp_path)
    started, _ = create_backbone(
        BackboneConfig(name="test_vit", img_size=64, init_checkpoint=str(tmp_path / "model.safetensors"))
    )
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(started.eval()(x), model(x))
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ValueError, match="must be a .safetensors file"):
        create_backbone(BackboneConfig(name="test_vit", img_size=64, init_checkpoint=str(tmp_path / "weights.pt")))


def test_weights_of_another_architecture_are_refused(tmp_path):
    save_file({"foo.weight": torch.zeros(3, 3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="do not fit the backbone"):
        create_backbone(
            BackboneConfig(name="test_vit", img_size=64, init_checkpoint=str(tmp_path / "other.safetensors"))
        )


def test_bad_config_json_names_the_file(tmp_path):
    _saved(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="config.json: not a pathgen encoder config"):
        load_encoder(tmp_path)


def test_evaluation_resize_keeps_aspect_and_crops_the_centre():
    from pathgen.models.embeddings import resize_and_crop

    image = torch.zeros(1, 3, 100, 200)
    image[..., :, 50:150] = 1.0  # a centred square of ones in a wide image
    out = resize_and_crop(image, 50)
    assert out.shape == (1, 3, 50, 50)
    assert out.mean().item() > 0.95  # only the centre square survives the crop
    square = torch.rand(2, 3, 64, 64)
    assert resize_and_crop(square, 64) is square
    assert resize_and_crop(square, 32).shape == (2, 3, 32, 32)
