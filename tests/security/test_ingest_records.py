# ruff: noqa: F811  (the shared ingest fixtures are imported by name and used as arguments)
"""One reading of every record: a token's check and the store must agree on which field
is the device and which the position, so a second name for a field cannot steer a fix."""

from __future__ import annotations

import json

import pytest
import requests

from data.ingest.tokens import create_token
from tests.ingest_support import ThreadedServer, store, template, tokens  # noqa: F401
from tests.security.ingest_support import GUANGZHOU, NANSHAN, T0, auth, ping


@pytest.fixture
def server(store):
    with ThreadedServer(store, phones=True) as srv:
        yield srv


def post(server, token, records):
    return requests.post(f"{server.url}/api/v1/pings", json=records, headers=auth(token), timeout=30)


@pytest.mark.parametrize(
    "record",
    [
        {"id": "dev-026", "device_id": "dev-027", "ts": T0, "lat": NANSHAN[0], "lng": NANSHAN[1]},
        {"device_id": "dev-027", "id": "dev-026", "ts": T0, "lat": NANSHAN[0], "lng": NANSHAN[1]},
        {"device_id": "dev-026", "Device_ID ": "dev-027", "ts": T0, "lat": NANSHAN[0], "lng": NANSHAN[1]},
    ],
)
def test_device_token_cannot_steer_a_fix_with_a_second_device_field(server, store, record):
    token = create_token(store, "device", "dev-026")
    r = post(server, token, [record])
    assert r.status_code == 200
    assert r.json()["accepted"] == 0
    [rejected] = r.json()["rejected"]
    assert rejected["reason"].startswith("conflicting values for 'device_id'")
    assert store.scalar("SELECT count(*) FROM pings") == 0  # neither for 027 nor for 026
    assert store.scalar("SELECT count(*) FROM quarantine WHERE reason LIKE 'conflicting values%'") == 1


def test_device_token_reports_for_its_own_device_only(server, store):
    token = create_token(store, "device", "dev-026")
    records = [
        ping("dev-026", 0),
        {"deviceid": "dev-027", "ts": T0 + 1, "lat": NANSHAN[0], "lng": NANSHAN[1]},
        {"ts": T0 + 2, "lat": NANSHAN[0], "lng": NANSHAN[1]},
    ]  # no device: the token's own
    r = post(server, token, records)
    assert r.status_code == 200 and r.json()["accepted"] == 2
    assert r.json()["rejected"] == [
        {"index": 1, "reason": "the token of device 'dev-026' cannot report for device 'dev-027'"}
    ]
    assert store.sql("SELECT DISTINCT device_id FROM pings").rows() == [("dev-026",)]


@pytest.mark.parametrize(
    "record",
    [
        {"device_id": "dev-001", "ts": T0, "lat ": GUANGZHOU[0], "lng ": GUANGZHOU[1]},
        {"device_id": "dev-001", "ts": T0, "LAT": GUANGZHOU[0], "Lon": GUANGZHOU[1]},
        {"device_id": "dev-001", "ts": T0, "latitude": str(GUANGZHOU[0]), "longitude": f" {GUANGZHOU[1]} "},
    ],
)
def test_node_token_cannot_place_a_fix_outside_its_node_under_another_name(server, store, record):
    token = create_token(store, "system", "nanshan-wms", node_id="b-440305")
    r = post(server, token, [record, ping("dev-002")])
    assert r.status_code == 200
    assert r.json()["accepted"] == 1  # the fix inside Nanshan
    assert r.json()["rejected"] == [
        {"index": 0, "reason": "the token of system 'nanshan-wms' cannot report outside node 'b-440305'"}
    ]
    assert store.scalar("SELECT count(*) FROM pings WHERE branch_id <> 'b-440305'") == 0
    assert store.scalar("SELECT count(*) FROM pings WHERE branch_id = 'b-440305'") == 1


