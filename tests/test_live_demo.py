"""The live demo day: generated for today from the time it starts, with a surge in its
first half hour, played through the real ingest paths; a predicted alert comes true."""

from __future__ import annotations

import logging
from argparse import Namespace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from config import Settings
from data.demo import live
from data.store.database import Store
from tests.conftest import DEMO_END
from tests.ingest_support import ThreadedServer, copy_store

TZ = ZoneInfo("Asia/Shanghai")


def _utc(local: datetime) -> datetime:
    return local.replace(tzinfo=TZ).astimezone(UTC).replace(tzinfo=None)


#: The day after the demo's newest day, so that its earlier days are the forecast's history.
LIVE_DAY = DEMO_END + timedelta(days=1)
#: Inside the busy hours: the live day keeps the real hours.
START = _utc(datetime(LIVE_DAY.year, LIVE_DAY.month, LIVE_DAY.day, 14, 10))


@pytest.fixture(scope="module")
def network(small_demo_path):
    with Store(small_demo_path, read_only=True) as store:
        return live.read_network(store)


def test_live_day_starts_now_with_in_transit_scans_first_and_a_surge_within_half_an_hour(network):
    day = live.live_day(network, "small", 7, START)
    assert day.shift == timedelta(0)
    assert day.pings["ts"].min() >= START and day.events["ts"].min() >= START
    assert day.backlog["ts"].max() < START
    # the backlog is only parcels still on their way: each has a later scan in the day
    assert set(day.backlog["parcel_id"]) <= set(day.events["parcel_id"])
    assert day.events["parcel_id"].str.starts_with("L2611211410").all()
    surge = day.surge.row(0, named=True)
    assert surge["start_hour"] <= START < surge["end_hour"]  # on from the first minute
    # what the forecast reads: scans naming the surge's branch for delivery in its hours
    heading = day.backlog.filter(
        (pl.col("dest_branch_id") == surge["branch_id"])
        & (pl.col("expected_at") >= surge["start_hour"])
        & (pl.col("expected_at") < surge["end_hour"])
    )
    assert len(heading) > 100
    # the first minutes are busy
    first = day.pings.filter(pl.col("ts") < START + timedelta(minutes=10))
    assert first["device_id"].n_unique() > 100


@pytest.mark.parametrize("hour", [3, 22])
def test_a_live_day_started_at_night_moves_at_once(network, hour):
    start = _utc(datetime(LIVE_DAY.year, LIVE_DAY.month, LIVE_DAY.day, hour, 0))
    day = live.live_day(network, "small", 7, start)
    assert day.shift != timedelta(0)
    first = day.pings.filter(pl.col("ts") < start + timedelta(minutes=10))
    assert first["device_id"].n_unique() > 100
    assert day.events.filter(pl.col("ts") < start + timedelta(minutes=10)).height > 50
    surge = day.surge.row(0, named=True)
    assert surge["start_hour"] <= start < surge["end_hour"]


@pytest.mark.parametrize("hour", [3, 22])
def test_a_moved_day_gives_the_earlier_days_its_hours_where_they_hold_nothing(network, small_store, hour):
    start = _utc(datetime(LIVE_DAY.year, LIVE_DAY.month, LIVE_DAY.day, hour, 0))
    day = live.live_day(network, "small", 7, start)
    busy = live.busy_hours(small_store, start - timedelta(days=16), start)
    days = live.earlier_days(LIVE_DAY, live.held_days(busy))
    assert days == [LIVE_DAY - timedelta(days=2), LIVE_DAY - timedelta(days=1)]  # the demo's two
    pings, events = live.moved_history(network, "small", 7, day, days[-1], busy)
    assert pings["ts"].max() < start and events["ts"].max() < start
    assert events["parcel_id"].str.starts_with(f"H{days[-1]:%y%m%d}{hour:02d}00").all()
    # only where the courier or van has no record of its own in that hour ...
    actors = network["devices"].select("device_id", pl.coalesce("courier_id", "vehicle_id").alias("actor_id"))
    mine = pings.join(actors, on="device_id").select("actor_id", pl.col("ts").dt.truncate("1h").alias("hour"))
    assert mine.join(busy, on=["actor_id", "hour"], how="semi").is_empty()
    # ... each parcel whole: a delivery with its arrival scan, a pickup with its request
    kinds = events.group_by("parcel_id").agg(pl.col("kind"))["kind"].to_list()
    assert all(
        ("delivered" in k) == ("arrival" in k) and ("pickup" in k) == ("pickup_request" in k) for k in kinds
    )
    # ... and the day before has couriers at work in the hours the live day starts with
    branch = day.surge["branch_id"][0]
    couriers = set(network["couriers"].filter(pl.col("branch_id") == branch)["courier_id"])
    for h in range(3):
        t = start.replace(minute=0) + timedelta(hours=h) - timedelta(days=1)
        at_work = mine.filter((pl.col("hour") == t) & pl.col("actor_id").is_in(list(couriers)))
        assert at_work["actor_id"].n_unique() > 0.8 * len(couriers)


