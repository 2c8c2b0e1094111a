"""Shared fixtures: real DuckDB files in temporary folders, built once per session."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from datetime import date

import pytest

from data.store.database import Store
from geo.hierarchy import load_tree
from tests.scheduling import pytest_xdist_make_scheduler  # noqa: F401 (work units of ./dev test)

# Servers the tests start (python app.py serve) play no live demo day: it would add its
# records to what a test counts. tests/browser/test_live_demo_page.py turns it on.
os.environ["EMAP_LIVE_DEMO"] = "0"
# ... and no web workers: tests/browser/test_web_workers.py starts them itself.
os.environ["EMAP_WEB_PROCESSES"] = "0"

#: The fixed newest demo day used by tests (so figures do not depend on today's date).
DEMO_END = date(2026, 11, 20)


@pytest.fixture(scope="session")
def tree():
    """The organisation tree with its polygons (about 1.5 s to build)."""
    return load_tree()


@pytest.fixture(scope="session")
def small_demo_path(tmp_path_factory, tree):
    """Path of a DuckDB file holding the 'small' demo (2 cities, 2 days), built once
    (per run: xdist's workers each get a copy, tests/built_once.py)."""
    from data.demo import generator as demo
    from tests.built_once import built_once

    def build(path):
        with Store(path) as store:
            store.save_tree(tree)
            demo.generate(store, size="small", seed=7, days=2, end_date=DEMO_END)

    dest = tmp_path_factory.mktemp("demo") / "emap.duckdb"
    return built_once("small-demo", tmp_path_factory.getbasetemp(), dest, build)


@pytest.fixture(scope="session")
def ingest_template(tmp_path_factory, tree):
    """``(path, tokens by name)`` of a store with the tree and the ingest tests' devices
    (tests/ingest_support.py), built once: tests copy it and never write it."""
    from tests.ingest_support import build_store

    path = tmp_path_factory.mktemp("ingest-template") / "emap.duckdb"
    return path, build_store(path, tree)


@pytest.fixture(scope="session")
def small_store(small_demo_path):
    """A read-only store on the small demo, shared by tests that only read."""
    store = Store(small_demo_path, read_only=True)
    yield store
    store.close()


@pytest.fixture(scope="session")
def settings():
    """Documented defaults, unaffected by the environment the tests run in."""
    from config import Settings

    return Settings.from_env({})


@pytest.fixture(scope="session")
def small_model(small_store, settings):
    """The dashboard's view model on the small demo, shared by the tests that read it."""
    from views.model import Model

    return Model(small_store, settings)


@pytest.fixture
def empty_store(tmp_path, tree):
    """A fresh store with the tree and nothing else."""
    store = Store(tmp_path / "emap.duckdb")
    store.save_tree(tree)
    yield store
    store.close()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium (Debian's) for every browser test: Playwright's sync API
    allows one running instance per process."""
    from playwright.sync_api import sync_playwright

    from reports.chromium import DEFAULT_CHROMIUM, PLAYWRIGHT_ARGS

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=DEFAULT_CHROMIUM, args=PLAYWRIGHT_ARGS, headless=True)
        yield b
        b.close()


@contextmanager
def served(app):
    """Serve a Dash app on a free loopback port from a thread; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)
