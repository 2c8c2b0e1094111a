# ruff: noqa: F811  (the shared demo fixtures are imported by name and used as arguments)
"""Forecast: synthetic series with a known pattern, the pipeline rule, predicted alerts and
their resolution, and the demo's surges predicted before they start."""

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from data.store import forecast_reads as fq
from data.store.database import ScopeError
from ops import forecast as fc
from tests.forecast_support import forecast_demo_path, forecast_settings, forecast_store  # noqa: F401
from views import backtest as bt
from views import forecast as vf

T0 = datetime(2026, 11, 20, 9)


def _pattern(cell: int, hour: int, weekday: int, saturday: float = 2.0) -> float:
    """A known workload: a daily curve, a per-cell level and a Saturday effect."""
    return (10 + 8 * np.sin(hour / 24 * 2 * np.pi)) * (1 + cell % 3) * (saturday if weekday == 5 else 1.0)


def _history(days: int, cells=(1, 2, 3), saturday: float = 2.0) -> pl.DataFrame:
    rows = []
    for d in range(1, days + 1):
        for h in range(24):
            t = T0.replace(hour=0) - timedelta(days=d) + timedelta(hours=h)
            for c in cells:
                rows.append({"hour": t, "cell": c, "w": _pattern(c, h, t.weekday(), saturday)})
    return pl.DataFrame(rows)


def test_baseline_recovers_a_daily_pattern():
    hist = _history(6, saturday=1.0)
    targets = fc.plan([T0], 6)
    days = fc.choose_days(targets, set(hist["hour"]))
    base = fc.seasonal_baseline(hist, days, ["cell"], ["w"])
    assert len(base) == 18
    for t, c, w in base.select("hour", "cell", "w").iter_rows():
        assert w == pytest.approx(_pattern(c, t.hour, 0))


def test_same_weekday_used_when_weeks_of_history_exist():
    hist = _history(14)
    saturday = datetime(2026, 11, 21, 9)  # a Saturday: the plain mean would dilute its effect
    targets = fc.plan([saturday], 1)
    days = fc.choose_days(targets, set(hist["hour"]) | {saturday - timedelta(days=k) for k in (1, 2)})
    assert sorted(days["k"].to_list()) == [7, 14]
    base = fc.seasonal_baseline(hist, days, ["cell"], ["w"])
    assert base.filter(pl.col("cell") == 2)["w"][0] == pytest.approx(_pattern(2, 9, 5))
    # asking for three earlier weeks when two exist: the previous days with data instead
    plain = fc.choose_days(targets, set(hist["hour"]), fc.Params(weekday_weeks=3))
    assert sorted(plain["k"].to_list()) == [2, 3, 4, 5, 6, 7]
    diluted = fc.seasonal_baseline(hist, plain, ["cell"], ["w"]).filter(pl.col("cell") == 2)["w"][0]
    assert diluted == pytest.approx(_pattern(2, 9, 0) * (5 + 2.0) / 6)


def test_missing_cell_counts_as_zero_and_days_without_data_are_skipped():
    hist = pl.DataFrame(
        {"hour": [T0 - timedelta(days=1), T0 - timedelta(days=2)], "cell": [1, 2], "w": [10.0, 30.0]}
    )
    days = fc.choose_days(fc.plan([T0], 1), set(hist["hour"]))
    base = dict(fc.seasonal_baseline(hist, days, ["cell"], ["w"]).select("cell", "w").rows())
    assert base == {1: 5.0, 2: 15.0}


