"""Fixtures the browser tests share: one app server on the tiny checkpoints
(``tests/app_checkpoints.py``) and one screenshot folder for the whole session, and a Chromium per module.

Every module here used to start its own server and browser on identical assets (six servers, six
first explanations). The modules only open new pages and read what the app shows, so one server
serves them all; its caches are warm after the first module, which the tests allow for (the what-if
test accepts a pass already cached). Under ``pytest -n`` every test of this folder runs, in order,
on one worker (the scheduler in ``tests/conftest.py``), which starts the server once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.server import browser_test_assets, serve_assets
from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    yield from serve_assets(tmp_path_factory, browser_test_assets(tmp_path_factory, "app-assets"))


class Pages:
    """What the tests open pages in: one Chromium profile for the whole session.

    Every page used to get a fresh browser context, with empty HTTP and code caches: Chromium parsed
    and compiled Streamlit's scripts again for each of the session's ~30 pages, about 4.5 s of CPU
    each (measured on the 2-core machine). Pages of one profile share the caches, and the profile
    outlives each module's browser, so after the first pages a page costs under 2 s. Each page still
    has its own Streamlit session (its own websocket).
    """

    def __init__(self, context) -> None:
        self.context = context

    def new_page(self, viewport: dict | None = None, color_scheme: str = "light"):
        page = self.context.new_page()
        if viewport:
            page.set_viewport_size(viewport)
        page.emulate_media(color_scheme=color_scheme)
        return page


@pytest.fixture(scope="session")
def browser_profile(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("chromium-profile")


@pytest.fixture(scope="module")
def browser(browser_profile):
    """A Chromium per module on the session's profile (:class:`Pages`). Playwright's sync API keeps an
    asyncio loop running in this thread while it is open, and a later test of the same process that
    calls ``asyncio.run`` (``tests/test_st_protocol.py``) would fail, so it closes when the module's
    tests are done."""
    if CHROMIUM is None:
        pytest.skip("no `chromium` on PATH (install Debian's chromium to run the browser test)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(str(browser_profile), executable_path=CHROMIUM,
                                                        args=CHROMIUM_ARGS, accept_downloads=True)
        yield Pages(context)
        context.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    target = os.environ.get("APINET_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
