"""Registry: every method builds from its default config; bad names and keys are clear errors."""

from __future__ import annotations

import dataclasses

import pytest
from ssl_backbones import TINY_CNN_DIM

from pathgen.ssl.base import SSLMethod
from pathgen.ssl.registry import METHODS, build_config, build_method


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_builds_with_reference_defaults(name, tiny_cnn):
    method = build_method(name, tiny_cnn, TINY_CNN_DIM, {})
    method_class, config_class = METHODS[name]
    assert isinstance(method, method_class) and isinstance(method, SSLMethod)
    assert method.cfg == config_class()
    assert len(method.crops) == 2


def test_reference_default_values():
    dino = build_config("dino")
    assert (dino.out_dim, dino.hidden_dim, dino.bottleneck_dim, dino.norm_last_layer) == (65536, 2048, 256, True)
    assert (dino.student_temp, dino.teacher_temp, dino.warmup_teacher_temp, dino.warmup_teacher_temp_epochs) == (
        0.1,
        0.04,
        0.04,
        0,
    )
    assert (dino.center_momentum, dino.momentum_teacher, dino.freeze_last_layer_epochs) == (0.9, 0.996, 1)
    assert (dino.n_global, dino.n_local, dino.koleo_weight) == (2, 8, 0.0)
    barlow = build_config("barlow")
    assert (barlow.lambd, barlow.scale_loss) == (0.0051, 0.048)
    assert build_config("simclr").temperature == 0.2
    assert build_config("mocov3").temperature == 0.2


def test_config_overrides_and_errors(tiny_cnn):
    method = build_method(
        "dino", tiny_cnn, TINY_CNN_DIM, {"out_dim": 16, "hidden_dim": 8, "bottleneck_dim": 4, "n_local": 0}
    )
    assert method.crops == (2, 0) and method.cfg.out_dim == 16
    with pytest.raises(ValueError, match="unknown key 'teacher_tmp' in the dino config"):
        build_method("dino", tiny_cnn, TINY_CNN_DIM, {"teacher_tmp": 0.07})
    with pytest.raises(ValueError, match="unknown SSL method 'swav'"):
        build_method("swav", tiny_cnn, TINY_CNN_DIM, {})


def test_config_dataclasses_have_defaults_for_every_field():
    for _, config_class in METHODS.values():
        assert all(f.default is not dataclasses.MISSING for f in dataclasses.fields(config_class))