def _combine(
    pipe_now: float, usual: float, base_deliveries: float, base_pickups=0.0, pipe_p=0.0, usual_p=0.0
):
    targets = fc.plan([T0], 1)
    key = {"issued": [T0], "horizon": [1], "hour": [T0]}
    base = (
        pl.DataFrame({**key, "cell": pl.Series([7], dtype=pl.UInt64), "branch_id": ["b"]})
        .vstack(pl.DataFrame({**key, "cell": pl.Series([8], dtype=pl.UInt64), "branch_id": ["b"]}))
        .with_columns(
            pl.Series("pickups", [float(base_pickups), 0.0]),
            pl.Series("deliveries", [base_deliveries * 0.75, base_deliveries * 0.25], dtype=pl.Float64),
            pl.Series("couriers", [3.0, 1.0]),
            pl.Series("pings", [100.0, 30.0]),
        )
    )
    pd_ = pl.DataFrame({**key, "branch_id": ["b"], "parcels": [float(pipe_now)]})
    ud = pl.DataFrame({**key, "branch_id": ["b"], "parcels": [float(usual)]})
    pp = pl.DataFrame(
        {**key, "cell": pl.Series([7], dtype=pl.UInt64), "branch_id": ["b"], "pickups": [float(pipe_p)]}
    )
    up = pl.DataFrame(
        {**key, "cell": pl.Series([7], dtype=pl.UInt64), "branch_id": ["b"], "pickups": [float(usual_p)]}
    )
    return fc.combine(targets, base, pd_, ud, pp, up)


def test_ordinary_pipeline_gives_the_baseline_back():
    out = _combine(pipe_now=60, usual=60, base_deliveries=100, base_pickups=10, pipe_p=4, usual_p=4)
    assert out["deliveries"].sum() == pytest.approx(100)
    assert out["pickups"].sum() == pytest.approx(10)
    assert out["baseline"].sum() == pytest.approx(110)


def test_surge_in_the_pipeline_raises_the_forecast_by_what_is_announced():
    # usually 60 of 100 parcels are announced an hour ahead; today 180 are
    out = _combine(pipe_now=180, usual=60, base_deliveries=100)
    assert out["deliveries"].sum() == pytest.approx(180 + 40)
    # spread over the cells by their usual share of the branch's deliveries
    assert out.sort("cell")["deliveries"].to_list() == pytest.approx([165.0, 55.0])
    assert out["pipeline"].sum() == pytest.approx(180)


def test_pipeline_that_usually_overstates_is_scaled():
    # the branch is usually announced 150 parcels for an hour that brings 100
    assert _combine(pipe_now=150, usual=150, base_deliveries=100)["deliveries"].sum() == pytest.approx(100)
    assert _combine(pipe_now=300, usual=150, base_deliveries=100)["deliveries"].sum() == pytest.approx(200)


def test_pickup_shares_follow_the_delays_seen_before():
    delays = np.array([600.0, 1800.0, 4000.0, 8000.0])  # one in each of the first three hours
    p = fc.pickup_shares(np.array([0.0, 2000.0, 99999.0]), delays, 3)
    assert p[0].tolist() == pytest.approx([0.5, 0.25, 0.25])
    # waited 2000 s already: of the two later delays one lands in each next hour
    assert p[1].tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert p[2].tolist() == [1.0, 0.0, 0.0]  # overdue
    assert (p.sum(axis=1) <= 1 + 1e-9).all()


def test_wape():
    assert fc.wape(np.array([8.0, 12.0]), np.array([10.0, 10.0])) == pytest.approx(0.2)
    assert fc.wape(np.array([1.0]), np.array([0.0])) is None


def _zones(rows):
    return pl.DataFrame(
        [
            {
                "issued": T0,
                "zone_id": i + 1,
                "hour": T0 + timedelta(hours=h),
                "cells": cells,
                "branch_id": "b",
                "n_cells": len(cells),
                "workload": 50.0,
                "couriers": 2,
                "peak_ratio": r,
                "excess": 10.0 * r,
                "lat": 22.5,
                "lng": 114.0,
                "rule": "ratio",
            }
            for i, (h, cells, r) in enumerate(rows)
        ]
    ).with_columns(pl.col("cells").cast(pl.List(pl.UInt64)))


def test_zones_of_consecutive_hours_sharing_cells_are_one_alert():
    z = _zones([(1, [1, 2], 1.6), (2, [2, 3], 2.0), (3, [3], 1.7), (2, [10], 1.8)])
    a = fc.predicted_alerts(z)
    assert len(a) == 2
    first = a.filter(pl.col("start") == T0 + timedelta(hours=1)).row(0, named=True)
    assert first["end"] == T0 + timedelta(hours=3) and first["hours"] == 3
    assert first["cells"] == [1, 2, 3] and first["peak_ratio"] == 2.0
    assert a["alert_id"].to_list() == [1, 2]


