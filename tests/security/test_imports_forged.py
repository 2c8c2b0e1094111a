"""Forged HTTP requests to the imports page and to the one-click registration of an
unknown device, on a real loopback server: each right refused (403 and an audit line,
nothing stored), the CSRF token required, one import at a time, the size limit."""

# ruff: noqa: F811  (the shared fixtures are imported by name and used as arguments)
from __future__ import annotations

import json
import re
import time
from dataclasses import replace

import pytest
import requests

from config import Settings
from data.ingest.group_commit import GroupCommitter
from pages import ids
from tests.auth_support import auth_store, auth_url, login  # noqa: F401
from tests.conftest import served

OWN_COURIER = "c-000026"  # of b-440305
OWN_PLACE, OTHER_PLACE = (22.596615, 113.926888), (22.546487, 114.063211)  # b-440305, b-440304
T0 = 1_794_300_000


def _refusals(store, user: str, about: str = "") -> int:
    """Refusal lines of ``user`` whose detail holds ``about`` (a dashboard left open
    elsewhere in the session may add lines of its own)."""
    return store.scalar(
        "SELECT count(*) FROM audit_log WHERE user_id = ? AND action = 'refusal' AND contains(detail, ?)",
        [user, about],
    )


def _imports(store) -> int:
    return store.scalar("SELECT count(*) FROM imports")


def _csrf(s: requests.Session, url: str) -> str:
    page = s.get(f"{url}/admin/imports")
    assert page.status_code == 200, page.text[:200]
    return re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)


def _file(store, start: int, *places) -> bytes:
    device = store.scalar("SELECT min(device_id) FROM devices WHERE courier_id = ?", [OWN_COURIER])
    rows = [f"{device},{start + 60 * i},{lat},{lng}" for i, (lat, lng) in enumerate(places)]
    return ("device_id,ts,lat,lng\n" + "\n".join(rows) + "\n").encode()


def _post(s, url, body: bytes, token: str | None, name="forged.csv"):
    headers = {"Accept": "application/json", "Content-Type": "application/octet-stream"}
    if token is not None:
        headers["X-CSRF-Token"] = token
    return s.post(f"{url}/admin/imports", params={"name": name}, data=body, headers=headers)


@pytest.fixture(scope="module")
def admin_import_id(auth_url, auth_store):
    """An import of an admin (held to no node), through the form without scripts."""
    s, _ = login(auth_url, "admin")
    token = _csrf(s, auth_url)
    r = s.post(
        f"{auth_url}/admin/imports",
        data={"csrf": token, "kind": "pings"},
        files={"file": ("admin-form.csv", _file(auth_store, T0, OTHER_PLACE, (0.0, 0.0)), "text/csv")},
        allow_redirects=False,
    )
    assert r.status_code == 303
    import_id = r.headers["Location"].split("done=", 1)[1]
    shown = s.get(f"{auth_url}{r.headers['Location']}").text
    assert re.search(r'id="import-accepted">1<', shown) and re.search(r'id="import-rejected-count">1<', shown)
    return import_id


def test_a_viewer_can_neither_import_nor_read_imports(auth_url, auth_store, admin_import_id):
    s, _ = login(auth_url, "sz-viewer")
    before, imports = _refusals(auth_store, "sz-viewer", "/admin/imports"), _imports(auth_store)
    token = s.get(f"{auth_url}/logout").text  # any page that sets the session's CSRF token
    token = re.search(r'name="csrf" value="([^"]+)"', token).group(1)
    assert _post(s, auth_url, _file(auth_store, T0 + 600, OWN_PLACE), token).status_code == 403
    assert s.get(f"{auth_url}/admin/imports").status_code == 403
    assert s.get(f"{auth_url}/admin/imports/progress").status_code == 403
    assert s.get(f"{auth_url}/admin/imports/{admin_import_id}/rejected.csv").status_code == 403
    assert _refusals(auth_store, "sz-viewer", "/admin/imports") == before + 4
    assert _imports(auth_store) == imports
    assert auth_store.scalar("SELECT count(*) FROM pings WHERE epoch(ts) = ?", [T0 + 600]) == 0


def test_a_manager_cannot_read_an_import_outside_their_subtree(auth_url, auth_store, admin_import_id):
    s, _ = login(auth_url, "nanshan")
    before = _refusals(auth_store, "nanshan", "/admin/imports")
    assert s.get(f"{auth_url}/admin/imports/{admin_import_id}/rejected.csv").status_code == 403
    assert s.get(f"{auth_url}/admin/imports", params={"done": admin_import_id}).status_code == 403
    assert admin_import_id not in s.get(f"{auth_url}/admin/imports").text
    assert _refusals(auth_store, "nanshan", "/admin/imports") == before + 2
    # the admin reads it: the refusals are the manager's scope, not a broken link
    a, _ = login(auth_url, "admin")
    report = a.get(f"{auth_url}/admin/imports/{admin_import_id}/rejected.csv")
    assert report.status_code == 200 and report.text.startswith("row_number,reason,raw")


