# ruff: noqa: F811  (the shared ingest fixtures are imported by name and used as arguments)
"""The ingest API on a real HTTP server on 127.0.0.1 (werkzeug, threaded) and a real store."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
import requests

from config import Settings
from data.ingest.tokens import create_token, list_tokens, revoke_token
from tests.ingest_support import SHENZHEN, ThreadedServer, store, template, tokens  # noqa: F401

LAT, LNG = SHENZHEN
T0 = 1_763_856_000  # 2025-11-23 00:00:00 UTC


@pytest.fixture
def server(store):
    with ThreadedServer(store) as srv:
        yield srv


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def pings(n, device="dev-001", start=T0, **extra):
    return [
        {"device_id": device, "ts": start + i, "lat": LAT + i * 1e-5, "lng": LNG, "speed": 3.5, **extra}
        for i in range(n)
    ]


def test_batch_of_pings_is_stored_with_the_cube(server, store, tokens):
    r = requests.post(f"{server.url}/api/v1/pings", json=pings(500), headers=auth(tokens["system"]))
    assert r.status_code == 200
    assert r.json() == {"received": 500, "accepted": 500, "rejected": []}
    # acknowledged = committed: visible to a reader at once, cube included
    assert store.scalar("SELECT count(*) FROM pings") == 500
    assert store.scalar("SELECT sum(pings) FROM cube_hourly") == 500
    assert store.scalar("SELECT count(DISTINCT actor_id) FROM cube_presence") == 1
    assert store.scalar("SELECT min(courier_id) FROM pings") == "c-dev-001"


def test_ndjson_and_aliases(server, store, tokens):
    lines = [
        json.dumps(
            {
                "deviceid": "van-1",
                "timestamp": f"2025-11-23T08:00:{i:02d}+08:00",
                "lat": LAT,
                "lon": LNG,
                "bearing": 90,
            }
        )
        for i in range(10)
    ]
    r = requests.post(
        f"{server.url}/api/v1/pings",
        data="\n".join(lines) + "\n",
        headers={**auth(tokens["system"]), "Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 200 and r.json()["accepted"] == 10
    assert store.scalar("SELECT count(*) FROM pings WHERE vehicle_id = 'v-van-1' AND heading = 90") == 10
    assert str(store.scalar("SELECT min(ts) FROM pings")) == "2025-11-23 00:00:00"


def test_resent_records_are_not_stored_twice(server, store, tokens):
    batch = pings(300)
    for _ in range(3):
        r = requests.post(f"{server.url}/api/v1/pings", json=batch, headers=auth(tokens["system"]))
        assert r.status_code == 200 and r.json()["accepted"] == 300
    assert store.scalar("SELECT count(*) FROM pings") == 300
    assert store.scalar("SELECT sum(pings) FROM cube_hourly") == 300


def test_rejected_records_are_listed_and_quarantined(server, store, tokens):
    batch = pings(6)
    batch[1]["lat"] = 123.0
    batch[2]["device_id"] = "stranger"
    batch[3]["ts"] = "not a time"
    batch[4] = [1, 2, 3]
    batch[5]["lat"], batch[5]["lng"] = 1.0, 1.0  # in the sea, outside every branch
    r = requests.post(f"{server.url}/api/v1/pings", json=batch, headers=auth(tokens["system"]))
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 1 and body["received"] == 6
    assert body["rejected"] == [
        {"index": 1, "reason": "lat out of range [-90, 90]"},
        {"index": 2, "reason": "unknown device 'stranger'"},
        {"index": 3, "reason": "ts could not be read as a timestamp"},
        {"index": 4, "reason": "record is not a JSON object"},
        {"index": 5, "reason": "position outside every branch territory"},
    ]
    q = store.sql("SELECT row_number, reason, raw, source, record_kind FROM quarantine ORDER BY row_number")
    assert q["row_number"].to_list() == [2, 3, 4, 5, 6]
    assert json.loads(q["raw"][1])["device_id"] == "stranger"
    assert json.loads(q["raw"][2])["ts"] == "not a time"  # kept as received
    assert set(q["source"]) == {"POST /api/v1/pings (system:test-ops)"}
    assert set(q["record_kind"]) == {"pings"}


def test_events_batch(server, store, tokens):
    events = [
        {
            "event_id": "e-1",
            "parcel_id": "p-1",
            "kind": "pickup",
            "ts": "2025-11-23 09:00:00",
            "lat": LAT,
            "lng": LNG,
            "courier_id": "c-dev-001",
        },
        {
            "parcel_id": "p-2",
            "kind": "delivered",
            "ts": T0 + 60,
            "lat": LAT,
            "lng": LNG,
            "promised_at": T0 + 3600,
        },
        {"parcel_id": "p-3", "kind": "teleported", "ts": T0, "lat": LAT, "lng": LNG},
    ]
    for _ in range(2):
        r = requests.post(f"{server.url}/api/v1/events", json=events, headers=auth(tokens["system"]))
        assert r.status_code == 200
        assert r.json()["accepted"] == 2
        assert [x["index"] for x in r.json()["rejected"]] == [2]
    assert store.scalar("SELECT count(*) FROM parcel_events") == 2  # derived event_id dedupes too
    assert store.scalar("SELECT sum(scans) FROM cube_hourly") == 2
    assert store.scalar("SELECT sum(on_time) FROM cube_hourly") == 1


@pytest.mark.parametrize(
    "body, ctype, where",
    [
        (b'[{"device_id": "dev-001",\n "lat": }]', "application/json", "line 2, column 9"),
        (
            b'{"device_id": "a"}\n{"device_id": "b"}\n{"device_id": \n',
            "application/x-ndjson",
            "NDJSON line 3",
        ),
        (b'{"device_id": "a"}\n{oops}\n', "application/json", "NDJSON line 2"),
        (b"\x00\xff\xfe garbage", "application/json", "line 1, column 1"),
        (b"", "application/json", "empty body"),
    ],
)
def test_malformed_json_says_where_and_server_keeps_serving(server, store, tokens, body, ctype, where):
    r = requests.post(
        f"{server.url}/api/v1/pings", data=body, headers={**auth(tokens["system"]), "Content-Type": ctype}
    )
    assert r.status_code == 400
    assert where in r.json()["error"]
    ok = requests.post(f"{server.url}/api/v1/pings", json=pings(2), headers=auth(tokens["system"]))
    assert ok.status_code == 200 and ok.json()["accepted"] == 2


def test_tokens(server, store, tokens):
    url = f"{server.url}/api/v1/pings"
    assert requests.post(url, json=pings(1)).status_code == 401
    r = requests.post(url, json=pings(1), headers=auth("emap_not-a-token"))
    assert r.status_code == 401 and r.json() == {"error": "unknown or revoked token"}
    revoked = create_token(store, "system", "retired-system")
    listed = list_tokens(store)
    assert revoked not in listed.to_pandas().to_string()  # never stored or shown in clear
    token_id = listed.filter(listed["subject"] == "retired-system")["token_id"][0]
    assert revoke_token(store, token_id) == 1
    assert requests.post(url, json=pings(1), headers=auth(revoked)).status_code == 401
    assert store.scalar("SELECT count(*) FROM pings") == 0


def test_device_token_reports_only_for_its_device(server, store, tokens):
    own = [{"ts": T0 + i, "lat": LAT, "lon": LNG} for i in range(3)]
    other = {"device_id": "dev-002", "ts": T0, "lat": LAT, "lng": LNG}
    r = requests.post(f"{server.url}/api/v1/pings", json=[*own, other], headers=auth(tokens["device"]))
    assert r.status_code == 200
    assert r.json()["accepted"] == 3
    assert r.json()["rejected"] == [
        {"index": 3, "reason": "the token of device 'dev-000' cannot report for device 'dev-002'"}
    ]
    assert store.scalar("SELECT count(*) FROM pings WHERE device_id = 'dev-000'") == 3


def test_oversized_body_gets_413(store, tokens):
    settings = replace(Settings.from_env({}), ingest_max_body_bytes=2_000)
    with ThreadedServer(store, settings) as srv:
        r = requests.post(f"{srv.url}/api/v1/pings", json=pings(200), headers=auth(tokens["system"]))
        assert r.status_code == 413 and "larger than 2000 bytes" in r.json()["error"]
        ok = requests.post(f"{srv.url}/api/v1/pings", json=pings(5), headers=auth(tokens["system"]))
        assert ok.status_code == 200
        fix = {
            "device_id": "dev-001",
            "location": {
                "timestamp": "2025-11-23T00:10:00Z",
                "coords": {"latitude": LAT, "longitude": LNG},
                "extras": {"note": "x" * 3000},
            },
        }
        r = requests.post(f"{srv.url}/osmand", json=fix)
        assert r.status_code == 413 and "larger than 2000 bytes" in r.text
        r = requests.put(f"{srv.url}/osmand", params={"id": "dev-001", "lat": LAT, "lon": LNG})
        assert r.status_code == 405 and r.headers["Allow"] == "GET, POST"
    assert store.scalar("SELECT count(*) FROM pings") == 5


def test_osmand_route_of_the_blueprint_answers_as_the_front(store):
    """Behind Flask alone (``--dev-server``) /osmand answers as ingest_front does."""
    from data.ingest.http_api import make_app

    app = make_app(store, Settings.from_env({}))
    try:
        client = app.test_client()
        r = client.get("/osmand", query_string={"id": "dev-007", "lat": LAT, "lon": LNG, "timestamp": T0})
        assert (r.status_code, r.text) == (200, "OK\n")
        r = client.post("/osmand", data={"id": "nobody", "lat": LAT, "lon": LNG, "timestamp": T0})
        assert (r.status_code, r.text) == (403, "unknown device 'nobody'\n")
    finally:
        app.blueprints["ingest"].committer.close()
    assert store.sql("SELECT device_id FROM pings").rows() == [("dev-007",)]


def test_concurrent_requests_are_all_committed(server, store, tokens):
    results = []

    def send(k):
        r = requests.post(
            f"{server.url}/api/v1/pings",
            json=pings(200, device=f"dev-{k:03d}"),
            headers=auth(tokens["system"]),
        )
        results.append((r.status_code, r.json()["accepted"]))

    threads = [threading.Thread(target=send, args=(k,)) for k in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [(200, 200)] * 20
    assert store.scalar("SELECT count(*) FROM pings") == 4000
    assert store.scalar("SELECT sum(pings) FROM cube_hourly") == 4000


# -- OsmAnd ------------------------------------------------------------------------------
def test_osmand_query_get_and_post_form(server, store):
    r = requests.get(
        f"{server.url}/osmand",
        params={
            "id": "dev-005",
            "lat": LAT,
            "lon": LNG,
            "timestamp": T0,
            "speed": 10,
            "bearing": 45,
            "altitude": 12,
            "accuracy": 5,
            "hdop": 0.9,
            "batt": 80,
        },
    )
    assert (r.status_code, r.text) == (200, "OK\n")
    r = requests.post(
        f"{server.url}/osmand/",
        data={"deviceid": "dev-005", "location": f"{LAT},{LNG}", "timestamp": "2025-11-23 08:00:05"},
    )
    assert r.status_code == 200
    rows = store.sql("SELECT ts, speed, heading, accuracy FROM pings ORDER BY ts")
    assert [str(t) for t in rows["ts"]] == ["2025-11-23 00:00:00", "2025-11-23 00:00:05"]
    assert rows["speed"][0] == pytest.approx(5.14444, rel=1e-4)  # knots -> m/s
    assert rows["heading"][0] == 45 and rows["accuracy"][0] == 5


def test_osmand_json_form(server, store):
    body = {
        "device_id": "dev-006",
        "location": {
            "timestamp": "2025-11-23T00:10:00.000Z",
            "coords": {"latitude": LAT, "longitude": LNG, "speed": 2.5, "heading": 10, "accuracy": 4},
            "battery": {"level": 0.9, "is_charging": False},
            "is_moving": True,
        },
    }
    r = requests.post(f"{server.url}/osmand", json=body)
    assert r.status_code == 200
    r = requests.post(f"{server.url}/osmand", json=body)  # the phone retries: no duplicate
    assert r.status_code == 200
    assert store.sql("SELECT device_id, speed FROM pings").rows() == [("dev-006", 2.5)]


def test_osmand_rejections(server, store):
    r = requests.get(f"{server.url}/osmand", params={"id": "unknown-phone", "lat": LAT, "lon": LNG})
    assert r.status_code == 403 and r.text == "unknown device 'unknown-phone'\n"
    r = requests.get(f"{server.url}/osmand", params={"lat": LAT, "lon": LNG})
    assert r.status_code == 400 and "device id" in r.text
    r = requests.get(f"{server.url}/osmand", params={"id": "dev-001", "lat": 0, "lon": 0})
    assert r.status_code == 200 and "no GPS fix" in r.text  # refused for good: the phone moves on
    r = requests.post(
        f"{server.url}/osmand", data=b'{"device_id": ', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "line 1" in r.text
    assert store.scalar("SELECT count(*) FROM pings") == 0
    q = store.sql("SELECT source, reason FROM quarantine ORDER BY received_at")
    assert q.rows() == [("osmand", "unknown device 'unknown-phone'"), ("osmand", "position 0,0 (no GPS fix)")]


def test_osmand_auto_register_and_token(store, tokens):
    settings = replace(Settings.from_env({}), auto_register_devices=True, osmand_require_token=True)
    with ThreadedServer(store, settings) as srv:
        params = {"id": "new-phone", "lat": LAT, "lon": LNG, "timestamp": T0}
        assert requests.get(f"{srv.url}/osmand", params=params).status_code == 401
        r = requests.get(f"{srv.url}/osmand", params={**params, "token": tokens["system"]})
        assert r.status_code == 200
        r = requests.get(f"{srv.url}/osmand", params={**params, "token": tokens["device"]})
        assert r.status_code == 403  # dev-000's token used for another phone
    assert store.sql("SELECT device_id, courier_id FROM devices WHERE device_id = 'new-phone'").rows() == [
        ("new-phone", "new-phone")
    ]
    assert store.scalar("SELECT count(*) FROM pings WHERE courier_id = 'new-phone'") == 1