def test_predictions_are_confirmed_missed_or_pending():
    a = fc.predicted_alerts(_zones([(1, [1], 1.6), (2, [5], 1.6), (5, [9], 1.6)]))
    over = {T0 + timedelta(hours=1): {1}, T0 + timedelta(hours=2): {6}}
    r = fc.resolve(a, over, newest_complete=T0 + timedelta(hours=3)).sort("start")
    assert r["status"].to_list() == ["confirmed", "missed", "pending"]
    assert r["confirmed_at"][0] == T0 + timedelta(hours=1)


# -- on the demo -------------------------------------------------------------------------------
def _surges(store):
    last = store.scalar("SELECT max(start_hour) FROM demo_surges")
    return store.sql(
        "SELECT * FROM demo_surges WHERE start_hour > ? ORDER BY start_hour", [last - timedelta(hours=20)]
    )


def test_predicted_alerts_appear_before_the_demo_surge_hour(forecast_store, forecast_settings):
    surges = _surges(forecast_store)
    assert len(surges) >= 1
    for s in surges.iter_rows(named=True):
        start = s["start_hour"]
        issued = [start - timedelta(hours=2), start - timedelta(hours=1)]
        pred = bt._predict(forecast_store, "hq", issued, forecast_settings, 6)
        alerts = pred["alerts"].filter(pl.col("branch_id") == s["branch_id"])
        for t0 in issued:
            mine = alerts.filter(
                (pl.col("issued") == t0) & (pl.col("start") <= start) & (pl.col("end") >= start)
            )
            assert len(mine) >= 1, (s, t0)
        # the forecast of the branch at the surge hour is well above its usual volume (the
        # baseline holds earlier surges of the same branch, so less than the surge factor)
        node = pred["nodes"].filter(
            (pl.col("node_id") == s["branch_id"])
            & (pl.col("hour") == start)
            & (pl.col("issued") == issued[0])
        )
        assert node["workload"][0] > 1.3 * node["baseline"][0]


def test_forecast_uses_only_what_was_known(forecast_store):
    t0 = _surges(forecast_store)["start_hour"][0]
    inputs = vf.forecast_inputs(forecast_store, "hq", [t0], 8)
    assert (inputs["history"]["hour"] < t0 - timedelta(hours=12)).all()
    assert (inputs["open_pickups"]["age_s"] > 0).all()
    assert (inputs["pipeline"]["hour"] >= t0).all()
    assert (inputs["pipeline"]["hour"] < t0 + timedelta(hours=6)).all()


def test_scoped_forecast_stays_in_scope(forecast_store, forecast_settings):
    s = _surges(forecast_store).row(0, named=True)
    pred = bt._predict(forecast_store, s["branch_id"], [s["start_hour"]], forecast_settings, 2)
    assert set(pred["nodes"]["node_id"].to_list()) == {s["branch_id"]}
    region = forecast_store.sql("SELECT region_id FROM nodes WHERE node_id = ?", [s["branch_id"]])[
        "region_id"
    ][0]
    wide = bt._predict(forecast_store, region, [s["start_hour"]], forecast_settings, 1)["nodes"]
    kids = set(forecast_store.sql("SELECT node_id FROM nodes WHERE parent_id = ?", [region])["node_id"])
    assert set(wide["node_id"]) <= kids | {region} and region in set(wide["node_id"])
    # a node's forecast is the sum of its branches'
    top = wide.filter(pl.col("node_id") == region)
    assert top["workload"][0] == pytest.approx(wide.filter(pl.col("node_id") != region)["workload"].sum())
    assert set(pred["cells"]["branch_id"].to_list()) <= {s["branch_id"]}
    with pytest.raises(ScopeError):
        vf.forecast_inputs(forecast_store, "nowhere", [s["start_hour"]], 8)