def test_it_never_plays_on_a_store_holding_real_data(small_demo_path, tmp_path, empty_store, caplog):
    assert "no demo marker" in live.refusal(empty_store)
    caplog.set_level(logging.INFO, logger="emap.live")
    assert live.LivePlayer(empty_store, "http://127.0.0.1:9").start() is None
    assert "live demo day off: the store is not a demo store" in caplog.text
    with Store(copy_store(small_demo_path, tmp_path / "demo.duckdb")) as store:
        assert live.refusal(store) is None
        store.cursor().execute("INSERT INTO devices VALUES ('my-phone', 'c-000001', NULL, now()::TIMESTAMP)")
        assert "1 devices that are not the demo's" in live.refusal(store)


def test_serve_turns_it_off_by_flag_or_setting(small_demo_path, tmp_path, settings):
    from dataclasses import replace

    from cli.serve import _live_demo

    with Store(copy_store(small_demo_path, tmp_path / "emap.duckdb")) as store:
        blueprints = [object()]  # the ingest API is on
        off = Namespace(no_live_demo=True, live_speedup=None)
        assert _live_demo(off, settings, store, blueprints, "127.0.0.1", 9, None) is None
        on = Namespace(no_live_demo=False, live_speedup=None)
        unset = replace(settings, live_demo=False)  # EMAP_LIVE_DEMO=0
        assert _live_demo(on, unset, store, blueprints, "127.0.0.1", 9, None) is None
        assert _live_demo(on, settings, store, [], "127.0.0.1", 9, None) is None  # a lake: no ingest
    assert Settings.from_env({"EMAP_LIVE_DEMO": "0"}).live_demo is False
    assert Settings.from_env({"EMAP_LIVE_SPEEDUP": "30"}).live_speedup == 30.0


def _looks(model, viewer, branch: str, day: str, hour: int, outlook: bool = True) -> dict:
    """What the dashboard shows of the live hour: predicted alerts in the surge's branch
    (with ``outlook``), current zones there, couriers' latest positions and the KPI panel."""
    from views import outlook as panel

    rows = panel.rows(model, viewer, "hq", day, hour) if outlook else []
    predicted = [a for a in rows if a["branch_id"] == branch]
    zones = model.zones("hq", day, hour, with_since=False)
    return {
        "predicted": predicted,
        "zones": zones.filter(pl.col("branch_id") == branch),
        "positions": model.positions("hq", day, hour, "courier").select("courier_id", "lat", "lng"),
        "kpis": model.kpis("hq", day, hour),
    }


@pytest.mark.parametrize("clock", [(14, 10), (3, 0), (22, 0)], ids=["14:10", "03:00", "22:00"])
def test_a_predicted_alert_comes_true_through_the_real_ingest_paths(
    small_demo_path, tmp_path, settings, clock
):
    """Inside the busy hours the earlier demo days are the history as they are; started at
    night, the day is moved and the player first gives the earlier days the moved hours."""
    from views.model import Model

    day, hour = LIVE_DAY.isoformat(), clock[0]
    start_at = _utc(datetime(LIVE_DAY.year, LIVE_DAY.month, LIVE_DAY.day, *clock))
    with Store(copy_store(small_demo_path, tmp_path / "emap.duckdb")) as store:
        with ThreadedServer(store, settings, phones=True) as srv:
            model = Model(store, settings)
            viewer = model.everyone()
            branch = live.busiest_branch(live.read_network(store))
            seen = {"start": _looks(model, viewer, branch, day, hour, outlook=False)}

            def after_backlog():
                seen["in transit"] = _looks(Model(store, settings), viewer, branch, day, hour)

            player = live.LivePlayer(
                store,
                srv.url,
                srv.phone_url,
                speedup=1800,
                span=timedelta(minutes=30),
                osmand_share=0.01,
                now=lambda: start_at,
                after_backlog=after_backlog,
            ).start()
            assert player is not None
            player.join(120)
            assert not player.thread.is_alive()
            seen["after"] = _looks(Model(store, settings), viewer, branch, day, hour)
            tokens_left = store.scalar("SELECT count(*) FROM tokens WHERE revoked_at IS NULL")

    backlog, report = player.reports
    # the demo's own few points off the coast are refused as they are by the generator
    assert set(backlog.reasons) | set(report.reasons) <= {"position outside every branch territory"}
    assert backlog.accepted >= 0.99 * len(player.days[0].backlog) and backlog.failed_requests == 0
    assert report.accepted > 5_000 and report.failed_requests == 0
    assert tokens_left == 0  # the player's own token is revoked when it stops
    moved = player.days[0].shift != timedelta(0)
    assert moved == (clock != (14, 10))
    # a moved day: the earlier demo days got its hours first (as the generator stores)
    assert len(player.history) == moved and all(h["pings"] > 100_000 for h in player.history)
    start, in_transit, after = seen["start"], seen["in transit"], seen["after"]
    # information leads: the in-transit scans alone predict a peak-load alert in the
    # surge's branch, while no zone is over load there yet ...
    assert start["zones"].is_empty()
    assert in_transit["predicted"] and in_transit["zones"].is_empty()
    # ... and then the parcels and couriers arrive: the alert opens for real
    assert len(after["zones"]) >= 1
    predicted_cells = {int(c) for a in in_transit["predicted"] for c in a["cells"]}
    assert predicted_cells & {int(c) for cells in after["zones"]["cells"] for c in cells}
    # couriers moved and the KPI panel changed
    assert start["positions"].is_empty() and after["positions"].height > 100
    assert after["kpis"] != in_transit["kpis"]
