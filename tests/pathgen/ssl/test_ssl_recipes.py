"""The real-scale SSL configs are their papers' recipes, value by value (sources in docs/recipes.md), and
every pathology variant differs from its paper config only in the augmentations it says it changes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from pathgen.config import load_config, to_dict
from pathgen.distributed import DistContext, sync_batchnorm_
from pathgen.ssl.base import StepInfo
from pathgen.ssl.losses.moco import mocov2_loss
from pathgen.ssl.mocov3_vit import sincos_2d_position_embedding
from pathgen.ssl.registry import build_method
from pathgen.stages.train_ssl import SSLConfig, build_ssl_method
from pathgen.train import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = ROOT / "configs" / "ssl"
NO_PATHOLOGY = {"augment.rot90": False, "augment.vflip": False, "augment.hed_p": 0.0}

#: the published value of every number the recipe names; docs/recipes.md gives the source of each
PAPER: dict[str, dict[str, object]] = {
    "dino_vits16": {
        "method": "dino",
        "backbone.name": "vit_small_patch16_224",
        "backbone.drop_path_rate": 0.1,
        "method_options.out_dim": 65536,
        "method_options.hidden_dim": 2048,
        "method_options.bottleneck_dim": 256,
        "method_options.norm_last_layer": True,
        "method_options.use_bn_in_head": False,
        "method_options.student_temp": 0.1,
        "method_options.warmup_teacher_temp": 0.04,
        "method_options.teacher_temp": 0.04,
        "method_options.warmup_teacher_temp_epochs": 0,
        "method_options.center_momentum": 0.9,
        "method_options.momentum_teacher": 0.996,
        "method_options.freeze_last_layer_epochs": 1,
        "method_options.n_local": 8,
        "augment.recipe": "dino",
        "augment.global_scale": [0.4, 1.0],
        "augment.local_scale": [0.05, 0.4],
        "augment.local_size": 96,
        "augment.n_local": 8,
        "train.epochs": 100,
        "train.optimizer": "adamw",
        "train.lr": 0.0005,
        "train.min_lr": 1e-6,
        "train.warmup_epochs": 10,
        "train.weight_decay": 0.04,
        "train.weight_decay_end": 0.4,
        "train.clip_grad": 3.0,
        "train.clip_mode": "per_param",
        "total_batch": 512,
        **NO_PATHOLOGY,
    },
    "dino_vits16_300ep": {
        "method_options.teacher_temp": 0.07,
        "method_options.warmup_teacher_temp_epochs": 30,
        "method_options.norm_last_layer": False,
        "train.epochs": 300,
        "train.lr": 0.0005,
        "total_batch": 1024,
        **NO_PATHOLOGY,
    },
    "mocov3_vits16": {
        "method": "mocov3",
        "backbone.kwargs": {"num_heads": 12},
        "backbone.drop_path_rate": 0.0,
        "method_options.proj_hidden_dim": 4096,
        "method_options.proj_out_dim": 256,
        "method_options.proj_layers": 3,
        "method_options.pred_hidden_dim": 4096,
        "method_options.pred_last_bn": True,
        "method_options.temperature": 0.2,
        "method_options.momentum_base": 0.99,
        "method_options.momentum_final": 1.0,
        "method_options.stop_grad_patch_embed": True,
        "method_options.sincos_pos_embed": True,
        "method_options.mocov3_init": True,
        "method_options.decay_biases_and_norms": True,
        "augment.recipe": "byol",
        "augment.global_scale": [0.08, 1.0],
        "train.epochs": 300,
        "train.optimizer": "adamw",
        "train.lr": 1.5e-4,
        "train.min_lr": 0.0,
        "train.warmup_epochs": 40,
        "train.weight_decay": 0.1,
        "train.weight_decay_end": 0.1,
        "train.betas": [0.9, 0.999],
        "train.clip_grad": None,
        "total_batch": 1024,
        **NO_PATHOLOGY,
    },
    "simclr_resnet50": {
        "method": "simclr",
        "backbone.name": "resnet50",
        "method_options.proj_hidden_dim": 2048,
        "method_options.proj_out_dim": 128,
        "method_options.proj_bn": True,
        "method_options.temperature": 0.1,
        "augment.recipe": "simclr",
        "augment.global_scale": [0.08, 1.0],
        "train.epochs": 100,
        "train.optimizer": "lars",
        "train.lars_eta": 0.001,
        "train.lr": 0.3,
        "train.lr_scaling": "linear",
        "train.min_lr": 0.0,
        "train.warmup_epochs": 10,
        "train.weight_decay": 1e-6,
        "train.weight_decay_end": 1e-6,
        "total_batch": 4096,
        **NO_PATHOLOGY,
    },
    "byol_resnet50": {
        "method": "byol",
        "method_options.proj_hidden_dim": 4096,
        "method_options.proj_out_dim": 256,
        "method_options.pred_hidden_dim": 4096,
        "method_options.momentum_base": 0.99,
        "backbone.kwargs": {"zero_init_last": False},  # the paper ran without Goyal et al.'s γ = 0 (README)
        "method_options.momentum_final": 1.0,
        "augment.recipe": "byol",
        "augment.global_scale": [0.08, 1.0],
        "train.epochs": 100,
        "train.optimizer": "lars",
        "train.lars_eta": 0.001,
        "train.lr": 0.45,
        "train.min_lr": 0.0,
        "train.warmup_epochs": 10,
        "train.weight_decay": 1e-6,
        "train.weight_decay_end": 1e-6,
        "total_batch": 4096,
        **NO_PATHOLOGY,
    },
    "simsiam_resnet50": {
        "method": "simsiam",
        "method_options.proj_hidden_dim": 2048,
        "method_options.proj_out_dim": 2048,
        "method_options.pred_hidden_dim": 512,
        "method_options.fixed_predictor_lr": True,
        "method_options.decay_biases_and_norms": True,
        "augment.recipe": "symmetric",
        "backbone.kwargs": {"zero_init_last": False},
        "augment.global_scale": [0.2, 1.0],
        "train.epochs": 100,
        "train.optimizer": "sgd",
        "train.momentum": 0.9,
        "train.lr": 0.05,
        "train.min_lr": 0.0,
        "train.warmup_epochs": 0,
        "train.weight_decay": 1e-4,
        "train.weight_decay_end": 1e-4,
        "total_batch": 512,
        **NO_PATHOLOGY,
    },
    "mocov2_resnet50": {
        "method": "mocov2",
        "method_options.proj_hidden_dim": 2048,
        "method_options.proj_out_dim": 128,
        "method_options.queue_size": 65536,
        "method_options.temperature": 0.2,
        "method_options.momentum_base": 0.999,
        "method_options.momentum_final": 0.999,
        "method_options.symmetric": False,
        "method_options.shuffle_bn": True,
        "method_options.decay_biases_and_norms": True,
        "augment.recipe": "symmetric",
        "backbone.kwargs": {"zero_init_last": False},
        "augment.global_scale": [0.2, 1.0],
        "train.epochs": 200,
        "train.optimizer": "sgd",
        "train.momentum": 0.9,
        "train.lr": 0.03,
        "train.min_lr": 0.0,
        "train.warmup_epochs": 0,
        "train.weight_decay": 1e-4,
        "train.weight_decay_end": 1e-4,
        "total_batch": 256,
        **NO_PATHOLOGY,
    },
    "mocov2plus_resnet50": {  # solo-learn's mocov2plus.yaml, under its own name
        "method": "mocov2",
        "method_options.proj_out_dim": 256,
        "method_options.momentum_base": 0.99,
        "method_options.momentum_final": 0.999,
        "method_options.symmetric": True,
        "method_options.shuffle_bn": False,
        "method_options.decay_biases_and_norms": True,
        "augment.global_scale": [0.08, 1.0],
        "train.lr": 0.3,
        "train.weight_decay": 3e-5,
        "train.warmup_epochs": 10,
        **NO_PATHOLOGY,
    },
    "barlow_resnet50": {
        "method": "barlow",
        "method_options.proj_hidden_dim": 8192,
        "method_options.proj_out_dim": 8192,
        "method_options.lambd": 0.0051,
        "method_options.scale_loss": 1.0,
        "method_options.bias_and_norm_lr_scale": 0.0048 / 0.2,
        "augment.recipe": "byol",
        "augment.global_scale": [0.08, 1.0],
        "train.epochs": 1000,
        "train.optimizer": "lars",
        "train.lars_eta": 0.001,
        "train.lr": 0.2,
        "train.min_lr": 0.2 * 2048 / 256 / 1000,
        "train.warmup_epochs": 10,
        "train.weight_decay": 1e-6,
        "train.weight_decay_end": 1e-6,
        "total_batch": 2048,
        **NO_PATHOLOGY,
    },
}
GPUS = 8  # the per-GPU batch sizes in the configs assume one 8-GPU node (16 GPUs for dino_vits16_300ep)
PATHOLOGY_CHANGES = {
    "augment.rot90": True,
    "augment.vflip": True,
    "augment.hed_theta": 0.05,
    "augment.hed_p": 0.5,
    "augment.hed_units": "skimage",
}


def flat(tree: dict, prefix: str = "") -> dict[str, object]:
    """{"a": {"b": 1}} → {"a.b": 1}; method_options and backbone.kwargs stay whole dicts too."""
    out: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and name != "backbone.kwargs":
            out.update(flat(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def resolved(stem: str) -> dict[str, object]:
    return flat(to_dict(load_config(SSLConfig, CONFIGS / f"{stem}.yaml")))


def real_scale_stems() -> list[str]:
    return sorted(p.stem for p in CONFIGS.glob("*.yaml") if not p.stem.endswith("_tiny"))


def test_every_real_scale_config_is_a_paper_recipe_or_a_named_pathology_variant():
    stems = real_scale_stems()
    assert set(PAPER) <= set(stems)
    assert {s for s in stems if s not in PAPER} == {
        f"{s}_pathology" for s in PAPER if s not in ("dino_vits16_300ep", "mocov2plus_resnet50")
    }


@pytest.mark.parametrize("stem", sorted(PAPER))
def test_paper_config_has_the_published_values(stem):
    values, expected = resolved(stem), dict(PAPER[stem])
    gpus = 16 if stem == "dino_vits16_300ep" else GPUS
    if "total_batch" in expected:
        assert values["train.batch_size"] * values["train.grad_accum"] * gpus == expected.pop("total_batch")
    wrong = {
        key: (values.get(key, "missing"), want)
        for key, want in expected.items()
        if not (
            values.get(key) == want
            or (
                isinstance(want, float)
                and isinstance(values.get(key), float)
                and math.isclose(values[key], want, rel_tol=1e-9)
            )
        )
    }
    assert not wrong, f"{stem}.yaml differs from its paper (have, want): {wrong}"


@pytest.mark.parametrize("stem", sorted(s for s in PAPER if f"{s}_pathology" in real_scale_stems()))
def test_pathology_variant_changes_only_the_augmentations_it_names(stem):
    paper, variant = resolved(stem), resolved(f"{stem}_pathology")
    changed = {key: variant[key] for key in variant if variant[key] != paper.get(key)}
    assert changed == {key: value for key, value in PATHOLOGY_CHANGES.items() if paper.get(key) != value}
    assert "PATHOLOGY VARIANT" in (CONFIGS / f"{stem}_pathology.yaml").read_text().splitlines()[0]


def test_docs_and_readme_link_every_real_scale_config():
    recipes, readme = (ROOT / "docs" / "recipes.md").read_text(), (ROOT / "README.md").read_text()
    for stem in real_scale_stems():
        assert f"configs/ssl/{stem}.yaml" in recipes, f"docs/recipes.md does not document {stem}.yaml"
        assert f"configs/ssl/{stem}.yaml" in readme, f"README's method table does not link {stem}.yaml"


def test_mocov3_vits16_builds_moco_v3s_vit_and_predictor():
    method = build_ssl_method(load_config(SSLConfig, CONFIGS / "mocov3_vits16.yaml"))
    vit = method.backbone
    assert vit.blocks[0].attn.num_heads == 12 and vit.embed_dim == 384
    assert not vit.pos_embed.requires_grad and not vit.patch_embed.proj.weight.requires_grad
    assert torch.equal(vit.pos_embed.detach(), sincos_2d_position_embedding(14, 14, 384))
    assert torch.equal(method.momentum_backbone.pos_embed, vit.pos_embed)
    last = method.predictor[-1]
    assert isinstance(last, nn.BatchNorm1d) and not last.affine
    assert all(m.bias is None for m in method.predictor.modules() if isinstance(m, nn.Linear))
    assert len(method.param_groups()) == 1 and "weight_decay" not in method.param_groups()[0]
    assert vit.cls_token.std().item() < 1e-5  # MoCo v3's init: N(0, 1e-6²)


def test_sincos_embedding_matches_a_hand_computed_entry():
    table = sincos_2d_position_embedding(3, 2, 8)  # 3 rows, 2 columns, 2 frequencies per quarter
    assert table.shape == (1, 7, 8) and torch.equal(table[0, 0], torch.zeros(8))
    # token 1 + k, k = w·grid_h + h (MoCo v3's meshgrid(w, h) order); frequencies 1 and 1/100
    w, h = 1, 2
    token = table[0, 1 + w * 3 + h]
    expected = [
        math.sin(w),
        math.sin(w / 100),
        math.cos(w),
        math.cos(w / 100),
        math.sin(h),
        math.sin(h / 100),
        math.cos(h),
        math.cos(h / 100),
    ]
    assert torch.allclose(token, torch.tensor(expected), atol=1e-6)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d_position_embedding(2, 2, 6)


@pytest.mark.parametrize(
    "stem, zero_gamma",
    [("barlow_resnet50", True), ("simclr_resnet50", True), ("byol_resnet50", False), ("mocov2_resnet50", False)],
)
def test_resnet_last_bn_init_follows_the_recipe(stem, zero_gamma):
    cfg = load_config(
        SSLConfig, CONFIGS / f"{stem}.yaml", ["method_options.proj_hidden_dim=64", "method_options.proj_out_dim=32"]
    )
    backbone = build_ssl_method(cfg).backbone
    assert bool(torch.all(backbone.layer1[0].bn3.weight == 0)) is zero_gamma


def test_simclr_head_is_v1s_bn_head():
    method = build_ssl_method(load_config(SSLConfig, CONFIGS / "simclr_resnet50.yaml"))
    linears = [m for m in method.projector if isinstance(m, nn.Linear)]
    norms = [m for m in method.projector if isinstance(m, nn.BatchNorm1d)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2048, 2048), (2048, 128)]
    assert all(m.bias is None for m in linears) and len(norms) == 2
    assert norms[-1].weight.requires_grad and not norms[-1].bias.requires_grad  # scale, no shift


def test_mocov2_with_shuffled_bn_keeps_per_rank_batchnorm():
    shuffled = build_ssl_method(load_config(SSLConfig, CONFIGS / "mocov2_resnet50.yaml", ["backbone.name=resnet18"]))
    plus = build_ssl_method(load_config(SSLConfig, CONFIGS / "mocov2plus_resnet50.yaml", ["backbone.name=resnet18"]))
    gpus = DistContext(0, 2, 0, torch.device("cuda", 0))
    assert not sync_batchnorm_(shuffled, gpus)
    assert sync_batchnorm_(plus, gpus) and any(isinstance(m, nn.SyncBatchNorm) for m in plus.modules())


def test_mocov2_one_direction_uses_one_queue_of_view_2_keys():
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    options = {"proj_hidden_dim": 8, "proj_out_dim": 4, "queue_size": 16, "symmetric": False}
    method = build_method("mocov2", backbone, 4, options)
    views = [torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)]
    with torch.no_grad():
        key_2 = method.momentum_projector(method.momentum_backbone(views[1]))
    queue_before = method.queues[0].keys.clone()
    loss = method(views, StepInfo(0, 10, 0.0))["loss"]
    query_1 = method.projector(method.backbone(views[0]))
    assert len(method.queues) == 1 and int(method.queues[0].pointer) == 4
    assert torch.allclose(loss, mocov2_loss(query_1, key_2, queue_before, 0.2), atol=1e-6)
    assert torch.allclose(method.queues[0].keys[:4], torch.nn.functional.normalize(key_2, dim=1), atol=1e-6)


class _TwoGroups(nn.Module):
    """A model whose bias group runs at a scaled LR, as Barlow Twins' biases and norms do."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(4, 1)

    def param_groups(self) -> list[dict]:
        return [{"params": [self.layer.weight]}, {"params": [self.layer.bias], "weight_decay": 0.0, "lr_scale": 0.024}]

    def forward(self, batch: list[torch.Tensor], info: StepInfo) -> dict[str, torch.Tensor]:
        x, y = batch
        return {"loss": (self.layer(x) - y).pow(2).mean()}


