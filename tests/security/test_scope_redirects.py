"""Redirects stay on the site for every encoding of a path, and tampered values of the
view state (language, hour) and of dispatch decisions answer 4xx, never 500."""

# ruff: noqa: F811
from __future__ import annotations

import copy
import json

import pytest
import requests

from pages import ids
from tests.auth_support import PASSWORD, csrf_of
from tests.security.scope_support import USER, header_problems, off_site, post, raw_get, retarget
from tests.security.test_scope_named import _clicked

#: Paths that lead off-site once a browser or Werkzeug normalises them.
EVIL = (
    "/%09/evil.example/",
    "/%0d/evil.example/",
    "/%0a/evil.example/",
    "/%0D%0A/evil.example/",
    "/%5Cevil.example",
    "/%5C%5Cevil.example/",
    "/%2F%2Fevil.example",
    "/%2F/evil.example",
    "//evil.example",
    "///evil.example",
    "/\tevil.example",
    "/\t/evil.example/",
    "/\\evil.example",
    "/\\\\evil.example",
    "/%09%09/evil.example",
    "/%20/evil.example",
    "/%E2%80%8B/evil.example",
    "/https://evil.example",
    "/.%2F%2Fevil.example",
)


def _check(status: int, headers: dict, url: str, what: str) -> None:
    assert status < 500, (what, status)
    loc = headers.get("Location")
    if 300 <= status < 400:
        assert loc is not None and not off_site(loc, url), (what, loc)
        assert loc.startswith("/") or loc.startswith(url), (what, loc)


@pytest.mark.parametrize("path", EVIL)
def test_no_redirect_leaves_the_site(path, auth_url, clients):
    cookie = f"emap_session={clients[USER].cookies.get('emap_session')}"
    for p, who in ((path, USER), (path, None), (f"{path}?node=hq", USER)):
        status, headers, _ = raw_get(auth_url, p, cookie if who else None)
        _check(status, headers, auth_url, f"GET {p!r} as {who}")
    # after a sign-in and on the sign-in page
    for nxt in (path, path.replace("%", "%25")):
        s = requests.Session()
        page = s.get(f"{auth_url}/login", params={"next": nxt})
        assert page.status_code < 500
        r = s.post(
            f"{auth_url}/login",
            data={"user": USER, "password": PASSWORD, "csrf": csrf_of(page.text), "next": nxt},
            allow_redirects=False,
        )
        _check(r.status_code, r.headers, auth_url, f"login next={nxt!r}")
        assert r.status_code == 302
        status, headers, _ = raw_get(auth_url, f"/login?next={nxt}", None)
        _check(status, headers, auth_url, f"GET /login?next={nxt!r}")


def _state_of(body: dict) -> dict:
    for section in ("inputs", "state"):
        for it in body.get(section) or []:
            if isinstance(it, dict) and it.get("id") == ids.STATE:
                return it
    raise AssertionError("no view state")


TAMPERED_STATE = {
    "lang": ["xx", "", None, 7, ["zh"], {"zh": 1}, "zh" * 10_000],
    "hour": ["abc", 99, -1, 1e300, None, [], {}, "10; drop", True],
    "date": ["2026-13-45", 5, None, "'; --", []],
    "layers": ["couriers", 5, [5], None, {"a": 1}],
    "metric": ["nope", 3, None],
    "basemap": ["x", None, 4],
    "zone": ["x", -5, 10**30, []],
}


def test_tampered_view_state_values_never_answer_500(recorded, clients, auth_url, secrets):
    problems = []
    for output, bodies in recorded["bodies"].items():
        body = retarget(bodies[0], secrets.nodes, "b-440305")
        try:
            item = _state_of(body)
        except AssertionError:
            continue
        if not isinstance(item.get("value"), dict):
            continue
        for key, values in TAMPERED_STATE.items():
            for v in values:
                b = copy.deepcopy(body)
                _state_of(b)["value"][key] = v
                r = post(clients[USER], auth_url, b)
                if r.status_code >= 500 or (r.status_code >= 400 and header_problems(r)):
                    problems.append(f"{output}: {key}={str(v)[:20]!r} -> {r.status_code}")
    assert not problems, "\n".join(problems[:40])


def test_tampered_decisions_never_answer_500(recorded, clients, auth_url, auth_store, secrets):
    body = next(
        b
        for o, bs in recorded["bodies"].items()
        if o == f"{ids.OUTLOOK_NOTE}.children"
        for b in bs
        if _clicked(b)
    )
    clicked = json.loads(body["changedPropIds"][0].rsplit(".", 1)[0])
    before = auth_store.scalar(
        "SELECT count(*) FROM dispatch_decisions WHERE user_name IS NULL OR user_name = ?", [USER]
    )
    problems = []
    tampered = {
        "decision": ["maybe", "", None, 1, "accepted'--"],
        "hour": ["garbage", 5, None, "9999-99-99T99"],
        "n": ["abc", -1, 10**30, None, 1.5],
        "km": ["x", None, "nan", "inf"],
        "src": ["zz", -1, None, "1" * 40],
        "zone": ["zz", None, "0"],
        "what": ["vehicle|van", "|||", None, 5, "x" * 5000],
        "branch": [None, 5, ""],
    }
    for key, values in tampered.items():
        for v in values:
            trig = {**clicked, key: v}
            k = json.dumps(trig, sort_keys=True, separators=(",", ":"))
            b = copy.deepcopy(body)
            b["changedPropIds"] = [f"{k}.n_clicks"]
            b["inputs"] = [[{"id": trig, "property": "n_clicks", "value": 1}]]
            for who in ("shenzhen", USER):
                r = post(clients[who], auth_url, b)
                if r.status_code >= 500 or (r.status_code >= 400 and header_problems(r)):
                    problems.append(f"{who}: {key}={str(v)[:20]!r} -> {r.status_code}")
    assert not problems, "\n".join(problems[:40])
    # nanshan's clicks in Shenzhen's view were stored by no one, and nothing without a user
    assert (
        auth_store.scalar(
            "SELECT count(*) FROM dispatch_decisions WHERE user_name IS NULL OR user_name = ?", [USER]
        )
        == before
    )
