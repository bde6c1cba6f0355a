"""Fixtures the browser tests share: one app server on the tiny checkpoints
(``tests/app_checkpoints.py``), one screenshot folder and one Chromium for the whole session.

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
    outlives every Chromium started on it, so after the first pages a page costs under 2 s. Each page still
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


class _Chromium:
    """The Chromium the browser tests share, started by the first of them and closed by the last of a
    row (:func:`pytest_runtest_teardown`).

    Playwright's sync API keeps an asyncio loop running in this thread while it is open, and a later
    test of the same process that calls ``asyncio.run`` (``tests/test_st_protocol.py``) would fail, so
    it must not stay open past the browser tests. It used to close with each module: eight Playwright
    drivers and Chromiums a run, about 1.4 s of CPU each to start (measured on the 2-core machine).
    The browser tests run in a row (on one worker under ``pytest -n``: ``tests/conftest.py``), so one
    is enough; a browser test after other tests starts a new one.
    """

    def __init__(self, profile: Path) -> None:
        self.profile, self._playwright, self._pages = profile, None, None

    def pages(self) -> Pages:
        if self._pages is None:
            from playwright.sync_api import sync_playwright

            self._playwright = sync_playwright().start()
            try:
                context = self._playwright.chromium.launch_persistent_context(
                    str(self.profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, accept_downloads=True)
            except BaseException:
                self.close()
                raise
            self._pages = Pages(context)
        return self._pages

    def close(self) -> None:
        pages, playwright, self._pages, self._playwright = self._pages, self._playwright, None, None
        try:
            if pages is not None:
                pages.context.close()
        finally:
            if playwright is not None:
                playwright.stop()


_CHROMIUM: list[_Chromium] = []  # the session's, for the teardown hook


@pytest.fixture(scope="session")
def _chromium(browser_profile):
    chromium = _Chromium(browser_profile)
    _CHROMIUM.append(chromium)
    yield chromium
    _CHROMIUM.remove(chromium)
    chromium.close()


@pytest.fixture()
def browser(_chromium) -> Pages:
    """The shared Chromium on the session's profile (:class:`Pages`, :class:`_Chromium`)."""
    if CHROMIUM is None:
        pytest.skip("no `chromium` on PATH (install Debian's chromium to run the browser test)")
    return _chromium.pages()


def pytest_runtest_teardown(item, nextitem) -> None:
    """Close the shared Chromium after the last browser test of a row (the next test is elsewhere)."""
    if nextitem is None or Path(nextitem.path).parent != Path(__file__).parent:
        for chromium in _CHROMIUM:
            chromium.close()


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    target = os.environ.get("APINET_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
