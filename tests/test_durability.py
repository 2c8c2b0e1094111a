"""Durability: SIGKILL the server in the middle of a stream, restart it, retry.

Every acknowledged record must be in the store after the restart, and the client's
retries of unacknowledged batches (some of which were committed before the kill, their
answer lost) must not store anything twice.
"""

from __future__ import annotations

import os
import signal
import threading

import polars as pl
import requests

from data.store import Store
from tests.ingest_support import COURIER_DEVICES, SHENZHEN, build_store, free_port, start_subprocess_server

LAT, LNG = SHENZHEN
T0 = 1_763_856_000
BATCHES, PER_BATCH, SENDERS = 240, 250, 4
KILL_AFTER_ACKS = 40


def batch(k: int) -> list[dict]:
    # batch k: one device, consecutive seconds -> unique (device_id, ts) keys across batches
    device = COURIER_DEVICES[k % len(COURIER_DEVICES)]
    start = T0 + (k // len(COURIER_DEVICES)) * PER_BATCH
    return [{"device_id": device, "ts": start + i, "lat": LAT + (k % 7) * 1e-3, "lng": LNG + i * 1e-5}
            for i in range(PER_BATCH)]


def send(url: str, token: str, k: int, session: requests.Session) -> bool:
    try:
        r = session.post(f"{url}/api/v1/pings", json=batch(k),
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
    except requests.RequestException:
        return False
    return r.status_code == 200 and r.json()["accepted"] == PER_BATCH


def test_sigkill_mid_stream_loses_nothing_acknowledged(tmp_path):
    db = tmp_path / "emap.duckdb"
    token = build_store(db)["system"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_subprocess_server(db, port)
    acked: set[int] = set()
    lock = threading.Lock()
    todo = list(range(BATCHES))
    killed = threading.Event()

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
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        server.wait(30)
        assert killed.is_set() and server.returncode == -signal.SIGKILL
        acked_before_kill = set(acked)
        assert KILL_AFTER_ACKS <= len(acked_before_kill) < BATCHES

        # restart on the same file; the client retries everything not acknowledged,
        # and re-sends a few acknowledged batches too (an answer lost on the way)
        server = start_subprocess_server(db, port)
        session = requests.Session()
        retries = sorted(set(range(BATCHES)) - acked_before_kill) + sorted(acked_before_kill)[:5]
        for k in retries:
            assert send(url, token, k, session), f"batch {k} not acknowledged after restart"
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)

    expected = pl.concat([pl.DataFrame(batch(k)) for k in range(BATCHES)])
    with Store(db, read_only=True) as store:
        stored = store.sql("SELECT device_id, epoch(ts)::BIGINT AS ts FROM pings")
        assert store.scalar("SELECT sum(pings) FROM cube_hourly") == len(stored)
    # every acknowledged record (before the kill, and after the retries) is stored ...
    acked_keys = pl.concat([pl.DataFrame(batch(k)) for k in acked_before_kill]).select("device_id", "ts")
    assert acked_keys.join(stored, on=["device_id", "ts"], how="anti").is_empty()
    assert expected.select("device_id", "ts").join(stored, on=["device_id", "ts"], how="anti").is_empty()
    # ... and nothing twice
    assert len(stored) == len(expected) == BATCHES * PER_BATCH
    assert stored.select("device_id", "ts").is_duplicated().sum() == 0
