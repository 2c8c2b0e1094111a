"""Fuzzing every callback (from the browser's recorded requests) and every Flask route
(junk paths, query strings and bodies): types swapped, ids renamed, values out of range,
deep nesting, huge strings, broken JSON, missing keys. No answer is a 5xx, and every 4xx
carries a message and the security headers.

200 cases per target; 2,000 with ``EMAP_FUZZ=long``. The seed is printed; set
``EMAP_FUZZ_SEED`` to repeat a run.
"""

# ruff: noqa: F811
from __future__ import annotations

import copy
import random
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from config import Settings
from tests.auth_support import login
from tests.security.conftest import fuzz_cases
from tests.security.scope_support import (
    CALLBACK,
    OUTSIDE,
    OWN,
    USER,
    callback_outputs,
    flask_rules,
    header_problems,
    off_site,
    retarget,
    serve_dashboard,
    to_json,
)

HUGE = 300_000
#: Share of cases carrying a huge string (each costs the server a few hundred kB).
HUGE_SHARE = 0.03


@pytest.fixture(scope="module")
def fuzz_server(fuzz_store):
    with serve_dashboard(fuzz_store, Settings.from_env()) as (app, url):
        signed, r = login(url, USER)
        assert r.status_code == 302
        yield app, url, signed


def _junk_scalar(rng: random.Random):
    return rng.choice(
        [
            None,
            True,
            0,
            -1,
            2**63,
            -(10**30),
            1e308,
            -1e-308,
            0.5,
            "",
            "x",
            "hq",
            rng.choice(OUTSIDE),
            "../../etc/passwd",
            "%00",
            "\x00\x01",
            "\ud7ff\ufffe",
            "南山区<img src=x onerror=alert(1)>",
            "'; DROP TABLE users; --",
            "{{7*7}}",
            "?node=hq&node=b-440305",
            '{"type":"crumb","node":"hq"}',
            "9" * 400,
        ]
    )


