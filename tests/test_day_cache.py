"""Network-wide day frames sliced by scope: the same figures as the store's scoped
queries, only the scope's rows, and new data for a cached day seen."""

from __future__ import annotations

import shutil
from datetime import UTC, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data.ingest.validate import check_pings
from data.store import reads as queries
from data.store.database import ScopeError, Store
from data.store.day_cache import DayFigures
from tests.conftest import DEMO_END
from views.cache import Cache
from views.model import Model

DAY = DEMO_END.isoformat()
SHENZHEN, GUANGZHOU = "r-440300", "r-440100"


@pytest.fixture
def window(small_model):
    return small_model.day_window(DAY)


@pytest.mark.parametrize(
    "scope, res",
    [("hq", 5), ("div-south", 6), (SHENZHEN, 7), (GUANGZHOU, 5), ("b-440305", 7), ("b-440305", 9)],
)
def test_cached_figures_equal_the_store_queries(small_store, window, scope, res):
    days = DayFigures(small_store, Cache(16))
    a, b = window
    for _ in range(2):  # the second round reads the cached frames
        assert_frame_equal(days.cube(scope, a, b, res), small_store.cube(scope, a, b, res))
        assert_frame_equal(days.hourly_totals(scope, a, b), queries.hourly_totals(small_store, scope, a, b))
        assert_frame_equal(
            days.children_hourly(scope, a, b), queries.children_hourly(small_store, scope, a, b)
        )


def test_cached_frames_answer_only_within_the_scope(small_store, window):
    days = DayFigures(small_store, Cache(16))
    a, b = window
    whole = days.cube("hq", a, b, 7)  # loads the network-wide frames
    sz, gz = days.cube(SHENZHEN, a, b, 7), days.cube(GUANGZHOU, a, b, 7)
    assert len(sz) and len(gz)
    assert not set(sz["cell"].to_list()) & set(gz["cell"].to_list())
    # couriers also work across the city borders: the two cities hold most, not all
    assert 0.8 * whole["pickups"].sum() < sz["pickups"].sum() + gz["pickups"].sum() < whole["pickups"].sum()
    assert days.children_hourly("hq", a, b)["pickups"].sum() == whole["pickups"].sum()
    branch = days.hourly_totals("b-440305", a, b)
    assert branch["scans"].sum() < days.hourly_totals(SHENZHEN, a, b)["scans"].sum()
    assert days.children_hourly(SHENZHEN, a, b)["node_id"].str.starts_with("b-4403").all()
    with pytest.raises(ScopeError):
        days.cube("no-such-node", a, b, 7)


def test_new_data_for_a_cached_day_is_seen(small_demo_path, tmp_path, settings):
    path = tmp_path / "emap.duckdb"
    shutil.copy(small_demo_path, path)
    with Store(path) as store:
        model = Model(store, settings, Cache(256))
        model.days.check_every = 0.0  # read the day's fingerprint on every request
        a, b = model.day_window(DAY)
        start, _ = model.hour_window(DAY, 3)  # a quiet night hour
        before_totals = model.trend(SHENZHEN, DAY).filter(pl.col("hour") == start)
        before_cube = model.day_cube(SHENZHEN, DAY, 7)
        device, courier = (
            store.cursor()
            .execute(
                "SELECT d.device_id, d.courier_id FROM devices d JOIN couriers c USING (courier_id) "
                "JOIN node_branches nb ON nb.branch_id = c.branch_id AND nb.ancestor_id = ? "
                "ORDER BY d.device_id LIMIT 1",
                [SHENZHEN],
            )
            .fetchone()
        )
        n = 30
        pings = pl.DataFrame(
            {
                "device_id": [device] * n,
                # aware times: zone-less ones would be read as the network's local time
                "ts": [(start + timedelta(minutes=1, seconds=60 * i)).replace(tzinfo=UTC) for i in range(n)],
                "lat": [22.5431] * n,
                "lng": [114.0579] * n,
                "speed": [0.0] * n,
                "heading": [0.0] * n,
                "accuracy": [5.0] * n,
            }
        ).with_row_index("_row", offset=1)
        assert store.ingest_pings(check_pings(pings)[0])[0] == n
        reads = []
        whole_read = model.days._read
        model.days._read = lambda lo, hi, res: reads.append((lo, hi, res)) or whole_read(lo, hi, res)

        after_totals = model.trend(SHENZHEN, DAY).filter(pl.col("hour") == start)
        old = before_totals["pings"].sum() if len(before_totals) else 0
        assert after_totals["pings"].sum() == old + n
        after_cube = model.day_cube(SHENZHEN, DAY, 7)
        assert after_cube["pings"].sum() == before_cube["pings"].sum() + n
        # still equal to the store's own scoped reads after the change
        assert_frame_equal(model.days.cube(SHENZHEN, a, b, 7), store.cube(SHENZHEN, a, b, 7))
        assert_frame_equal(
            model.days.hourly_totals(SHENZHEN, a, b), queries.hourly_totals(store, SHENZHEN, a, b)
        )
        # the pings belong to Shenzhen only
        gz = model.trend(GUANGZHOU, DAY).filter(pl.col("hour") == start)
        assert_frame_equal(
            gz.drop("local_hour"), queries.hourly_totals(store, GUANGZHOU, start, start + timedelta(hours=1))
        )
        assert courier is not None
        # only the hour that changed was read again, once per resolution
        assert reads and {(lo, hi) for lo, hi, _ in reads} == {(start, start + timedelta(hours=1))}
        assert len(reads) == len({res for *_, res in reads})


