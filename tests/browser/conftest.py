"""A real dashboard server on loopback; pages of the session-wide Chromium
(the ``browser`` fixture of tests/conftest.py)."""

from __future__ import annotations

import pytest

from config import PROJECT_ROOT, Settings
from tests.conftest import served as serve_app

ARTIFACTS = PROJECT_ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def dashboard_url(small_store):
    """Base URL of the dashboard on the small demo, served from a thread on a free port."""
    from pages.app import build_app

    app = build_app(small_store, Settings.from_env(), warm=False)
    with serve_app(app) as url:
        yield url


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
