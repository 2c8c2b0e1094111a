"""Load ratio and KPIs, the latter against an independent computation from raw tables."""

from datetime import timedelta

import h3
import polars as pl
import pytest

from config import Settings
from ops import kpis
from views.model import Model

CENTRE = h3.latlng_to_cell(22.54, 114.05, 9)


def _cells(*cs):
    return pl.Series([h3.str_to_int(c) for c in cs], dtype=pl.UInt64)


def test_load_ratio_basic():
    f = pl.DataFrame({"cell": _cells(CENTRE), "pickups": [20], "deliveries": [16], "couriers": [2]})
    out = kpis.load_ratio(f, 12.0)
    assert (
        out["workload"][0] == 36 and out["capacity"][0] == 24 and out["load_ratio"][0] == pytest.approx(1.5)
    )


def test_zero_courier_cell_borrows_its_neighbourhood():
    ring = list(h3.grid_ring(CENTRE, 1))
    f = pl.DataFrame(
        {
            "cell": _cells(CENTRE, ring[0], ring[1]),
            "pickups": [24, 0, 0],
            "deliveries": [0, 0, 0],
            "couriers": [0, 7, 7],
        }
    )
    out = kpis.load_ratio(f, 12.0)
    # (0 + 7 + 7) / 7 = 2 effective couriers -> 24 / 24
    assert out["load_ratio"][0] == pytest.approx(1.0)
    assert out["load_ratio"][1] == 0.0  # no workload, no ratio


def test_zero_courier_alone_counts_as_one_courier():
    far = h3.grid_ring(CENTRE, 4)[0]
    f = pl.DataFrame(
        {"cell": _cells(CENTRE, far), "pickups": [30, 6], "deliveries": [0, 0], "couriers": [0, 3]}
    )
    out = kpis.load_ratio(f, 12.0)
    assert out["load_ratio"][0] == pytest.approx(2.5)
    assert out["load_ratio"][1] == pytest.approx(6 / 36)


def test_ping_rate_turns_heads_into_courier_hours():
    f = pl.DataFrame(
        {"cell": _cells(CENTRE), "pickups": [24], "deliveries": [0], "couriers": [4], "pings": [120]}
    )
    # 120 pings at 60 pings per courier-hour = 2 courier-hours, not 4 couriers
    assert kpis.load_ratio(f, 12.0, ping_rate=60.0)["load_ratio"][0] == pytest.approx(1.0)
    assert kpis.load_ratio(f, 12.0)["load_ratio"][0] == pytest.approx(0.5)


def test_load_ratio_errors():
    with pytest.raises(ValueError, match="couriers"):
        kpis.load_ratio(pl.DataFrame({"cell": [1], "pickups": [1], "deliveries": [1]}), 12.0)
    f = pl.DataFrame({"cell": _cells(CENTRE), "pickups": [1], "deliveries": [1], "couriers": [1]})
    with pytest.raises(ValueError):
        kpis.load_ratio(f, 0)


def test_panel_changes():
    p = kpis.panel({"pickups": 120, "on_time_rate": None, "zones": 2}, {"pickups": 100, "zones": 0})
    by = {k["key"]: k for k in p}
    assert by["pickups"]["change"] == pytest.approx(0.2)
    assert by["on_time_rate"]["change"] is None
    assert by["zones"]["change"] is None  # undefined against zero
    assert [k["key"] for k in p] == list(kpis.KPI_KEYS)


@pytest.mark.parametrize("node", ["hq", "r-440300", "b-440305"])
def test_kpis_match_raw_tables(small_store, node):
    model = Model(small_store, Settings.from_env())
    day, hour = model.dates()[-1], 10
    start, end = model.hour_window(day, hour)
    assert start.hour == 2  # 10:00 in Asia/Shanghai is 02:00 UTC
    got = {k["key"]: k for k in model.kpis(node, day, hour)}
    scope = "SELECT branch_id FROM node_branches WHERE ancestor_id = ?"
    ev = small_store.sql(
        f"SELECT kind, ts, promised_at FROM parcel_events WHERE ts >= ? AND ts < ? AND branch_id IN ({scope})",
        [start, end, node],
    )
    pickups = ev.filter(pl.col("kind") == "pickup").height
    delivered = ev.filter(pl.col("kind") == "delivered")
    on_time = delivered.filter(pl.col("ts") <= pl.col("promised_at")).height
    couriers = small_store.scalar(
        f"SELECT count(DISTINCT courier_id) FROM pings WHERE ts >= ? AND ts < ? AND branch_id IN ({scope})",
        [start, end, node],
    )
    vehicles = small_store.scalar(
        f"SELECT count(DISTINCT vehicle_id) FROM pings WHERE ts >= ? AND ts < ? AND branch_id IN ({scope})",
        [start, end, node],
    )
    assert got["pickups"]["value"] == pickups
    assert got["deliveries"]["value"] == delivered.height
    if delivered.height:
        assert got["on_time_rate"]["value"] == pytest.approx(on_time / delivered.height)
    assert got["couriers"]["value"] == couriers
    assert got["vehicles"]["value"] == vehicles
    if couriers:
        assert got["parcels_per_courier_hour"]["value"] == pytest.approx(
            (pickups + delivered.height) / couriers
        )
    # the change is against the same local hour of the previous day
    ps, pe = start - timedelta(days=1), end - timedelta(days=1)
    prev = small_store.scalar(
        f"SELECT count(*) FROM parcel_events WHERE kind = 'pickup' AND ts >= ? AND ts < ? AND branch_id IN ({scope})",
        [ps, pe, node],
    )
    assert got["pickups"]["before"] == prev
    assert got["zones"]["value"] == len(model.zones(node, day, hour))


def test_child_table_ranks_children(small_store):
    model = Model(small_store, Settings.from_env())
    day = model.dates()[-1]
    t = model.child_table("r-440300", day, 10)
    assert set(t["node_id"]) == set(model.children("r-440300")["node_id"])
    assert t["volume"].to_list() == sorted(t["volume"].to_list(), reverse=True)
    start, end = model.hour_window(day, 10)
    total = small_store.scalar(
        "SELECT count(*) FROM parcel_events WHERE kind IN ('pickup', 'delivered') AND ts >= ? AND ts < ? "
        "AND branch_id IN (SELECT branch_id FROM node_branches WHERE ancestor_id = 'r-440300')",
        [start, end],
    )
    assert t["volume"].sum() == total
