"""Shared fixtures: seeded, small, CPU-only."""

from __future__ import annotations

import os
import sys

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # ``pytest -n N`` (the default, see pyproject.toml): N workers share the cores, so each computes on
    # one thread instead of every worker starting one thread per core. Subprocesses the tests start
    # (the app server, CLI runs) inherit OMP_NUM_THREADS.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def _scan_installed_components_once() -> None:
    """Every Streamlit runtime scans the metadata of every installed package for components (the
    v2 manifests) when it starts, and each ``AppTest`` starts one: 0.14 s each (measured), about a
    hundred times a run. The installed packages do not change during a run, so a process scans once."""
    from streamlit.components.v2 import manifest_scanner

    scan, found = manifest_scanner.scan_component_manifests, []

    def scan_once(max_workers: int | None = None):
        if not found:
            found.append(scan(max_workers))
        return list(found[0])

    manifest_scanner.scan_component_manifests = scan_once


_scan_installed_components_once()


#: Long modules without a costly module fixture: their tests go to the workers one by one.
SPLIT_MODULES = frozenset({"tests/test_figures_layout.py", "tests/test_figures_authors.py"})


def pytest_collection_modifyitems(config, items) -> None:
    """Run the browser tests first and :data:`SPLIT_MODULES` last (whole modules keep their order and
    stay together). Under ``pytest -n`` the work then ends with tests of a few seconds each, which even
    out the workers' last minute; when whole modules came last, one worker ran a 20 s module alone while
    the other had finished (measured)."""

    def rank(item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return 0 if path.startswith("tests/e2e/") else 2 if path in SPLIT_MODULES else 1

    items[:] = sorted(items, key=rank)  # stable: collection order within each rank


def pytest_xdist_make_scheduler(config, log):
    """``pytest -n N`` (``--dist load``, the default in pyproject.toml): hand out work units, in
    collection order, to the worker that is free. The browser tests (``tests/e2e/``) are one unit, so
    that one app server serves them all (``tests/e2e/conftest.py``); it is collected first. Every
    other module is one unit, so that its module fixtures are built once, not once per worker (the
    docs site, the app's assets, its cached explanations), except :data:`SPLIT_MODULES`, whose tests
    come last (:func:`pytest_collection_modifyitems`) and fill the workers' last minute one by one.
    pytest-xdist's own ``--dist loadgroup`` cannot do this with pytest 9 (it renames ``item._nodeid``,
    which pytest 9 no longer reads). Other ``--dist`` modes keep xdist's schedulers."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # collection order: browser tests first, split modules last

    class ModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith("tests/e2e/"):
                return "e2e"
            module = nodeid.split("::", 1)[0]
            return nodeid if module in SPLIT_MODULES else module

    return ModulesTogether(config, log)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _restore_main_module():
    """Streamlit's script runner (``AppTest``) installs the app script as ``sys.modules["__main__"]``
    and never puts the old one back. A later ``mp.spawn`` in the same process (the DDP tests) would
    then run that script in every child: the app itself, or a deleted temporary script of
    ``AppTest.from_function`` (the child fails). Which tests share a process depends on the order
    and, under pytest-xdist, on the worker, so every test gets back the ``__main__`` it started with."""
    main = sys.modules.get("__main__")
    yield
    if main is not None and sys.modules.get("__main__") is not main:
        sys.modules["__main__"] = main


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
