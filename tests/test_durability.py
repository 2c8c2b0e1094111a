"""Durability: SIGKILL the server in the middle of a stream, restart it, retry.

Every acknowledged record must be in the store after the restart, and the client's
retries of unacknowledged batches (some of which were committed before the kill, their
answer lost) must not store anything twice. Phones stream single fixes to the phone
listener meanwhile, under the same rule.
"""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import requests

from data.store.database import Store
from tests.ingest_support import (
    COURIER_DEVICES,
    SHENZHEN,
    VEHICLE_DEVICES,
    copy_store,
    free_port,
    start_subprocess_server,
)

LAT, LNG = SHENZHEN
T0 = 1_763_856_000
BATCHES, PER_BATCH, SENDERS = 240, 250, 4
KILL_AFTER_ACKS = 40
FIXES, PHONES = 300, 2  # single OsmAnd fixes, from this many phone connections at once


def batch(k: int) -> list[dict]:
    # batch k: one device, consecutive seconds -> unique (device_id, ts) keys across batches
    device = COURIER_DEVICES[k % len(COURIER_DEVICES)]
    start = T0 + (k // len(COURIER_DEVICES)) * PER_BATCH
    return [
        {"device_id": device, "ts": start + i, "lat": LAT + (k % 7) * 1e-3, "lng": LNG + i * 1e-5}
        for i in range(PER_BATCH)
    ]


def fix(j: int) -> dict:
    # fix j: a van's phone (the batches use couriers' devices), one second apart
    return {
        "id": VEHICLE_DEVICES[j % len(VEHICLE_DEVICES)],
        "timestamp": T0 + j,
        "lat": LAT,
        "lon": LNG + j * 1e-5,
    }


def send_fix(phone_url: str, j: int, session: requests.Session) -> bool:
    try:
        r = session.get(f"{phone_url}/", params=fix(j), timeout=30)
    except requests.RequestException:
        return False
    return (r.status_code, r.text) == (200, "OK\n")


def send(url: str, token: str, k: int, session: requests.Session) -> bool:
    try:
        r = session.post(
            f"{url}/api/v1/pings", json=batch(k), headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
    except requests.RequestException:
        return False
    return r.status_code == 200 and r.json()["accepted"] == PER_BATCH


def test_sigkill_mid_stream_loses_nothing_acknowledged(ingest_template, tmp_path):
    template, tokens = ingest_template
    db = copy_store(template, tmp_path / "emap.duckdb")
    token = tokens["system"]
    port, phone_port = free_port(), free_port()
    url, phone_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{phone_port}"
    server = start_subprocess_server(db, port, osmand_port=phone_port)
    try:
        acked_before_kill, fixes_before_kill = _stream_until_killed(server, url, phone_url, token)
        # restart on the same file; the client retries everything not acknowledged,
        # and re-sends a few acknowledged batches too (an answer lost on the way)
        server = start_subprocess_server(db, port, osmand_port=phone_port)
        _retry(url, phone_url, token, acked_before_kill, fixes_before_kill)
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
    _check_stored(db, acked_before_kill, fixes_before_kill)


def _stream_until_killed(server, url: str, phone_url: str, token: str) -> tuple[set, set]:
    """Stream batches and phone fixes; SIGKILL the server after KILL_AFTER_ACKS batches
    are acknowledged. The batches and fixes acknowledged before the kill."""
    acked: set[int] = set()
    lock = threading.Lock()
    todo = list(range(BATCHES))
    killed = threading.Event()
    fixes_todo = list(range(FIXES))
    fixes_acked: set[int] = set()

    def phone():
        session = requests.Session()
        while not killed.is_set():
            with lock:
                if not fixes_todo:
                    return
                j = fixes_todo.pop(0)
            if send_fix(phone_url, j, session):
                with lock:
                    fixes_acked.add(j)

    def sender():
        session = requests.Session()
        while not killed.is_set():
            with lock:
                if not todo:
                    return
                k = todo.pop(0)
            if send(url, token, k, session):
                with lock:
                    acked.add(k)
                    if len(acked) >= KILL_AFTER_ACKS and not killed.is_set():
                        os.kill(server.pid, signal.SIGKILL)  # only the server this test started
                        killed.set()

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    threads += [threading.Thread(target=phone) for _ in range(PHONES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    server.wait(30)
    assert killed.is_set() and server.returncode == -signal.SIGKILL
    acked_before_kill, fixes_before_kill = set(acked), set(fixes_acked)
    assert KILL_AFTER_ACKS <= len(acked_before_kill) < BATCHES
    assert fixes_before_kill and len(fixes_before_kill) < FIXES
    return acked_before_kill, fixes_before_kill


def _retry(url: str, phone_url: str, token: str, acked_before_kill: set, fixes_before_kill: set) -> None:
    """Send again what was not acknowledged (and a few that were), over as many
    connections as the stream had: one at a time, each would wait for a commit of its own."""
    retries = sorted(set(range(BATCHES)) - acked_before_kill) + sorted(acked_before_kill)[:5]
    fix_retries = sorted(set(range(FIXES)) - fixes_before_kill) + sorted(fixes_before_kill)[:5]
    local = threading.local()

    def client() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    with ThreadPoolExecutor(SENDERS + PHONES) as pool:
        sent = pool.map(lambda k: send(url, token, k, client()), retries)
        fixed = pool.map(lambda j: send_fix(phone_url, j, client()), fix_retries)
        unsent = [k for k, ok in zip(retries, sent, strict=True) if not ok]
        unfixed = [j for j, ok in zip(fix_retries, fixed, strict=True) if not ok]
    assert not unsent, f"batches not acknowledged after restart: {unsent}"
    assert not unfixed, f"fixes not acknowledged after restart: {unfixed}"


def _check_stored(db, acked_before_kill: set, fixes_before_kill: set) -> None:
    expected = pl.concat([pl.DataFrame(batch(k)) for k in range(BATCHES)])
    with Store(db, read_only=True) as store:
        everything = store.sql("SELECT device_id, epoch(ts)::BIGINT AS ts FROM pings")
        assert store.scalar("SELECT sum(pings) FROM cube_hourly") == len(everything)
    stored = everything.filter(pl.col("device_id").is_in(COURIER_DEVICES))
    phones = everything.filter(pl.col("device_id").is_in(VEHICLE_DEVICES))
    # every fix a phone had its 200 for is stored, every fix is stored once
    fix_keys = pl.DataFrame([fix(j) for j in range(FIXES)]).select(device_id="id", ts="timestamp")
    acked_fixes = pl.DataFrame([fix(j) for j in fixes_before_kill]).select(device_id="id", ts="timestamp")
    assert acked_fixes.join(phones, on=["device_id", "ts"], how="anti").is_empty()
    assert fix_keys.join(phones, on=["device_id", "ts"], how="anti").is_empty()
    assert len(phones) == FIXES and phones.is_duplicated().sum() == 0
    # every acknowledged record (before the kill, and after the retries) is stored ...
    acked_keys = pl.concat([pl.DataFrame(batch(k)) for k in acked_before_kill]).select("device_id", "ts")
    assert acked_keys.join(stored, on=["device_id", "ts"], how="anti").is_empty()
    assert expected.select("device_id", "ts").join(stored, on=["device_id", "ts"], how="anti").is_empty()
    # ... and nothing twice
    assert len(stored) == len(expected) == BATCHES * PER_BATCH
    assert stored.select("device_id", "ts").is_duplicated().sum() == 0