def test_backtest_beats_the_baseline_at_the_next_hour(forecast_store, forecast_settings):
    day = bt.newest_day(forecast_store, "hq", forecast_settings.local_tz)
    r = bt.backtest(forecast_store, "hq", day, forecast_settings, horizon=3, local_hours=range(6, 20))
    h = r["horizons"].sort("horizon")
    assert h["horizon"].to_list() == [1, 2, 3]
    assert h["wape"][0] < h["wape_baseline"][0]
    assert h["peak_cells"][0] > 0 and h["hit_rate"][0] > h["hit_rate_baseline"][0]
    assert h["precision"][0] > 0.5
    statuses = set(r["alerts"]["status"].to_list())
    assert "confirmed" in statuses and statuses <= {"confirmed", "missed", "pending"}


def test_outlook_gives_alerts_with_status_and_suggestions(forecast_store, forecast_settings):
    s = _surges(forecast_store).row(0, named=True)
    region = forecast_store.sql("SELECT region_id FROM nodes WHERE node_id = ?", [s["branch_id"]])[
        "region_id"
    ][0]
    issued = s["start_hour"] - timedelta(hours=1)
    o = vf.outlook(forecast_store, region, issued, forecast_settings)
    alerts = o["alerts"].filter(pl.col("branch_id") == s["branch_id"])
    assert len(alerts) >= 1
    # the demo day is complete: every prediction is resolved, and the surge's came true
    assert set(o["alerts"]["status"].to_list()) <= {"confirmed", "missed"}
    assert "confirmed" in alerts["status"].to_list()
    assert set(o["moves"]["hour"].to_list()) <= set(o["summary"]["hour"].to_list())
    assert (o["summary"]["ratio_after"] <= o["summary"]["ratio"] + 1e-9).all()
    assert o["moves"]["couriers"].sum() > 0


def test_no_history_no_prediction(forecast_store, forecast_settings):
    issued = forecast_store.scalar("SELECT min(hour) FROM cube_presence") + timedelta(hours=3)
    pred = bt._predict(forecast_store, "hq", [issued], forecast_settings, 2)
    assert pred["cells"].height > 0  # the pipeline is there ...
    assert (
        pred["alerts"].is_empty() and not pred["cells"]["over"].any()
    )  # ... but no capacity to compare with


def test_deliveries_are_spread_where_a_destination_usually_delivers():
    past = T0 - timedelta(days=1)
    hist = pl.DataFrame(
        {
            "dest_branch_id": ["b", "b"],
            "branch_id": ["b", "c"],
            "hour": [past, past],
            "cell": pl.Series([7, 9], dtype=pl.UInt64),
            "parcels": [3, 1],
        }
    )
    targets = fc.plan([T0], 1)
    days = fc.choose_days(targets, {past})
    key = {"issued": [T0], "horizon": [1], "hour": [T0]}
    pipe = pl.DataFrame({**key, "branch_id": ["b"], "parcels": [8.0]})
    usual = pl.DataFrame({**key, "branch_id": ["b"], "parcels": [4.0]})
    out = fc.by_destination(targets, days, hist, pipe, usual).sort("cell")
    # twice the usual announcements: 8 parcels, three quarters where b delivers most
    assert out["deliveries"].to_list() == pytest.approx([6.0, 2.0])
    assert out["branch_id"].to_list() == ["b", "c"]  # the cell's own branch
    # half of b's deliveries went outside the frame (the scope): its cells keep their share
    # of the destination's whole forecast, 8 announced + (8 usual - 4 usually announced)
    half = fc.by_destination(
        targets,
        days,
        hist.with_columns(pl.lit(8).alias("dest_total"), pl.lit(8).alias("hour_total")),
        pipe,
        usual,
    )
    assert half.sort("cell")["deliveries"].to_list() == pytest.approx([12 * 3 / 8, 12 * 1 / 8])


def _day_windows(store, settings) -> list[tuple[datetime, datetime]]:
    """UTC windows of every local day of the store's data (oldest first)."""
    from views.model import Model

    model = Model(store, settings)
    return [model.day_window(d) for d in model.dates()]


def _same_inputs(got: dict, want: dict) -> None:
    assert set(got) == set(want)
    for key, w in want.items():
        g = got[key]
        if isinstance(w, pl.DataFrame):
            # rows tied on the reads' ORDER BY may come in any order: compare sorted
            assert_frame_equal(g.sort(g.columns), w.sort(w.columns))
        elif isinstance(w, np.ndarray):
            assert np.array_equal(np.sort(g), np.sort(w))
        else:
            assert g == w, key