def test_an_import_needs_the_sessions_csrf_token(auth_url, auth_store):
    s, _ = login(auth_url, "nanshan")
    token = _csrf(s, auth_url)
    imports = _imports(auth_store)
    body = _file(auth_store, T0 + 1200, OWN_PLACE)
    assert _post(s, auth_url, body, None).status_code == 400
    assert _post(s, auth_url, body, "not-the-token").status_code == 400
    other, _ = login(auth_url, "nanshan")  # another session's token is not this one's
    assert _post(other, auth_url, body, token).status_code == 400
    assert _imports(auth_store) == imports
    assert auth_store.scalar("SELECT count(*) FROM pings WHERE epoch(ts) = ?", [T0 + 1200]) == 0
    done = _post(s, auth_url, body, token)
    assert done.status_code == 200 and done.json()["accepted"] == 1
    assert _imports(auth_store) == imports + 1


@pytest.fixture(scope="module")
def own_server(auth_store, tmp_path_factory):
    """A server of its own on the same store, whose uploads a test can hold, with a
    small size limit."""
    from data.ingest.http_api import make_ingest_blueprint
    from pages.app import build_app

    settings = replace(
        Settings.from_env(), data_dir=tmp_path_factory.mktemp("imports-var"), import_max_bytes=2_000
    )
    bp = make_ingest_blueprint(auth_store, settings)
    app = build_app(auth_store, settings, blueprints=[bp], warm=False, prefetch=False, auth=True)
    with served(app) as url:
        yield url, bp.uploads
    bp.committer.close()


def test_one_import_at_a_time_and_none_too_large(own_server, auth_store):
    url, uploads = own_server
    s, _ = login(url, "admin")
    token = _csrf(s, url)
    imports = _imports(auth_store)
    assert uploads._lock.acquire(blocking=False)  # an import under way (the API's, say)
    try:
        r = _post(s, url, _file(auth_store, T0 + 1800, OWN_PLACE), token)
        assert r.status_code == 409 and "another import is running" in r.json()["error"]
        assert s.get(f"{url}/admin/imports/progress").json()["busy"] is True
    finally:
        uploads._lock.release()
    big = _file(auth_store, T0 + 1800, *([OWN_PLACE] * 60))
    assert len(big) > 2_000
    assert _post(s, url, big, token).status_code == 413
    assert _imports(auth_store) == imports
    assert auth_store.scalar("SELECT count(*) FROM pings WHERE epoch(ts) = ?", [T0 + 1800]) == 0


def _quarantine_fixes(store, device: str, place) -> None:
    gc = GroupCommitter(store, "Asia/Shanghai").start()
    try:
        fix = {"id": device, "lat": place[0], "lon": place[1], "timestamp": int(time.time()) - 30}
        assert gc.submit("pings", [fix], "phone-test").result(timeout=30).accepted == 0
    finally:
        gc.close()


def _one_click(s, url: str, device: str, owner: str):
    """The request Chromium sends when the register button of ``device``'s row is clicked."""
    deps = s.get(f"{url}/_dash-dependencies").json()
    output = next(d["output"] for d in deps if d["output"].startswith(f"..{ids.ADMIN_UNKNOWN_RESULT}."))
    button = {"device": device, "type": ids.ADMIN_UNKNOWN_REGISTER}
    body = {
        "output": output,
        "outputs": [
            {"id": ids.ADMIN_UNKNOWN_RESULT, "property": "children"},
            {"id": ids.ADMIN_DEVICES_REFRESH, "property": "data"},
        ],
        "inputs": [[{"id": button, "property": "n_clicks", "value": 1}]],
        "state": [
            [{"id": {"device": device, "type": ids.ADMIN_UNKNOWN_OWNER}, "property": "value", "value": owner}]
        ],
        "changedPropIds": [json.dumps(button, separators=(",", ":"), sort_keys=True) + ".n_clicks"],
    }
    return s.post(f"{url}/_dash-update-component", json=body)


def test_a_forged_one_click_registration_is_refused(auth_url, auth_store):
    _quarantine_fixes(auth_store, "forged-stray-futian", OTHER_PLACE)
    _quarantine_fixes(auth_store, "forged-stray-own", OWN_PLACE)
    s, _ = login(auth_url, "nanshan")
    before = _refusals(auth_store, "nanshan", "unknown device")
    # seen in another branch: not in the manager's unknown list
    assert _one_click(s, auth_url, "forged-stray-futian", OWN_COURIER).status_code == 403
    # never seen at all
    assert _one_click(s, auth_url, "forged-never-seen", OWN_COURIER).status_code == 403
    assert _refusals(auth_store, "nanshan", "unknown device") == before + 2
    registered = (
        "SELECT count(*) FROM devices WHERE device_id IN ('forged-stray-futian', 'forged-never-seen')"
    )
    assert auth_store.scalar(registered) == 0
    # a viewer role is refused by the request guard before the callback runs
    v, _ = login(auth_url, "sz-viewer")
    assert _one_click(v, auth_url, "forged-stray-own", OWN_COURIER).status_code == 403
    # the same request for a device of the manager's own list goes through
    done = _one_click(s, auth_url, "forged-stray-own", OWN_COURIER)
    assert done.status_code == 200 and "1 fixes stored" in done.text
    assert auth_store.scalar("SELECT count(*) FROM pings WHERE device_id = 'forged-stray-own'") == 1
