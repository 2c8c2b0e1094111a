"""Shared set-up of the access tests: a writable copy of the small demo with one account
per level, a node whose name holds markup, and a real server with sign-in on loopback."""

from __future__ import annotations

import re
import shutil
from contextlib import contextmanager

import pytest
import requests

from auth import users
from config import Settings
from data.demo.accounts import ACCOUNTS
from data.store.database import Store
from tests.conftest import served as serve_app

PASSWORD = "correct horse 42"
#: Extra accounts: a region viewer, a region manager granted courier positions, and one
#: kept for rate-limit tests so that other accounts are never locked out.
EXTRA = (
    ("sz-viewer", "viewer", "r-440300", False),
    ("sz-couriers", "manager", "r-440300", True),
    ("locked", "manager", "b-440305", False),
)
#: The markup put into a node name: it must show as text.
XSS_NAME = "南山区<img src=x onerror=alert(1)>"
XSS_NODE = "b-440305"


@pytest.fixture(scope="session")
def auth_store(small_demo_path, tmp_path_factory):
    """A writable copy of the small demo with the demo accounts and the extras."""
    path = tmp_path_factory.mktemp("auth") / "emap.duckdb"
    shutil.copy(small_demo_path, path)
    store = Store(path)
    users.ensure_tables(store)
    for uid, role, node, name in ACCOUNTS:
        users.create_user(store, uid, PASSWORD, role, node, name=name, by="test")
    for uid, role, node, couriers in EXTRA:
        users.create_user(store, uid, PASSWORD, role, node, can_see_couriers=couriers, by="test")
    store.cursor().execute("UPDATE nodes SET name = ? WHERE node_id = ?", [XSS_NAME, XSS_NODE])
    yield store
    store.close()


@pytest.fixture(scope="session")
def auth_url(auth_store):
    """Base URL of a dashboard with sign-in (and the ingest API) on a free loopback port."""
    from data.ingest.http_api import make_ingest_blueprint
    from pages.app import build_app

    settings = Settings.from_env()
    bp = make_ingest_blueprint(auth_store, settings)
    app = build_app(auth_store, settings, blueprints=[bp], warm=False, prefetch=False, auth=True)
    with serve_app(app) as url:
        yield url
    bp.committer.close()


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def login(url: str, user: str, password: str = PASSWORD) -> tuple[requests.Session, requests.Response]:
    """A client session after posting the sign-in form (the response is not followed)."""
    s = requests.Session()
    token = csrf_of(s.get(f"{url}/login").text)
    r = s.post(
        f"{url}/login", data={"user": user, "password": password, "csrf": token}, allow_redirects=False
    )
    return s, r


@contextmanager
def signed_in_server(demo_path, folder, accounts, settings: Settings, token_name: str):
    """A dashboard with sign-in and the ingest API on a copy of a demo store in ``folder``,
    with ``accounts`` ((user, role, node), password :data:`PASSWORD`) and a system token:
    yields ``(url, app, store, ingest headers, a courier's device)``."""
    from data.ingest.http_api import make_ingest_blueprint
    from data.ingest.tokens import create_token
    from pages.app import build_app

    path = folder / "emap.duckdb"
    shutil.copy(demo_path, path)
    store = Store(path)
    users.ensure_tables(store)
    for uid, role, node in accounts:
        users.create_user(store, uid, PASSWORD, role, node, by="test")
    token = create_token(store, "system", token_name)
    device = store.scalar("SELECT min(device_id) FROM devices WHERE courier_id IS NOT NULL")
    bp = make_ingest_blueprint(store, settings)
    app = build_app(store, settings, blueprints=[bp], warm=False, prefetch=False, auth=True)
    try:
        with serve_app(app) as url:
            yield url, app, store, {"Authorization": f"Bearer {token}"}, device
    finally:
        bp.committer.close()
        store.close()