def test_trainer_applies_the_groups_lr_scale_through_the_whole_schedule(tmp_path):
    data = TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    cfg = TrainConfig(
        epochs=2,
        batch_size=8,
        lr=0.2,
        lr_scaling="none",
        min_lr=0.0002,
        warmup_epochs=1,
        optimizer="lars",
        clip_grad=None,
        num_workers=0,
        progress=False,
        device="cpu",
    )
    trainer = Trainer(cfg, _TwoGroups(), data, tmp_path)
    for step in (0, 4, 8, 15, 16):
        trainer.step = step
        trainer._apply_schedules()
        weights, biases = trainer.optimizer.param_groups
        assert biases["lr"] == pytest.approx(0.024 * weights["lr"], rel=1e-12)
    assert weights["lr"] == pytest.approx(0.0002) and biases["lr"] == pytest.approx(0.0002 * 0.024)


TINY_AS_BEFORE = {  # what the tiny configs ran with before the recipe fixes (their comments' numbers)
    "mocov3_tiny": {"method_options.pred_last_bn": False, "method_options.decay_biases_and_norms": False},
    "simsiam_tiny": {"method_options.decay_biases_and_norms": False},
}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*_tiny.yaml")), ids=lambda p: p.stem)
def test_tiny_configs_keep_the_behaviour_they_were_measured_with(path):
    values = resolved(path.stem)
    assert values["augment.hed_units"] == "ln_od"
    assert values.get("method_options.sincos_pos_embed", False) is False
    assert values.get("method_options.bias_and_norm_lr_scale", 1.0) == 1.0
    for key, want in TINY_AS_BEFORE.get(path.stem, {}).items():
        assert values[key] == want, key
