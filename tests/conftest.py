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


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """Tiny random checkpoints, a runs folder and a gallery for app tests (one set per test module)."""
    from tests.app_checkpoints import make_app_assets

    return make_app_assets(tmp_path_factory.mktemp("app"))


@pytest.fixture()
def env(assets, monkeypatch):
    """Point the app at :func:`assets` through its environment variables."""
    monkeypatch.setenv("APINET_CHECKPOINT_DIR", str(assets["checkpoints"]))
    monkeypatch.setenv("APINET_RUNS_DIR", str(assets["runs"]))
    monkeypatch.setenv("APINET_GALLERY_DIR", str(assets["gallery"]))
    return assets