def test_node_token_cannot_place_an_osmand_fix_outside_its_node(server, store):
    token = create_token(store, "system", "nanshan-wms", node_id="b-440305")
    fix = {"id": "dev-003", "lat": GUANGZHOU[0], "lon": GUANGZHOU[1], "timestamp": T0, "token": token}
    for url in (server.phone_url + "/", server.url + "/osmand"):
        r = requests.get(url, params=fix, timeout=30)
        assert r.status_code == 403 and "cannot report outside node 'b-440305'" in r.text
    assert store.scalar("SELECT count(*) FROM pings") == 0


@pytest.mark.parametrize(
    "record, field",
    [
        (
            {"device_id": "dev-001", "ts": T0, "lat": NANSHAN[0], "lat ": GUANGZHOU[0], "lng": NANSHAN[1]},
            "lat",
        ),
        (
            {"device_id": "dev-001", "ts": T0, "lat": NANSHAN[0], "lng": NANSHAN[1], "lon": GUANGZHOU[1]},
            "lng",
        ),
        (
            {"device_id": "dev-001", "ts": T0, "timestamp": T0 + 3600, "lat": NANSHAN[0], "lng": NANSHAN[1]},
            "ts",
        ),
    ],
)
def test_a_field_given_twice_with_different_values_is_refused_with_a_reason(
    server, store, tokens, record, field
):
    r = post(server, tokens["system"], [record, ping("dev-002")])
    assert r.status_code == 200 and r.json()["accepted"] == 1
    [rejected] = r.json()["rejected"]
    assert rejected["index"] == 0 and rejected["reason"].startswith(f"conflicting values for '{field}'")
    assert store.scalar("SELECT count(*) FROM pings WHERE device_id = 'dev-001'") == 0


def test_a_field_given_twice_with_one_value_is_one_field(server, store, tokens):
    record = {
        "device_id": "dev-001",
        "id": "dev-001",
        "ts": T0,
        "lat": NANSHAN[0],
        "latitude": NANSHAN[0],
        "lng": NANSHAN[1],
    }
    r = post(server, tokens["system"], [record])
    assert r.json() == {"received": 1, "accepted": 1, "rejected": []}


def test_conflicting_device_ids_in_an_osmand_request_are_malformed(server, store):
    token = create_token(store, "device", "dev-026")
    fix = {
        "id": "dev-026",
        "deviceid": "dev-027",
        "lat": NANSHAN[0],
        "lon": NANSHAN[1],
        "timestamp": T0,
        "token": token,
    }
    for url in (server.phone_url + "/", server.url + "/osmand"):
        r = requests.get(url, params=fix, timeout=30)
        assert r.status_code == 400 and "conflicting device ids" in r.text
    body = {
        "device_id": "dev-026",
        "id": "dev-027",
        "location": {
            "timestamp": "2025-11-23T00:00:00Z",
            "coords": {"latitude": NANSHAN[0], "longitude": NANSHAN[1]},
        },
    }
    r = requests.post(server.phone_url + "/", json=body, params={"token": token}, timeout=30)
    assert r.status_code == 400 and "conflicting device ids" in r.text
    assert store.scalar("SELECT count(*) FROM pings") == 0


def test_unknown_fields_are_ignored_and_kept_in_the_quarantined_copy(server, store, tokens):
    good = ping("dev-001", altitude=12, battery={"level": 0.5}, note="x")
    bad = ping("dev-002", lat=123.0, altitude=7, battery={"level": 0.1})
    r = post(server, tokens["system"], [good, bad])
    assert r.json()["accepted"] == 1
    assert store.scalar("SELECT count(*) FROM pings WHERE device_id = 'dev-001'") == 1
    [(reason, raw)] = store.sql("SELECT reason, raw FROM quarantine").rows()
    assert reason == "lat out of range [-90, 90]"
    assert json.loads(raw)["battery"] == {"level": 0.1} and json.loads(raw)["altitude"] == 7
