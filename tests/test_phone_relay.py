# ruff: noqa: F811  (the shared ingest fixtures are imported by name and used as arguments)
"""The phone listener in a process of its own (``serve``'s way): what the relay adds to
the listener's behaviour, which ``tests/test_phone_listener.py`` checks in both forms.

A real phone process on a real port of 127.0.0.1, killed as a crash would kill it.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from data.ingest.phone_relay import MAX_FRAME, FrameReader, frame
from tests.ingest_support import SHENZHEN, ThreadedServer, store, template  # noqa: F401

LAT, LNG = SHENZHEN
T0 = 1_763_856_000  # 2025-11-23 00:00:00 UTC


def fix(srv: ThreadedServer, device: str, ts: int, **extra) -> requests.Response:
    return requests.get(
        f"{srv.phone_url}/",
        params={"id": device, "lat": LAT, "lon": LNG, "timestamp": ts, **extra},
        timeout=30,
    )


def answered(srv: ThreadedServer, status: int) -> float:
    """Phone answers of ``status`` in the serving process's metrics."""
    metrics = srv.app.blueprints["ingest"].committer.metrics
    value = metrics.registry.get_sample_value(
        "emap_ingest_requests_total", {"endpoint": "osmand", "status": str(status)}
    )
    return value or 0.0


def test_a_phone_process_that_dies_is_started_again_on_the_same_port(store):
    with ThreadedServer(store, phones=True, relay=True) as srv:
        relay = srv.phones
        assert fix(srv, "dev-046", T0).status_code == 200
        first = relay._proc.pid
        assert first != os.getpid() and relay.alive()
        os.kill(first, signal.SIGKILL)  # a crash: no goodbye on the channel
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (relay.starts < 2 or not relay.alive()):
            time.sleep(0.05)
        assert relay.starts == 2 and relay.alive() and relay._proc.pid != first
        metrics = srv.app.blueprints["ingest"].committer.metrics
        assert metrics.value("emap_phone_process_starts") == 2
        assert metrics.value("emap_phone_process_up") == 1
        # the same port, served again; what was acknowledged before is stored
        r = fix(srv, "dev-046", T0 + 1)
        assert (r.status_code, r.text) == (200, "OK\n")
    assert store.scalar("SELECT count(*) FROM pings WHERE device_id = 'dev-046'") == 2


def test_the_phone_process_ends_with_the_relay(store):
    with ThreadedServer(store, phones=True, relay=True) as srv:
        proc = srv.phones._proc
        assert fix(srv, "dev-047", T0).status_code == 200
    assert proc.poll() is not None  # closed with the serving side, not left behind
    with pytest.raises(requests.ConnectionError):
        fix(srv, "dev-047", T0 + 1)


def test_answers_given_in_the_phone_process_are_counted_in_the_serving_process(store):
    with ThreadedServer(store, phones=True, relay=True) as srv:
        before_ok, before_bad = answered(srv, 200), answered(srv, 400)
        assert fix(srv, "dev-048", T0).status_code == 200
        # answered without a commit: a fix naming no device (decided in the serving
        # process) and a method the listener refuses itself (in the phone process)
        no_device = requests.get(f"{srv.phone_url}/", params={"lat": LAT, "lon": LNG}, timeout=30)
        assert no_device.status_code == 400
        assert requests.put(f"{srv.phone_url}/", timeout=30).status_code == 405
        deadline = time.monotonic() + 10  # the phone process reports its counts with its next frame
        while time.monotonic() < deadline and answered(srv, 405) < 1:
            time.sleep(0.05)
        assert answered(srv, 200) == before_ok + 1
        assert answered(srv, 400) == before_bad + 1
        assert answered(srv, 405) == 1


def test_frames_survive_any_split_and_an_oversized_one_is_refused():
    docs = [
        {"r": [[1, "GET", "/", "id=a&lat=1", "", "", "", "127.0.0.1"]], "n": {}},
        {"a": [[1, 200, "OK\n"]]},
    ]
    data = b"".join(frame(d) for d in docs)
    for cut in range(len(data)):
        reader = FrameReader()
        assert reader.feed(data[:cut]) + reader.feed(data[cut:]) == docs
    with pytest.raises(ValueError, match="larger than"):
        FrameReader().feed((MAX_FRAME + 1).to_bytes(4, "big"))


def test_the_phone_process_imports_neither_the_store_nor_the_writer():
    """A lean phone process starts again in a tenth of a second: it must not pull in
    DuckDB, polars or geopandas (0.9 s and 150 MB more when it did)."""
    import subprocess
    import sys

    run = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, cli.phone_worker; "
            "print(sorted(m for m in ('duckdb', 'polars', 'geopandas', 'data.store.database', "
            "'data.ingest.group_commit') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
