"""SyncBatchNorm conversion for multi-GPU training: only where it can run, parameters kept."""

from __future__ import annotations

import torch
from torch import nn

from pathgen.distributed import DistContext, sync_batchnorm_


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.Sequential(nn.BatchNorm1d(8), nn.GELU()), nn.Linear(8, 2))


def test_converts_on_several_gpus_and_keeps_the_parameter_objects():
    model = _model()
    weight, running_mean = model[1][0].weight, model[1][0].running_mean
    assert sync_batchnorm_(model, DistContext(0, 2, 0, torch.device("cuda", 0)))
    assert isinstance(model[1][0], nn.SyncBatchNorm)
    assert model[1][0].weight is weight and model[1][0].running_mean is running_mean


def test_leaves_single_process_cpu_and_batchnorm_free_models_alone():
    for context in (DistContext(0, 1, 0, torch.device("cuda", 0)), DistContext(0, 2, 0, torch.device("cpu"))):
        model = _model()
        assert not sync_batchnorm_(model, context)
        assert type(model[1][0]) is nn.BatchNorm1d
    assert not sync_batchnorm_(nn.Linear(2, 2), DistContext(0, 2, 0, torch.device("cuda", 0)))
