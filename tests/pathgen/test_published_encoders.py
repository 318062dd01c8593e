"""Published encoders in: random-weight stand-ins of UNI, UNI2-h, Virchow2, H-optimus-0/1 and Prov-GigaPath (the
architectures and kwargs of their model cards, depth 1 and a reduced width) give, through pathgen, the embeddings
of a direct timm forward with the published preprocessing written here with torchvision."""

from __future__ import annotations

import shutil

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2 as T

from pathgen.cli import main
from pathgen.eval.features import FrozenEncoder
from pathgen.models.embeddings import preprocess, read_embeddings
from pathgen.models.io import load_encoder
from pathgen.models.published import RECIPES
from tiling.store import TileStore, list_store_paths

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HOPTIMUS = ((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517))
SWIGLU = {"mlp_layer": timm.layers.SwiGLUPacked, "act_layer": nn.SiLU}

# name: (timm architecture, model-card kwargs with depth 1 and width 2 heads, resize, crop, interpolation, mean/std,
#        embedding)
STAND_INS = {
    "uni": (
        "vit_large_patch16_224",
        {
            "img_size": 224,
            "patch_size": 16,
            "init_values": 1e-5,
            "dynamic_img_size": True,
            "depth": 1,
            "embed_dim": 128,
            "num_heads": 2,
        },
        224,
        224,
        InterpolationMode.BILINEAR,
        IMAGENET,
        "cls",
    ),
    "uni2-h": (
        "vit_giant_patch14_224",
        {
            "img_size": 224,
            "patch_size": 14,
            "depth": 1,
            "num_heads": 2,
            "init_values": 1e-5,
            "embed_dim": 128,
            "mlp_ratio": 2.66667 * 2,
            "no_embed_class": True,
            "reg_tokens": 8,
            "dynamic_img_size": True,
            **SWIGLU,
        },
        224,
        224,
        InterpolationMode.BILINEAR,
        IMAGENET,
        "cls",
    ),
    "virchow2": (
        "vit_huge_patch14_224",
        {
            "img_size": 224,
            "init_values": 1e-5,
            "reg_tokens": 4,
            "mlp_ratio": 5.3375,
            "global_pool": "",
            "dynamic_img_size": True,
            "depth": 1,
            "embed_dim": 160,
            "num_heads": 2,
            **SWIGLU,
        },
        224,
        224,
        InterpolationMode.BICUBIC,
        IMAGENET,
        "cls+mean_patch",
    ),
    "h-optimus-0": (
        "vit_giant_patch14_reg4_dinov2",
        {
            "img_size": 224,
            "global_pool": "token",
            "init_values": 1e-5,
            "dynamic_img_size": True,
            "depth": 1,
            "embed_dim": 128,
            "num_heads": 2,
        },
        224,
        224,
        InterpolationMode.BILINEAR,
        HOPTIMUS,
        "cls",
    ),
    "h-optimus-1": (
        "vit_giant_patch14_reg4_dinov2",
        {
            "img_size": 224,
            "global_pool": "token",
            "init_values": 1e-5,
            "dynamic_img_size": True,
            "depth": 1,
            "embed_dim": 128,
            "num_heads": 2,
        },
        224,
        224,
        InterpolationMode.BILINEAR,
        HOPTIMUS,
        "cls",
    ),
    "prov-gigapath": (
        "vit_giant_patch14_dinov2",
        {
            "img_size": 224,
            "in_chans": 3,
            "patch_size": 16,
            "embed_dim": 128,
            "depth": 1,
            "num_heads": 2,
            "mlp_ratio": 5.33334,
            "dynamic_img_size": True,
        },
        256,
        224,
        InterpolationMode.BICUBIC,
        IMAGENET,
        "cls",
    ),
}


def _reference(name: str, model: nn.Module, tiles_u8: torch.Tensor) -> torch.Tensor:
    """The published inference path: torchvision Resize + CenterCrop + Normalize, then the paper's embedding."""
    _, _, resize, crop, interpolation, (mean, std), embedding = STAND_INS[name]
    transform = T.Compose(
        [
            T.ToDtype(torch.float32, scale=True),
            T.Resize(resize, interpolation, antialias=True),
            T.CenterCrop(crop),
            T.Normalize(mean, std),
        ]
    )
    with torch.no_grad():
        out = model(transform(tiles_u8))
    if embedding == "cls+mean_patch":  # Virchow2 model card: CLS ⊕ mean of tokens 5: (1 CLS + 4 registers first)
        return torch.cat([out[:, 0], out[:, 5:].mean(1)], dim=-1)
    return out


@pytest.mark.parametrize("name", sorted(STAND_INS))
def test_recipe_embeddings_equal_a_direct_timm_forward(name, tmp_path):
    architecture, kwargs = STAND_INS[name][:2]
    torch.manual_seed(0)
    model = timm.create_model(architecture, pretrained=False, num_classes=0, **kwargs).eval()
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    tiles = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8)
    encoder, config = load_encoder(f"{name}:{tmp_path}")
    with torch.no_grad():
        ours = encoder(preprocess(tiles, config))
    expected = _reference(name, model, tiles)
    assert ours.shape == expected.shape == (2, config.embed_dim)
    torch.testing.assert_close(ours, expected, atol=2e-5, rtol=1e-4)
    assert config.source["recipe"] == name and RECIPES[name].sources


def test_recipe_reads_a_bin_only_with_the_explicit_flag(tmp_path):
    architecture, kwargs = STAND_INS["uni"][:2]
    model = timm.create_model(architecture, pretrained=False, num_classes=0, **kwargs).eval()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin is a pickle: pass --allow-pickle-weights"):
        load_encoder(f"uni:{tmp_path}")
    encoder, _ = load_encoder(f"uni:{tmp_path / 'pytorch_model.bin'}", allow_pickle=True)
    x = torch.randn(1, 3, 224, 224)
    torch.testing.assert_close(encoder(x), model(x))


def test_weights_of_another_recipe_are_refused_naming_the_file(tmp_path):
    architecture, kwargs = STAND_INS["uni"][:2]
    save_file(
        timm.create_model(architecture, num_classes=0, **kwargs).state_dict(), str(tmp_path / "model.safetensors")
    )
    with pytest.raises(ValueError, match=r"model.safetensors: weights do not fit vit_huge_patch14_224"):
        load_encoder(f"virchow2:{tmp_path}")


def test_recipes_through_embed_and_bench_name_their_rows(tmp_path, tiny_tiles, capsys):
    architecture, kwargs = STAND_INS["uni"][:2]
    torch.manual_seed(0)
    model = timm.create_model(architecture, pretrained=False, num_classes=0, **kwargs).eval()
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    encoder = FrozenEncoder(f"UNI=uni:{tmp_path}", tmp_path / "cache")
    assert encoder.name == "UNI" and encoder.config.source["recipe"] == "uni"
    tiles = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    torch.testing.assert_close(encoder(tiles), _reference("uni", model, tiles))
    copy = tmp_path / "tiles"
    shutil.copytree(tiny_tiles, copy)
    assert main(["embed", f"uni:{tmp_path}", str(copy), "--workers", "0", "--no-progress"]) == 0
    assert "2 slides embedded" in capsys.readouterr().out
    store = list_store_paths(copy)[0]
    assert read_embeddings(store, "uni").shape == (len(TileStore(store)), 128)
