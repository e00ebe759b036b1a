"""Fixtures for real-browser tests: a Jupyter server per test, one headless Chromium per module."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import ARTIFACTS, JupyterServer, launch_chromium  # noqa: E402

ARTIFACTS.mkdir(parents=True, exist_ok=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def server_factory(tmp_path):
    servers: list[JupyterServer] = []

    def make(app: str) -> JupyterServer:
        server = JupyterServer(tmp_path / f"{app}-{len(servers)}", app)
        servers.append(server)
        return server

    yield make
    leftovers = [pid for server in servers for pid in server.stop()]
    assert not leftovers, f"kernel processes outlived their server: {leftovers}"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's driver puts browser profiles under $TMPDIR: keep them with the artifacts,
    # for the driver only (the rest of the test session keeps its own TMPDIR)
    profiles = ARTIFACTS / "tmp"
    profiles.mkdir(exist_ok=True)
    old = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(profiles)
    try:
        pw = sync_playwright().start()
    finally:
        if old is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old
    try:
        chromium = launch_chromium(pw)
        yield chromium
        chromium.close()
    finally:
        pw.stop()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1100}, device_scale_factor=1)
    context.set_default_timeout(60_000)
    pg = context.new_page()
    pg.errors = []

    def on_error(exc) -> None:
        stack = getattr(exc, "stack", "") or ""
        # Notebook 7.6 itself throws "reading 'schema'" from its settings code with any notebook
        if "/static/notebook/notebook_core." in stack and "'schema'" in str(exc):
            return
        pg.errors.append(f"{exc}\n{stack[:600]}")

    pg.on("pageerror", on_error)
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        try:
            pg.screenshot(path=str(ARTIFACTS / f"FAILED_{request.node.name}.png"), full_page=True)
        except Exception:  # noqa: BLE001 - a screenshot must not hide the real failure
            pass
    context.close()