def _junk(rng: random.Random, depth: int = 0):
    k = rng.random()
    if depth > 2 or k < 0.6:
        return _junk_scalar(rng)
    if k < 0.8:
        return [_junk(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {str(_junk_scalar(rng))[:20]: _junk(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _places(obj, path=()):
    """Every (path) inside a JSON value."""
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _places(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _places(v, (*path, i))


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def _mutate_json(body, rng: random.Random):
    """One mutation of a JSON value, in place where it can be (returns the new value)."""
    places = list(_places(body))
    path = rng.choice(places)
    op = rng.choice(("swap", "swap", "rename", "delete", "range", "nest", "huge", "node", "id"))
    if op == "huge" and rng.random() > HUGE_SHARE * 9:
        op = "swap"
    if not path:
        return _junk(rng) if op in ("swap", "range") else body
    parent, key = _get(body, path[:-1]), path[-1]
    value = parent[key]
    if op == "swap":
        parent[key] = _junk(rng)
    elif op == "rename" and isinstance(parent, dict):
        parent[str(_junk_scalar(rng))[:40]] = parent.pop(key)
    elif op == "delete":
        parent.pop(key) if isinstance(parent, dict) else parent.pop(key)
    elif op == "range":
        parent[key] = rng.choice([-1, 24, 25, -(2**63), 2**64, 10**30, 1e308, -0.0, 3.5])
    elif op == "nest":  # deeper than a JSON encoder goes: spliced in as text by _payload
        parent[key] = f"__nest_{rng.choice((2, 20, 200, 900, 5000))}__"
    elif op == "huge":
        parent[key] = rng.choice(("a", "é", "<", "0")) * HUGE
    elif op == "node":
        parent[key] = rng.choice((*OUTSIDE, "nope", None))
    elif op == "id" and isinstance(value, dict) and "id" in value:
        value["id"] = rng.choice(("x", "state", {"type": "crumb", "node": "hq"}, '{"node":"hq"}', None, 5))
    else:
        parent[key] = _junk(rng)
    return body


def _payload(body, rng: random.Random) -> tuple[bytes, str]:
    """A mutated body as bytes, and its content type."""
    b = copy.deepcopy(body)
    for _ in range(rng.randint(1, 3)):
        b = _mutate_json(b, rng)
    if isinstance(b, dict) and rng.random() < 0.1:
        for k in rng.sample(sorted(b), k=min(len(b), rng.randint(1, 2))):
            b.pop(k, None)
    raw = to_json(b)
    raw = re.sub(rb'"__nest_(\d+)__"', lambda m: b"[" * int(m[1]) + b"1" + b"]" * int(m[1]), raw)
    kind = rng.random()
    if kind < 0.05:
        raw = raw[: rng.randint(0, len(raw))]  # cut short
    elif kind < 0.08:
        raw = raw.replace(b'"', b"'", 3)
    elif kind < 0.10:
        raw = b"\xff\xfe" + raw
    elif kind < 0.12:
        return raw, "text/plain"
    elif kind < 0.14:
        return b"output=x&inputs=y", "application/x-www-form-urlencoded"
    return raw, "application/json"


def _problems(r: requests.Response, url: str, what: str) -> list[str]:
    out = []
    if r.status_code >= 500:
        out.append(f"{what}: {r.status_code}")
    elif r.status_code >= 400:
        out += [f"{what}: {r.status_code} {h}" for h in header_problems(r)]
        if not r.content.strip():
            out.append(f"{what}: {r.status_code} without a message")
    elif 300 <= r.status_code < 400 and off_site(r.headers.get("Location", ""), url):
        out.append(f"{what}: redirect off-site to {r.headers.get('Location')!r}")
    return out


#: Requests in flight at once (the server is threaded; much of a request's time is waiting).
PARALLEL = 4


def _distinct(cases: list[tuple[str, str, str, dict, bool]]) -> list[tuple[str, str, str, dict, bool]]:
    """The cases but those that repeat an earlier one byte for byte (same method, path,
    query, body and headers, signed in or not): the junk is drawn at random, and a route
    without a placeholder often gets the same request again, which tests nothing new."""
    seen: set[str] = set()
    out = []
    for case in cases:
        _what, method, path, kw, signed_in = case
        key = repr((method, path, signed_in, sorted(kw.items())))
        if key not in seen:
            seen.add(key)
            out.append(case)
    return out


def _send_all(cases: list[tuple[str, str, str, dict, bool]], url: str, signed) -> list[str]:
    """Send ``(what, method, path, kwargs, signed_in)`` cases from a few threads, each with
    a client of its own (the signed-in one's cookie copied); the problems found. A case
    that repeats an earlier one is sent once."""
    cases = _distinct(cases)
    local = threading.local()

    def send(case):
        what, method, path, kw, signed_in = case
        key = "signed" if signed_in else "anonymous"
        client = getattr(local, key, None)
        if client is None:
            client = requests.Session()
            if signed_in:
                client.cookies.update(signed.cookies)
            setattr(local, key, client)
        r = client.request(method, url + path, timeout=300, **kw)
        return _problems(r, url, what)

    with ThreadPoolExecutor(PARALLEL) as pool:
        return [p for found in pool.map(send, cases) for p in found]


def test_fuzz_every_callback(fuzz_server, recorded, fuzz_seed, secrets):
    app, url, signed = fuzz_server
    rng = random.Random(fuzz_seed)
    n = fuzz_cases()
    problems: list[str] = []
    cases = []
    for output in callback_outputs(app):
        bodies = [retarget(b, secrets.nodes, OWN) for b in recorded["bodies"].get(output, [])]
        if not bodies:
            problems.append(f"{output}: no recorded request to start from")
            continue
        for case in range(n):
            raw, kind = _payload(rng.choice(bodies), rng)
            kw = {"data": raw, "headers": {"Content-Type": kind}}
            cases.append((f"{output} case {case} ({raw[:120]!r})", "POST", CALLBACK, kw, True))
    problems += _send_all(cases, url, signed)
    assert not problems, _summary(fuzz_seed, problems)


def _summary(seed: int, problems: list[str]) -> str:
    """Problems counted per target, with the first case of each."""
    first: dict[str, str] = {}
    count: dict[str, int] = {}
    for p in problems:
        target = p.split(" case ")[0]
        first.setdefault(target, p)
        count[target] = count.get(target, 0) + 1
    lines = [f"{count[t]} x {t}; first: {first[t][:400]}" for t in first]
    return f"seed {seed}: {len(problems)} problems\n" + "\n".join(lines)


def _path(rule, rng: random.Random) -> str:
    def junk_segment(_m):
        return rng.choice(
            [
                "x",
                "..%2F..%2Fconfig.py",
                "%00",
                "a" * rng.choice((10, 3000)),
                "%ff%fe",
                "hq",
                "南山",
                "dash/../../app.py",
                "emap.css",
                "dash/dcc/nope.js",
                "%2e%2e/%2e%2e/etc/passwd",
                "x.v1_2_3m123.js",
            ]
        )

    return re.sub(r"<[^>]+>", junk_segment, rule.rule)


def _query(rng: random.Random) -> dict:
    keys = ["node", "next", "lang", "hour", "date", "layers", "zone", "id", "lat", "lon", "timestamp", "x"]
    return {rng.choice(keys): str(_junk_scalar(rng))[:3000] for _ in range(rng.randint(0, 4))}


def test_fuzz_every_route(fuzz_server, fuzz_seed):
    app, url, signed = fuzz_server
    rng = random.Random(fuzz_seed + 1)
    n = fuzz_cases()
    cases = []
    for rule in flask_rules(app):
        methods = sorted((rule.methods or {"GET"}) - {"HEAD", "OPTIONS"}) or ["GET"]
        for case in range(n):
            method = rng.choice(methods)
            path = _path(rule, rng)
            # the signed-in user, or nobody (sign-out only ever tried without a session)
            signed_in = rule.rule != "/logout" and rng.random() >= 0.3
            kw: dict = {"params": _query(rng), "allow_redirects": False}
            if method != "GET":
                b = _junk(rng)
                if rng.random() < 0.5:
                    kw["data"] = _payload({"x": b, "csrf": "junk"}, rng)[0]
                    kind = rng.choice(("application/json", "text/plain", "application/xml"))
                    kw["headers"] = {"Content-Type": kind}
                else:
                    kw["data"] = {str(_junk_scalar(rng))[:30]: str(_junk_scalar(rng))[:300] for _ in range(3)}
            if rng.random() < 0.2:
                auth = rng.choice(("Bearer x", "Basic Og==", "Bearer "))
                kw["headers"] = {**kw.get("headers", {}), "Authorization": auth}
            what = f"{method} {rule.rule} case {case} ({path[:80]!r} {kw['params']!r:.120})"
            cases.append((what, method, path, kw, signed_in))
    problems = _send_all(cases, url, signed)
    assert not problems, _summary(fuzz_seed, problems)
