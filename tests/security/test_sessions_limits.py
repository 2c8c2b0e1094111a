"""Sessions that end and a sign-in limit that holds: a cookie copied before sign-out is
refused after it; the limit counts the real client (X-Forwarded-For only from a trusted
proxy) and survives a restart (failures kept in the store)."""

# ruff: noqa: F811
from __future__ import annotations

import os

import pytest
import requests

from config import Settings
from pages import ids
from tests.auth_support import PASSWORD, csrf_of, login
from tests.security.scope_support import OWN, copy_store_with_accounts, header_problems, serve_dashboard


def _settings(trusted: str | None) -> Settings:
    env = {k: v for k, v in os.environ.items() if k != "EMAP_TRUSTED_PROXIES"}
    if trusted is not None:
        env["EMAP_TRUSTED_PROXIES"] = trusted
    return Settings.from_env(env)


def _sign_in(url: str, user: str, password: str, forwarded: str | None = None) -> requests.Response:
    s = requests.Session()
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    token = csrf_of(s.get(f"{url}/login", headers=headers).text)
    return s.post(
        f"{url}/login",
        data={"user": user, "password": password, "csrf": token},
        headers=headers,
        allow_redirects=False,
    )


@pytest.fixture(scope="module")
def limits_store(small_demo_path, tmp_path_factory):
    """A store of its own: sign-in failures are kept in it."""
    store = copy_store_with_accounts(
        small_demo_path,
        tmp_path_factory.mktemp("limits") / "emap.duckdb",
        only=("locked", "sz-viewer", "sz-couriers", "nanshan"),
    )
    yield store
    store.close()


def test_a_cookie_copied_before_sign_out_is_refused_after_it(auth_url):
    s, r = login(auth_url, "nanshan")
    assert r.status_code == 302
    copied = s.cookies.get("emap_session")
    assert s.get(f"{auth_url}/_dash-layout").status_code == 200
    token = csrf_of(s.get(f"{auth_url}/logout").text)
    r = s.post(f"{auth_url}/logout", data={"csrf": token}, allow_redirects=False)
    assert r.status_code in (302, 303) and r.headers["Location"].startswith("/login")
    replay = requests.Session()
    replay.cookies.set("emap_session", copied)
    r = replay.get(f"{auth_url}/_dash-layout")
    assert r.status_code == 401 and "kpis" not in r.text
    r = replay.get(f"{auth_url}/?node={OWN}", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    body = {
        "output": f"{ids.KPIS}.children",
        "outputs": {"id": ids.KPIS, "property": "children"},
        "inputs": [{"id": ids.STATE, "property": "data", "value": {"node": OWN, "date": None, "hour": 10}}],
        "changedPropIds": [f"{ids.STATE}.data"],
        "state": [],
    }
    r = replay.post(f"{auth_url}/_dash-update-component", json=body)
    assert r.status_code == 401 and not header_problems(r)


def test_forwarded_for_from_an_untrusted_peer_does_not_dodge_the_limit(limits_store):
    with serve_dashboard(limits_store, _settings(None), blueprint=False) as (_, url):
        for i in range(5):
            r = _sign_in(url, "locked", "wrong one", forwarded=f"203.0.113.{i + 1}")
            assert r.status_code == 401
        r = _sign_in(url, "locked", PASSWORD, forwarded="203.0.113.99")
        assert r.status_code == 429 and not header_problems(r)


def test_behind_a_trusted_proxy_forwarded_clients_are_counted_apart(limits_store):
    with serve_dashboard(limits_store, _settings("127.0.0.1"), blueprint=False) as (_, url):
        for _ in range(5):
            assert _sign_in(url, "sz-couriers", "wrong one", forwarded="203.0.113.7").status_code == 401
        assert _sign_in(url, "sz-couriers", PASSWORD, forwarded="203.0.113.7").status_code == 429
        # another client behind the same proxy is not locked out by the first one
        assert _sign_in(url, "sz-couriers", PASSWORD, forwarded="198.51.100.9").status_code == 302


def test_the_sign_in_limit_survives_a_restart(limits_store):
    with serve_dashboard(limits_store, _settings(None), blueprint=False) as (_, url):
        for _ in range(5):
            assert _sign_in(url, "sz-viewer", "wrong one").status_code == 401
        assert _sign_in(url, "sz-viewer", PASSWORD).status_code == 429
    # a new app (a restart) on the same store
    with serve_dashboard(limits_store, _settings(None), blueprint=False) as (_, url):
        assert _sign_in(url, "sz-viewer", PASSWORD).status_code == 429
        # the limit is per name: another user from the same address still signs in
        assert _sign_in(url, "nanshan", PASSWORD).status_code == 302
