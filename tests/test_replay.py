"""Replay of a stored day to a real server: batches and single OsmAnd requests."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from data.demo.replay import replay
from data.ingest.validate import check_events, check_pings
from data.store.database import Store
from tests.ingest_support import COURIER_DEVICES, SHENZHEN, ThreadedServer, copy_store

LAT, LNG = SHENZHEN


def test_replay_sends_a_day_through_batches_and_osmand(ingest_template, tmp_path):
    template, tokens = ingest_template
    source = copy_store(template, tmp_path / "source.duckdb")
    start = datetime(2025, 11, 23, 1, 0)  # 09:00 in Shenzhen
    n = 1200
    with Store(source) as store:
        pings = pl.DataFrame(
            {
                "device_id": [COURIER_DEVICES[i % 50] for i in range(n)],
                "ts": [start + timedelta(seconds=i * 2) for i in range(n)],
                "lat": [LAT + (i % 13) * 1e-4 for i in range(n)],
                "lng": [LNG] * n,
                "speed": [4.0] * n,
                "heading": [90.0] * n,
                "accuracy": [5.0] * n,
            }
        ).with_row_index("_row", offset=1)
        events = pl.DataFrame(
            {
                "event_id": [f"e{i}" for i in range(200)],
                "parcel_id": [f"p{i}" for i in range(200)],
                "kind": ["pickup"] * 200,
                "ts": [start + timedelta(seconds=i * 30) for i in range(200)],
                "lat": [LAT] * 200,
                "lng": [LNG] * 200,
            }
        ).with_row_index("_row", offset=1)
        assert store.ingest_pings(check_pings(pings)[0])[0] == n
        assert store.ingest_events(check_events(events)[0])[0] == 200
        expected = store.sql("SELECT ts FROM pings ORDER BY ts, device_id")["ts"].to_list()

    with Store(copy_store(template, tmp_path / "server.duckdb")) as target:
        with ThreadedServer(target, phones=True) as srv:
            report = replay(
                srv.url,
                tokens["system"],
                speedup=3600.0,
                max_seconds=60,
                source=source,
                batch_size=300,
                osmand_share=0.3,
                clients=8,
                to_today=False,
                osmand_url=srv.phone_url,
            )
            # single fixes went to the phone port, as phones send them
            assert srv.phones.requests > n * 0.2
        assert report.pings_sent == n and report.events_sent == 200
        assert report.failed_requests == 0 and report.rejected == 0
        assert report.accepted == n + 200
        assert report.requests > n * 0.2  # many single OsmAnd requests besides the batches
        stored = target.sql("SELECT device_id, ts, speed FROM pings ORDER BY ts, device_id")
        assert len(stored) == n
        assert stored["ts"].to_list() == expected
        assert stored["speed"].round(2).unique().to_list() == [4.0]  # knots round trip in the query form
        assert target.scalar("SELECT count(*) FROM parcel_events") == 200
