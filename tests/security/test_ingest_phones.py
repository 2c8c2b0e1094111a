# ruff: noqa: F811  (the shared ingest fixtures are imported by name and used as arguments)
"""Answers a phone can live with. Traccar Client and OsmAnd keep their fixes in order and
resend the oldest until it is answered 200, so every answer of both OsmAnd endpoints is
200 (stored, or refused for good and quarantined), 400 (malformed), 401/403 (the token or
the device must be put right; the phone keeps the fix) or 503 (try again). And since
refusals are answered 200 and quarantined, the quarantine is capped."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from config import Settings
from data.ingest.tokens import create_token
from tests.ingest_support import ThreadedServer, store, template, tokens  # noqa: F401
from tests.security.ingest_support import NANSHAN, T0, TraccarLikeClient

GOOD = 30


@pytest.fixture
def server(store):
    with ThreadedServer(store, phones=True) as srv:
        yield srv


def fixes_with_two_bad_ones(device: str) -> list[dict]:
    fixes = [
        {"id": device, "lat": NANSHAN[0] + i * 1e-4, "lon": NANSHAN[1], "timestamp": T0 + 60 * i, "speed": 5}
        for i in range(GOOD)
    ]
    fixes.insert(7, {"id": device, "lat": 0, "lon": 0, "timestamp": T0 + 60 * 7 + 1})  # no GPS fix yet
    fixes.insert(20, {"id": device, "lat": 1.0, "lon": 1.0, "timestamp": T0 + 60 * 19 + 1})  # at sea
    return fixes


@pytest.mark.parametrize("port", ["phone listener", "main port /osmand"])
def test_traccar_like_client_delivers_every_good_fix_past_refused_ones(server, store, port):
    url = server.phone_url + "/" if port == "phone listener" else server.url + "/osmand"
    phone = TraccarLikeClient(url)
    for fix in fixes_with_two_bad_ones("dev-021"):
        phone.record(fix)
    phone.run()
    assert phone.stalled_on is None, phone.answers[-1]
    assert phone.queue == []
    assert [status for status, _ in phone.answers] == [200] * (GOOD + 2)
    assert store.scalar("SELECT count(*) FROM pings WHERE device_id = 'dev-021'") == GOOD
    assert store.sql("SELECT reason FROM quarantine ORDER BY row_number").rows() == [
        ("position 0,0 (no GPS fix)",),
        ("position outside every branch territory",),
    ]


def _requests(tokens_):
    fix = {"lat": NANSHAN[0], "lon": NANSHAN[1], "timestamp": T0}
    return [
        # (what, method, params, kwargs, expected status)
        ("stored", "GET", {"id": "dev-030", **fix}, {}, 200),
        ("0,0", "GET", {"id": "dev-030", "lat": 0, "lon": 0, "timestamp": T0 + 1}, {}, 200),
        (
            "outside every territory",
            "GET",
            {"id": "dev-030", "lat": 1.0, "lon": 1.0, "timestamp": T0 + 2},
            {},
            200,
        ),
        ("bad field", "GET", {"id": "dev-030", **fix, "speed": "fast", "timestamp": T0 + 3}, {}, 200),
        ("bad time", "GET", {"id": "dev-030", **fix, "timestamp": "yesterday"}, {}, 200),
        ("year 9999", "GET", {"id": "dev-030", **fix, "timestamp": "9999-12-31T23:00:00Z"}, {}, 200),
        (
            "list where a value belongs",
            "POST",
            {},
            {
                "json": {
                    "device_id": "dev-030",
                    "location": {
                        "timestamp": "2025-11-23T00:00:09Z",
                        "coords": {"latitude": [[NANSHAN[0]]], "longitude": NANSHAN[1]},
                    },
                }
            },
            200,
        ),
        ("no device id", "GET", fix, {}, 400),
        (
            "unreadable JSON",
            "POST",
            {},
            {"data": b'{"device_id": ', "headers": {"Content-Type": "application/json"}},
            400,
        ),
        ("unknown token", "GET", {"id": "dev-030", **fix, "token": "emap_nope"}, {}, 401),
        ("another device's token", "GET", {"id": "dev-031", **fix, "token": tokens_["device"]}, {}, 403),
        ("unknown device", "GET", {"id": "not-registered", **fix}, {}, 403),
    ]


def test_every_answer_of_both_endpoints_is_one_a_phone_can_live_with(server, store, tokens):
    for what, method, params, kwargs, status in _requests(tokens):
        for url in (server.phone_url + "/", server.url + "/osmand"):
            r = requests.request(method, url, params=params, timeout=30, **kwargs)
            assert r.status_code == status, (what, url, r.status_code, r.text)
            if status == 200 and what != "stored":
                assert r.text.startswith("refused for good, kept in quarantine: "), (what, r.text)
    assert store.scalar("SELECT count(*) FROM pings") == 1
    # every fix refused for good is in quarantine, once from each port
    assert (
        store.scalar(
            "SELECT count(*) FROM quarantine WHERE source = 'osmand' AND reason NOT LIKE 'unknown device%'"
        )
        == 2 * 6
    )


def test_a_phone_is_answered_503_when_the_store_cannot_take_its_fix(store):
    with ThreadedServer(store, phones=True) as srv:
        srv.app.blueprints["ingest"].committer.close()  # shutting down: nothing more is taken
        for url in (srv.phone_url + "/", srv.url + "/osmand"):
            r = requests.get(
                url,
                params={"id": "dev-032", "lat": NANSHAN[0], "lon": NANSHAN[1], "timestamp": T0},
                timeout=30,
            )
            assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert store.scalar("SELECT count(*) FROM pings") == 0


def test_a_device_token_fix_for_another_device_stays_on_the_phone(server, store):
    token = create_token(store, "device", "dev-033")
    phone = TraccarLikeClient(server.phone_url + "/", max_attempts=3)
    phone.record({"id": "dev-034", "lat": NANSHAN[0], "lon": NANSHAN[1], "timestamp": T0, "token": token})
    phone.run()
    assert phone.stalled_on is not None  # kept on the phone (403) until the token is put right
    assert {status for status, _ in phone.answers} == {403}
    assert store.scalar("SELECT count(*) FROM pings") == 0
    assert store.scalar("SELECT count(*) FROM quarantine") == 0  # resends do not pile up
    assert store.scalar("SELECT count(*) FROM audit_log WHERE action = 'refusal'") == 3  # listed for admins


def test_refused_fixes_cannot_fill_the_quarantine(store):
    settings = replace(Settings.from_env({}), quarantine_max_rows_per_source=20)
    with ThreadedServer(store, settings, phones=True) as srv, requests.Session() as s:
        for i in range(100):
            r = s.get(
                srv.phone_url + "/",
                params={"id": "dev-035", "lat": 0, "lon": 0, "timestamp": T0 + i},
                timeout=30,
            )
            assert r.status_code == 200
    kept = store.sql("SELECT raw FROM quarantine WHERE source = 'osmand'")["raw"].to_list()
    assert 1 <= len(kept) <= 20
    assert str(T0 + 99) in " ".join(kept)  # the newest refusal is kept, the oldest let go


def test_quarantine_caps_per_source_in_total_and_by_age(store):
    import polars as pl

    from data.ingest.quarantine import Quarantine

    def bad(n, start=0):
        return pl.DataFrame(
            {
                "_row": list(range(start + 1, start + n + 1)),
                "reason": ["r"] * n,
                "raw": [json.dumps({"n": start + i, "pad": "x" * 50}) for i in range(n)],
            }
        )

    q = Quarantine(store, per_source=50, total=120, retention_days=30, raw_bytes=20)
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=31)
    store.cursor().execute("INSERT INTO quarantine VALUES (?, 'ancient', 1, 'pings', 'old', '{}')", [old])
    assert q.keep(bad(80), "a", "pings") == 50  # one call over the per-source cap: its first rows
    counts = dict(store.sql("SELECT source, count(*) FROM quarantine GROUP BY source").rows())
    assert counts == {"a": 50}  # and the row past retention is gone
    q.keep(bad(30, 80), "a", "pings")
    assert store.scalar("SELECT count(*) FROM quarantine WHERE source = 'a'") <= 50
    assert store.scalar("SELECT max(row_number) FROM quarantine WHERE source = 'a'") == 110  # newest kept
    for source in ("b", "c", "d"):
        q.keep(bad(45), source, "pings")
    assert store.scalar("SELECT count(*) FROM quarantine") <= 120
    assert store.scalar("SELECT count(*) FROM quarantine WHERE source = 'd'") == 45
    assert store.scalar("SELECT max(length(raw)) FROM quarantine") <= 20 + len("... (cut)")
    assert q.dropped > 0
