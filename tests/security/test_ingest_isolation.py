# ruff: noqa: F811  (the shared ingest fixtures are imported by name and used as arguments)
"""No record fails another: a record that cannot be read or stored is refused alone,
never its neighbours in a shared group commit; an oversized body is answered 413."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
import requests

from config import Settings
from data.store.database import Store
from tests.ingest_support import ThreadedServer, copy_store, store, template, tokens  # noqa: F401
from tests.security.ingest_support import NANSHAN, T0, auth, nested, ping, production  # noqa: F401

GOOD_CLIENTS = 8
ROUNDS = 3
BATCH = 50


def test_a_deeply_nested_value_fails_alone_beside_good_clients_batches(store, tokens):
    # a long linger: every request of a round joins one group commit, as under load
    settings = replace(Settings.from_env({}), ingest_linger_ms=300.0)
    lat, lng = NANSHAN
    nested_body = (
        f'[{{"device_id": "dev-040", "ts": {T0}, "lat": {lat}, "lng": {lng}, "speed": {nested(300)}}},'
        f' {{"device_id": "dev-041", "ts": {T0}, "lat": {lat}, "lng": {lng}}}]'
    ).encode()
    answers: list[tuple[str, int, dict | None]] = []
    lock = threading.Lock()

    def send(name, **kwargs):
        r = requests.post(
            url, headers={**auth(tokens["system"]), "Content-Type": "application/json"}, timeout=60, **kwargs
        )
        with lock:
            answers.append((name, r.status_code, r.json() if r.status_code == 200 else None))

    with ThreadedServer(store, settings) as srv:
        url = f"{srv.url}/api/v1/pings"
        for rnd in range(ROUNDS):
            threads = [threading.Thread(target=send, args=("nested",), kwargs={"data": nested_body})]
            threads += [
                threading.Thread(
                    target=send,
                    args=(f"good-{k}",),
                    kwargs={"json": [ping(f"dev-{k:03d}", rnd * BATCH + i) for i in range(BATCH)]},
                )
                for k in range(GOOD_CLIENTS)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    good = [a for a in answers if a[0].startswith("good")]
    assert [(status, body["accepted"]) for _, status, body in good] == [(200, BATCH)] * (
        GOOD_CLIENTS * ROUNDS
    )
    bad = [a for a in answers if a[0] == "nested"]
    assert all(status == 200 for _, status, _ in bad)
    for _, _, body in bad:
        assert body["accepted"] == 1  # its own good neighbour is stored too
        assert body["rejected"] == [{"index": 0, "reason": "'speed' must be one value, not a list"}]
    assert store.scalar("SELECT count(*) FROM pings") == GOOD_CLIENTS * ROUNDS * BATCH + 1
    assert store.scalar("SELECT count(*) FROM quarantine") == ROUNDS


class _StoreWithOneBadRecord(Store):
    """A real store that fails any commit holding the pings of ``dev-049``: a stand-in
    for a record the store cannot take, whatever the cause."""

    def commit_batch(self, batch):
        if batch.table == "pings" and "dev-049" in batch.rows["device_id"].to_list():
            raise RuntimeError("cannot store this record")
        return super().commit_batch(batch)


class _StoreThatCannotLocateOneRecord(Store):
    """A real store that cannot locate any group holding a fix of ``dev-049``: the
    writer's first stage (its preparer) fails, not the transaction."""

    def prepare_pings(self, good):
        if "dev-049" in good["device_id"].to_list():
            raise RuntimeError("cannot locate this record")
        return super().prepare_pings(good)


@pytest.mark.parametrize("failing_store", [_StoreWithOneBadRecord, _StoreThatCannotLocateOneRecord])
def test_a_record_the_store_cannot_take_fails_alone_in_a_shared_commit(template, tmp_path, failing_store):
    from data.ingest.group_commit import GroupCommitter

    path, _ = template
    with failing_store(copy_store(path, tmp_path / "emap.duckdb")) as store:
        gc = GroupCommitter(store, "Asia/Shanghai", linger=0.3).start()
        try:
            futures = [
                gc.submit("pings", [ping("dev-010", i) for i in range(20)], "a"),
                gc.submit(
                    "pings",
                    [ping("dev-011", i) for i in range(20)]
                    + [ping("dev-049")]
                    + [ping("dev-012", i) for i in range(20)],
                    "b",
                ),
                gc.submit("pings", [ping("dev-013", i) for i in range(20)], "c"),
            ]
            outcomes = [f.result(60) for f in futures]
        finally:
            gc.close()
        assert [o.accepted for o in outcomes] == [20, 40, 20]
        assert outcomes[1].rejected == [(20, "could not be stored (RuntimeError)")]
        assert store.scalar("SELECT count(*) FROM pings") == 80
        assert store.sql("SELECT source, reason FROM quarantine").rows() == [
            ("b", "could not be stored (RuntimeError)")
        ]


def test_oversized_bodies_get_413_on_the_main_port_and_the_phone_port(production):
    token = production.tokens["system"]
    big = [ping("dev-001", i) for i in range(200)]
    r = requests.post(f"{production.url}/api/v1/pings", json=big, headers=auth(token), timeout=30)
    assert r.status_code == 413
    assert r.headers["Content-Type"] == "application/json" and "larger than 2000 bytes" in r.json()["error"]
    fix = {
        "device_id": "dev-001",
        "location": {
            "timestamp": "2025-11-23T00:10:00Z",
            "coords": {"latitude": NANSHAN[0], "longitude": NANSHAN[1]},
            "extras": {"note": "x" * 3000},
        },
    }
    for url in (f"{production.url}/osmand", f"{production.phone_url}/"):
        r = requests.post(url, json=fix, timeout=30)
        assert r.status_code == 413 and "larger than 2000 bytes" in r.text
    # both ports go on serving
    r = requests.post(f"{production.url}/api/v1/pings", json=big[:5], headers=auth(token), timeout=30)
    assert r.status_code == 200 and r.json()["accepted"] == 5
    for i, url in enumerate((f"{production.url}/osmand", f"{production.phone_url}/")):
        r = requests.get(
            url,
            params={"id": "dev-002", "lat": NANSHAN[0], "lon": NANSHAN[1], "timestamp": T0 + i},
            timeout=30,
        )
        assert (r.status_code, r.text) == (200, "OK\n")
    production.__exit__()
    assert production.stored("SELECT count(*) FROM pings") == 7


@pytest.mark.parametrize("depth", [300, 2000])
def test_nesting_anywhere_in_a_record_never_fails_the_request(store, tokens, depth):
    record = ping("dev-014", extras={"deep": [0]})
    lat, lng = NANSHAN
    text = (
        f'[{json.dumps(record)}, {{"device_id": "dev-015", "ts": {T0}, "lat": {lat}, "lng": {lng},'
        f' "lat ": 1, "extras": {nested(depth)}}}]'
    )
    with ThreadedServer(store) as srv:
        r = requests.post(
            f"{srv.url}/api/v1/pings",
            data=text,
            timeout=30,
            headers={**auth(tokens["system"]), "Content-Type": "application/json"},
        )
    if r.status_code == 400:  # too deep to read at all: the body is malformed, nothing stored
        assert "malformed JSON" in r.json()["error"]
        assert store.scalar("SELECT count(*) FROM pings") == 0
        return
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert r.json()["rejected"][0]["reason"].startswith("conflicting values for 'lat'")
    raw = store.scalar("SELECT raw FROM quarantine")
    assert raw.startswith("{") and "dev-015" in raw  # the raw copy is kept, cut where too deep
