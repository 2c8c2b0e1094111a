"""A real dashboard server on loopback and a real headless Chromium."""

from __future__ import annotations

import threading

import pytest

from config import PROJECT_ROOT, Settings
from reports.chromium import DEFAULT_CHROMIUM as CHROMIUM  # noqa: E402
from reports.chromium import PLAYWRIGHT_ARGS as CHROMIUM_ARGS  # noqa: E402

ARTIFACTS = PROJECT_ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def dashboard_url(small_store):
    """Base URL of the dashboard on the small demo, served from a thread on a free port."""
    from werkzeug.serving import make_server

    from dashapp import build_app

    app = build_app(small_store, Settings.from_env(), warm=False)
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ARTIFACTS.mkdir(exist_ok=True)
    # Playwright evaluates string predicates with eval(), which the dashboard's content
    # security policy forbids; tests/browser/test_access.py checks the page under the
    # policy with a page that does not bypass it.
    context = browser.new_context(viewport={"width": 1500, "height": 900}, bypass_csp=True)
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()
