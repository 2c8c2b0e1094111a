"""Shared set-up of the ingest tests: a store with the real tree and a few devices, and a
real HTTP server (werkzeug, threaded, or ``python -m cli.ingest`` in a subprocess), with
the phone listener on a port of its own when asked."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
import requests

from config import PROJECT_ROOT, Settings
from data.ingest.tokens import create_token
from data.store.database import Store
from geo.hierarchy import load_tree

#: Devices registered in every test store: couriers dev-000 .. dev-049, vans van-0 .. van-4.
COURIER_DEVICES = [f"dev-{i:03d}" for i in range(50)]
VEHICLE_DEVICES = [f"van-{i}" for i in range(5)]
#: A point in Shenzhen Futian (inside a branch territory).
SHENZHEN = (22.5431, 114.0579)


def build_store(path: Path, tree=None) -> dict[str, str]:
    """Create a store with the tree (``tree``, or loaded) and the test devices; returns
    tokens by name. Tests copy the session's ``ingest_template`` (tests/conftest.py)
    rather than build one each: building takes seconds, a copy a fraction of one."""
    with Store(path) as store:
        store.save_tree(tree if tree is not None else load_tree())
        now = datetime.now(UTC).replace(tzinfo=None)
        ids = COURIER_DEVICES + VEHICLE_DEVICES
        store.upsert(
            "devices",
            pl.DataFrame(
                {
                    "device_id": ids,
                    "courier_id": [f"c-{d}" for d in COURIER_DEVICES] + [None] * len(VEHICLE_DEVICES),
                    "vehicle_id": [None] * len(COURIER_DEVICES) + [f"v-{d}" for d in VEHICLE_DEVICES],
                    "registered_at": [now] * len(ids),
                },
                schema_overrides={"courier_id": pl.String, "vehicle_id": pl.String},
            ),
            "device_id",
        )
        return {
            "system": create_token(store, "system", "test-ops"),
            "device": create_token(store, "device", "dev-000"),
        }


def copy_store(template: Path, target: Path) -> Path:
    shutil.copy(template, target)
    wal = Path(str(template) + ".wal")
    if wal.exists():
        shutil.copy(wal, Path(str(target) + ".wal"))
    return target


@pytest.fixture(scope="module")
def template(ingest_template):
    """The store every test of the module copies: ``(path, tokens by name)``; the
    session's ``ingest_template``, never written."""
    return ingest_template


@pytest.fixture
def store(template, tmp_path):
    """A fresh copy of the template store."""
    path, _ = template
    with Store(copy_store(path, tmp_path / "emap.duckdb")) as s:
        yield s


@pytest.fixture
def tokens(template):
    """The template store's tokens by name (``system``, ``device``)."""
    return template[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThreadedServer:
    """The ingest blueprint on a plain Flask app, served by werkzeug on 127.0.0.1.

    With ``phones=True`` the phone listener also runs, on a free port (``phone_url``), in a
    phone process of its own with ``relay=True`` (:mod:`data.ingest.phone_relay`);
    ``listener_options`` go to :class:`data.ingest.phone_listener.PhoneListener` (time-outs, limits).
    """

    def __init__(
        self,
        store: Store,
        settings: Settings | None = None,
        phones: bool = False,
        relay: bool = False,
        **listener_options,
    ):
        from werkzeug.serving import make_server

        from data.ingest.http_api import ingest_front, make_app

        self.settings = settings or Settings.from_env({})
        self.app = make_app(store, self.settings)
        # served as in production: /osmand answered in front of Flask, the rest by Flask
        self.server = make_server(
            "127.0.0.1", 0, ingest_front(self.app, self.app.blueprints["ingest"]), threaded=True
        )
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.phones = None
        self.phone_url = None
        if phones:
            from data.ingest.phone_listener import PhoneListener
            from data.ingest.phone_relay import PhoneRelay

            # relay: the listener in a phone process of its own, as ``serve`` runs it
            kind = PhoneRelay if relay else PhoneListener
            self.phones = kind(self.app.blueprints["ingest"].osmand, "127.0.0.1", 0, **listener_options)

    def __enter__(self):
        self.thread.start()
        if self.phones is not None:
            self.phones.start()
            self.phone_url = f"http://127.0.0.1:{self.phones.port}"
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        if self.phones is not None:
            self.phones.close()
        self.app.blueprints["ingest"].committer.close()


def start_subprocess_server(
    db: Path, port: int, env: dict | None = None, osmand_port: int = 0
) -> subprocess.Popen:
    """``python -m cli.ingest`` on ``db``, with the phone listener on ``osmand_port`` (0:
    none, so that tests never take the default 5055); returns once it answers."""
    log = Path(f"{db}.{port}.log")
    with open(log, "ab") as err:  # a file, not a pipe: a full pipe would stall the server
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.ingest",
                "--db",
                str(db),
                "--port",
                str(port),
                "--osmand-port",
                str(osmand_port),
            ],
            cwd=PROJECT_ROOT,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).ok:
                return proc
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start within 30 s")
