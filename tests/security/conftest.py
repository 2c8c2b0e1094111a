"""Fixtures of the security suite: the app enumerated (callbacks and routes), the real
requests of a browser session, signed-in clients, and servers on stores of their own
where a test changes what others would see (the persisted sign-in limit, fuzzing)."""

# ruff: noqa: F811  (the shared fixtures are imported by name and used as arguments)
from __future__ import annotations

import logging
import os

import pytest

from config import Settings
from tests.auth_support import auth_store, auth_url, login  # noqa: F401
from tests.security.scope_support import USER, Secrets, copy_store_with_accounts, record_dashboard

# One line per request from the servers' log would bury the failures.
logging.getLogger("werkzeug").setLevel(logging.WARNING)

#: The fuzzers' default seed (issue 16).
DEFAULT_SEED = 16


@pytest.fixture(scope="session")
def enumerated(auth_store):
    """An app built as ``auth_url``'s is (sign-in, the ingest API), not served: the
    callbacks and routes to attack are read from it, so new ones are covered."""
    from data.ingest.http_api import make_ingest_blueprint
    from pages.app import build_app

    settings = Settings.from_env()
    bp = make_ingest_blueprint(auth_store, settings)
    app = build_app(auth_store, settings, blueprints=[bp], warm=False, prefetch=False, auth=True)
    yield app
    bp.committer.close()


@pytest.fixture(scope="session")
def recorded(browser, auth_url, auth_store):
    """The ``/_dash-update-component`` bodies Chromium sent while ``admin`` used the
    dashboard, per callback output (``{"bodies": {...}, "steps": [...]}``)."""
    rec = record_dashboard(browser, auth_url, auth_store)
    print("recorded steps:", *rec["steps"], sep="\n  ")
    return rec


@pytest.fixture(scope="session")
def clients(auth_url):
    """Signed-in clients (``requests.Session``, keep-alive) of the users the suite needs."""
    out = {}
    for uid in ("admin", USER, "shenzhen", "sz-viewer"):
        s, r = login(auth_url, uid)
        assert r.status_code == 302, (uid, r.status_code, r.text[:200])
        out[uid] = s
    return out


@pytest.fixture(scope="session")
def secrets(auth_store):
    return Secrets(auth_store)


def fuzz_cases() -> int:
    """Cases per fuzzed target: 200, or 2,000 with ``EMAP_FUZZ=long``."""
    return 2000 if os.environ.get("EMAP_FUZZ") == "long" else 200


@pytest.fixture(scope="session")
def fuzz_seed():
    """The fuzzers' seed: fixed (runs repeat), or ``EMAP_FUZZ_SEED``."""
    seed = int(os.environ.get("EMAP_FUZZ_SEED") or DEFAULT_SEED)
    print(f"fuzz seed: EMAP_FUZZ_SEED={seed} (cases per target: {fuzz_cases()})")
    return seed


@pytest.fixture(scope="session")
def fuzz_store(small_demo_path, tmp_path_factory):
    """A store of its own for fuzzing (junk sign-ins must not lock other tests out)."""
    store = copy_store_with_accounts(small_demo_path, tmp_path_factory.mktemp("fuzz") / "emap.duckdb")
    yield store
    store.close()
