# ruff: noqa: F811  (the shared ingest fixtures are imported by name and used as arguments)
"""Plausible values only: times outside the window (year 9999, 1900, 2099), infinite or
absurd speeds and accuracies are refused with their own reasons, from files, the batch
API and the phone protocol, and never stored."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import requests

from config import Settings
from tests.ingest_support import ThreadedServer, store, template, tokens  # noqa: F401
from tests.security.ingest_support import NANSHAN, T0, auth, ping

BAD_TIMES = ["9999-12-31T23:00:00Z", "1900-01-01T00:00:00Z", "2099-01-01T00:00:00Z"]


@pytest.fixture
def server(store):
    with ThreadedServer(store, phones=True) as srv:
        yield srv


@pytest.mark.parametrize("ts", BAD_TIMES)
def test_batch_api_refuses_implausible_times_and_keeps_the_good_neighbour(server, store, tokens, ts):
    r = requests.post(
        f"{server.url}/api/v1/pings",
        json=[ping("dev-001", ts=ts), ping("dev-002")],
        headers=auth(tokens["system"]),
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["accepted"] == 1
    [rejected] = r.json()["rejected"]
    assert rejected["index"] == 0 and rejected["reason"].startswith("implausible time: ts")
    assert store.scalar("SELECT count(*) FROM pings") == 1
    assert str(store.scalar("SELECT max(ts) FROM pings")).startswith("2025-11-23")
    assert store.scalar("SELECT count(*) FROM quarantine WHERE reason LIKE 'implausible time%'") == 1


def test_events_with_implausible_times_are_refused(server, store, tokens):
    events = [
        {
            "parcel_id": "p-1",
            "kind": "pickup",
            "ts": "9999-12-31T23:00:00Z",
            "lat": NANSHAN[0],
            "lng": NANSHAN[1],
        },
        {
            "parcel_id": "p-2",
            "kind": "pickup",
            "ts": T0,
            "lat": NANSHAN[0],
            "lng": NANSHAN[1],
            "promised_at": "9999-12-31T23:00:00Z",
        },
        {"parcel_id": "p-3", "kind": "pickup", "ts": T0, "lat": NANSHAN[0], "lng": NANSHAN[1]},
    ]
    r = requests.post(f"{server.url}/api/v1/events", json=events, headers=auth(tokens["system"]), timeout=30)
    assert r.json()["accepted"] == 1
    assert [x["reason"].split(":")[0] for x in r.json()["rejected"]] == ["implausible time"] * 2
    assert store.scalar("SELECT count(*) FROM parcel_events") == 1


@pytest.mark.parametrize("ts", BAD_TIMES)
def test_phone_fixes_at_implausible_times_are_answered_200_and_quarantined(server, store, ts):
    fix = {"id": "dev-004", "lat": NANSHAN[0], "lon": NANSHAN[1], "timestamp": ts}
    for url in (server.phone_url + "/", server.url + "/osmand"):
        r = requests.get(url, params=fix, timeout=30)
        assert r.status_code == 200  # refused for good: the phone moves on to its next fix
        assert "implausible time" in r.text
    assert store.scalar("SELECT count(*) FROM pings") == 0
    assert store.scalar("SELECT count(*) FROM quarantine WHERE reason LIKE 'implausible time%'") == 2


def test_file_import_quarantines_implausible_times(store, tmp_path):
    from data.ingest.importer import import_file

    path = tmp_path / "pings.csv"
    lines = ["device_id,ts,lat,lng"] + [f"dev-005,{ts},{NANSHAN[0]},{NANSHAN[1]}" for ts in BAD_TIMES]
    lines.append(f"dev-005,2025-11-23T00:00:00Z,{NANSHAN[0]},{NANSHAN[1]}")
    path.write_text("\n".join(lines) + "\n")
    report = import_file(store, path, kind="pings")
    assert (report.accepted, report.rejected) == (1, 3)
    reasons = store.sql("SELECT reason FROM quarantine ORDER BY row_number")["reason"].to_list()
    assert len(reasons) == 3 and all(r.startswith("implausible time: ts") for r in reasons)
    assert store.scalar("SELECT count(*) FROM pings") == 1


def test_the_window_is_a_setting(store, tokens):
    settings = Settings.from_env(
        {"EMAP_INGEST_EARLIEST_TS": "2025-11-23T00:00:10", "EMAP_INGEST_MAX_AHEAD_HOURS": "1"}
    )
    soon = datetime.now(UTC) + timedelta(minutes=30)
    later = datetime.now(UTC) + timedelta(hours=3)
    records = [
        ping("dev-006", 0),
        ping("dev-006", 20),
        ping("dev-006", ts=soon.isoformat()),
        ping("dev-006", ts=later.isoformat()),
    ]
    with ThreadedServer(store, settings) as srv:
        r = requests.post(f"{srv.url}/api/v1/pings", json=records, headers=auth(tokens["system"]), timeout=30)
    assert r.json()["accepted"] == 2
    assert r.json()["rejected"] == [
        {"index": 0, "reason": "implausible time: ts before 2025-11-23"},
        {"index": 3, "reason": "implausible time: ts more than 1 h after the server's clock"},
    ]


@pytest.mark.parametrize(
    "extra, reason",
    [
        ({"speed": 1e308}, "speed is not a finite number"),
        ({"speed": "Infinity"}, "speed is not a finite number"),
        ({"speed": 5000}, "speed above 300 m/s (implausible)"),
        ({"accuracy": 1e12}, "accuracy above 100000 m (implausible)"),
        ({"accuracy": 1e300}, "accuracy is not a finite number"),
        ({"heading": "inf"}, "heading out of range [0, 360]"),
    ],
)
def test_infinite_or_absurd_values_are_refused_not_stored(server, store, tokens, extra, reason):
    r = requests.post(
        f"{server.url}/api/v1/pings",
        json=[ping("dev-007", **extra), ping("dev-008")],
        headers=auth(tokens["system"]),
        timeout=30,
    )
    assert r.json()["accepted"] == 1
    assert r.json()["rejected"] == [{"index": 0, "reason": reason}]
    assert store.scalar("SELECT count(*) FROM pings WHERE isinf(speed) OR isinf(accuracy)") == 0
    assert store.scalar("SELECT count(*) FROM pings WHERE device_id = 'dev-007'") == 0


def test_phone_fix_with_an_infinite_speed_is_answered_200_and_not_stored(server, store):
    for url in (server.phone_url + "/", server.url + "/osmand"):
        r = requests.get(
            url,
            params={"id": "dev-009", "lat": NANSHAN[0], "lon": NANSHAN[1], "timestamp": T0, "speed": "1e308"},
            timeout=30,
        )
        assert (r.status_code, r.text) == (
            200,
            "refused for good, kept in quarantine: speed is not a finite number\n",
        )
    assert store.scalar("SELECT count(*) FROM pings") == 0


def test_limits_come_from_the_settings():
    from data.ingest.validate import Limits

    limits = Limits.from_settings(replace(Settings.from_env({}), ingest_max_speed_mps=50.0))
    assert limits.max_speed == 50.0 and limits.earliest == datetime(2000, 1, 1)
