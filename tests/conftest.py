"""Shared fixtures: seeded, small, CPU-only."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_apinet():
    """A ResNet-18 API-Net with 5 classes, in eval mode (built once per session)."""
    from apinet import APINet

    torch.manual_seed(0)
    return APINet("resnet18", num_classes=5).eval()
