"""Fixtures for the SSL tests: fresh tiny backbones, seeded."""

from __future__ import annotations

import pytest
import torch
from ssl_backbones import make_tiny_cnn, make_tiny_vit
from torch import nn


@pytest.fixture
def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    return make_tiny_vit()


@pytest.fixture
def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return make_tiny_cnn()