@pytest.mark.parametrize("level", ["hq", "division", "region", "branch"])
def test_sliced_network_frames_equal_the_scoped_reads(forecast_store, forecast_settings, level):
    s = _surges(forecast_store).row(0, named=True)
    scope = (
        "hq"
        if level == "hq"
        else s["branch_id"]
        if level == "branch"
        else forecast_store.sql(
            "SELECT region_id, division_id FROM nodes WHERE node_id = ?", [s["branch_id"]]
        )[f"{level}_id"][0]
    )
    windows = _day_windows(forecast_store, forecast_settings)
    days = [fq.network_day(forecast_store, a, b, 8) for a, b in windows]
    assert not set().union(*(fq.irregular_branches(forecast_store, a, b) for a, b in windows))
    net = fq.network_frames(days)
    for t0 in (s["start_hour"] - timedelta(hours=2), s["start_hour"] + timedelta(hours=1)):
        want = vf.forecast_inputs(forecast_store, scope, [t0], 8)
        got = vf.sliced_inputs(forecast_store, scope, [t0], 8, net)
        assert len(want["pipeline"]) and len(want["history"]) and len(want["dest_history"])
        _same_inputs(got, want)
        done = [t0 + timedelta(hours=k) for k in range(3)]
        from data.store.reads import baseline_hours

        raw, rates, base = vf.sliced_actual(forecast_store, scope, done, 8, net)
        _same_inputs(
            {"raw": raw, "rates": rates, "base": base},
            {
                "raw": fq.cell_hours(forecast_store, scope, done, 8),
                "rates": fq.hour_rates(forecast_store, scope, done),
                "base": baseline_hours(forecast_store, scope, done, 8),
            },
        )
    with pytest.raises(ScopeError):
        vf.sliced_inputs(forecast_store, "nowhere", [s["start_hour"]], 8, net)


@pytest.mark.parametrize("level", ["region", "branch"])
def test_slices_of_a_scopes_rows_equal_those_of_the_network_frames(forecast_store, forecast_settings, level):
    """The rows kept for a scope (``scope_frames``) give every slice of the whole network's
    frames, row for row: a destination's deliveries outside the scope stay in its totals."""
    s = _surges(forecast_store).row(0, named=True)
    scope = (
        s["branch_id"]
        if level == "branch"
        else forecast_store.sql("SELECT region_id FROM nodes WHERE node_id = ?", [s["branch_id"]])[
            "region_id"
        ][0]
    )
    windows = _day_windows(forecast_store, forecast_settings)
    net = fq.network_frames([fq.network_day(forecast_store, a, b, 8) for a, b in windows])
    branches = forecast_store.sql("SELECT branch_id FROM node_branches WHERE ancestor_id = ?", [scope])[
        "branch_id"
    ]
    part = fq.scope_frames(net, branches)
    assert set(part) == set(net)
    assert all(len(part[k]) < len(net[k]) for k in part)
    inside = set(branches.to_list())
    dest = part["dest"]
    if level == "branch":  # parcels of the branch delivered by its neighbours are kept
        assert not set(dest["branch_id"].to_list()) <= inside
    for t0 in (s["start_hour"] - timedelta(hours=2), s["start_hour"] + timedelta(hours=1)):
        want = vf.sliced_inputs(forecast_store, scope, [t0], 8, net)
        got = vf.sliced_inputs(forecast_store, scope, [t0], 8, part)
        assert set(got) == set(want)
        for key, w in want.items():
            if isinstance(w, pl.DataFrame):
                assert_frame_equal(got[key], w, check_exact=True)
            elif isinstance(w, np.ndarray):
                assert np.array_equal(got[key], w)
            else:
                assert got[key] == w, key
        done = [t0 + timedelta(hours=k) for k in range(3)]
        for g, w in zip(
            vf.sliced_actual(forecast_store, scope, done, 8, part),
            vf.sliced_actual(forecast_store, scope, done, 8, net),
            strict=True,
        ):
            assert_frame_equal(g, w, check_exact=True)
