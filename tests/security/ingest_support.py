"""Shared set-up of the ingest security tests: requests as hostile or careless clients
send them, a phone that behaves as Traccar Client does, and the ingest server as it runs
in production (waitress in its own process, the phone listener on its own port)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.ingest_support import copy_store, free_port, start_subprocess_server

#: Inside branch b-440305 (Shenzhen Nanshan).
NANSHAN = (22.5333, 113.9300)
#: Guangzhou, far outside b-440305.
GUANGZHOU = (23.13, 113.26)
#: A good time for a fix: 2025-11-23 00:00:00 UTC.
T0 = 1_763_856_000


def auth(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def ping(device: str, i: int = 0, lat: float = NANSHAN[0], lng: float = NANSHAN[1], **extra) -> dict:
    return {"device_id": device, "ts": T0 + i, "lat": lat, "lng": lng, **extra}


def nested(depth: int) -> str:
    """JSON text of a value nested ``depth`` lists deep."""
    return "[" * depth + "1" + "]" * depth


class TraccarLikeClient:
    """A phone as Traccar Client is: its fixes are kept in order, the oldest is sent
    until the server answers 200, then the next one (``TrackingController``: read ->
    send -> retry -> read). Any other answer leaves the fix at the head of the queue.

    Parameters
    ----------
    url : str
        Where to send (the phone listener's root, or ``/osmand`` on the main port).
    max_attempts : int
        Sends of one fix before the client is declared stalled (a real phone would retry
        every 30 s for ever).
    """

    def __init__(self, url: str, max_attempts: int = 5):
        self.url = url
        self.max_attempts = max_attempts
        self.queue: list[dict] = []
        self.answers: list[tuple[int, str]] = []
        self.stalled_on: dict | None = None

    def record(self, fix: dict) -> None:
        self.queue.append(fix)

    def run(self) -> None:
        """Send until the queue is empty or the oldest fix has been refused ``max_attempts`` times."""
        with requests.Session() as session:
            attempts = 0
            while self.queue:
                fix = self.queue[0]
                r = session.get(self.url, params=fix, timeout=30)
                self.answers.append((r.status_code, r.text))
                if r.status_code == 200:
                    self.queue.pop(0)
                    attempts = 0
                    continue
                attempts += 1
                if attempts >= self.max_attempts:
                    self.stalled_on = fix
                    return


class ProductionServer:
    """``python -m cli.ingest`` (waitress, as served in production) on a store of its
    own, with the phone listener on a port of its own; ``env`` sets ``EMAP_*``."""

    def __init__(self, template: tuple[Path, dict], tmp: Path, env: dict | None = None):
        self.db = copy_store(template[0], tmp / "served.duckdb")
        self.tokens = template[1]
        self.port, self.phone_port = free_port(), free_port()
        self.env = env or {}
        self.proc = None

    def __enter__(self) -> ProductionServer:
        self.proc = start_subprocess_server(self.db, self.port, self.env, osmand_port=self.phone_port)
        self.url = f"http://127.0.0.1:{self.port}"
        self.phone_url = f"http://127.0.0.1:{self.phone_port}"
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()  # SIGTERM: queued records are committed, the store closed
        self.proc.wait(30)

    def stored(self, sql: str):
        """One figure from the store, read once the server has stopped (it owns the file)."""
        from data.store.database import Store

        with Store(self.db, read_only=True) as store:
            return store.scalar(sql)


@pytest.fixture
def production(ingest_template, tmp_path):
    """A production-like ingest server with a 2,000-byte body limit."""
    with ProductionServer(ingest_template, tmp_path, {"EMAP_INGEST_MAX_BODY_BYTES": "2000"}) as srv:
        yield srv


def quarantined(store) -> list[tuple[str, str]]:
    """``(reason, raw)`` of every quarantined record, oldest first."""
    return store.sql("SELECT reason, raw FROM quarantine ORDER BY received_at, row_number").rows()


def body(records) -> bytes:
    return json.dumps(records).encode()