def test_a_newer_version_replaces_the_older_entry():
    cache = Cache(16)
    calls = []

    def make(v):
        return lambda: calls.append(v) or f"value {v}"

    assert cache.get_current("k", 1, make(1)) == "value 1"
    assert cache.get_current("k", 1, make(1)) == "value 1"  # cached
    assert cache.get_current("k", 2, make(2)) == "value 2"
    assert calls == [1, 2]
    # the entry of version 1 is gone: asking for it computes it again
    assert cache.get(("k", 1), make(1)) == "value 1"
    assert calls == [1, 2, 1]


def test_forecast_frames_are_kept_per_fingerprint_and_read_again_after_new_data(
    small_demo_path, tmp_path, settings
):
    from data.ingest.validate import check_events
    from tests.forecast_support import arrivals
    from views import forecast as vf

    path = tmp_path / "emap.duckdb"
    shutil.copy(small_demo_path, path)
    with Store(path) as store:
        model = Model(store, settings, Cache(256))
        model.days.check_every = 0.0  # read the day's fingerprint on every request
        windows = [model.day_window(d) for d in model.dates()]
        model.forecast.rebuild_after = 3600.0
        assert model.forecast.frames(windows) is None  # nothing read yet, and nothing read now
        frames, irregular = model.forecast.frames(windows, build=True)
        assert irregular == set()
        assert model.forecast.frames(windows)[0] is frames  # kept
        # a scope's rows are cut once and kept with these frames
        kept = model.forecast.frames(windows)
        shenzhen = kept.scoped(SHENZHEN, lambda: model.branches_of(SHENZHEN))
        assert kept.scoped(SHENZHEN, lambda: pytest.fail("cut again")) is shenzhen
        assert 0 < len(shenzhen["cells"]) < len(frames["cells"])
        start, _ = model.hour_window(DAY, 9)
        branch = store.sql(
            "SELECT branch_id FROM node_branches WHERE ancestor_id = ? ORDER BY branch_id LIMIT 1", [SHENZHEN]
        )["branch_id"][0]
        before = frames["pipeline"].filter((pl.col("issued") == start) & (pl.col("branch_id") == branch))
        n = 25
        latest, expected = start - timedelta(minutes=20), start + timedelta(hours=1, minutes=5)
        events = arrivals("fd", n, latest, branch, expected, 22.5431, 114.0579)
        assert store.ingest_events(check_events(events)[0])[0] == n
        # the day's frames are of an older fingerprint: not used; not read again within
        # ``rebuild_after`` of the last read (a live day's data keeps changing) ...
        assert model.forecast.frames(windows) is None
        assert model.forecast.frames(windows, build=True) is None
        # ... and read again after it
        model.forecast.rebuild_after = 0.0
        again, _ = model.forecast.frames(windows, build=True)
        # frames read again keep none of the old frames' scope rows
        fresh = model.forecast.frames(windows).scoped(SHENZHEN, lambda: model.branches_of(SHENZHEN))
        assert fresh is not shenzhen
        at_start = pl.col("issued") == start
        assert fresh["pipeline"].filter(at_start)["parcels"].sum() == (
            shenzhen["pipeline"].filter(at_start)["parcels"].sum() + n
        )
        after = again["pipeline"].filter((pl.col("issued") == start) & (pl.col("branch_id") == branch))
        assert after["parcels"].sum() == before["parcels"].sum() + n
        # and the slices still equal the scoped reads
        assert_frame_equal(
            vf.sliced_inputs(store, SHENZHEN, [start], 8, again)["pipeline"],
            vf.forecast_inputs(store, SHENZHEN, [start], 8)["pipeline"],
        )
