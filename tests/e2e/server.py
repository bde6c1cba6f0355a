"""Start and stop ``streamlit run streamlit_app.py`` on a free loopback port (browser tests, the
first-render benchmark and the screenshot script share it)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO, Iterator, Mapping

ROOT = Path(__file__).resolve().parents[2]


def keep_screenshots() -> bool:
    """Whether ``$APINET_SCREENSHOTS`` names a folder to keep the screenshots in. The tall, whole-tab
    screenshots (seconds each, only for a person to look at) are taken only then."""
    return bool(os.environ.get("APINET_SCREENSHOTS"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def streamlit_app(env: dict[str, str], log: IO[str] | None = None, *, timeout: float = 60,
                  script: str = "streamlit_app.py") -> Iterator[str]:
    """Yield the URL of a running app (``script``, relative to the repository; health check passed);
    raise ``RuntimeError`` with the end of its log when it does not come up within ``timeout``
    seconds. The server is stopped on exit."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=log if log is not None else subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = ""
                if log is not None:
                    log.seek(0)
                    tail = log.read()[-3000:]
                raise RuntimeError("streamlit did not start:\n" + tail)
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def browser_test_assets(tmp_path_factory, name: str) -> dict[str, Path]:
    """The tiny checkpoints, runs and gallery folders a browser test's server opens (no network); the
    test is skipped when there is no ``chromium`` on PATH."""
    import pytest

    from tests.e2e.test_browser import CHROMIUM

    if CHROMIUM is None:
        pytest.skip("no `chromium` on PATH (install Debian's chromium to run the browser test)")
    sys.path.insert(0, str(ROOT))
    from tests.app_checkpoints import make_app_assets

    return make_app_assets(tmp_path_factory.mktemp(name))


def serve_assets(tmp_path_factory, assets: Mapping[str, Path], extra: Mapping[str, str] | None = None,
                 timeout: float = 60) -> Iterator[str]:
    """For a pytest fixture: the app on ``assets`` (checkpoints / runs / gallery folders; ``extra``
    environment, such as ``APINET_ATLAS_DIR``), its log in a temporary folder; a server that does not
    start fails the test with the end of its log."""
    import pytest

    env = {**os.environ, "APINET_CHECKPOINT_DIR": str(assets["checkpoints"]),
           "APINET_RUNS_DIR": str(assets["runs"]), "APINET_GALLERY_DIR": str(assets["gallery"]), **(extra or {})}
    with open(tmp_path_factory.mktemp("server") / "streamlit.log", "w+") as log:
        try:
            with streamlit_app(env, log, timeout=timeout) as url:
                yield url
        except RuntimeError as exc:
            pytest.fail(str(exc))
