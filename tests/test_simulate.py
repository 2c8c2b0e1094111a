# ruff: noqa: F811  (the shared demo fixtures are imported by name and used as arguments)
"""Effect simulation: crafted hours with known answers, the demo day before and after the
suggestions, and the backtest / simulate commands end to end."""

import argparse

import h3
import polars as pl
import pytest

from cli import forecast as forecast_cli
from ops import dispatch, simulate
from tests.forecast_support import forecast_demo_path, forecast_settings, forecast_store  # noqa: F401
from views import backtest as bt

PPH = 12.0
CENTRE = h3.latlng_to_cell(22.54, 114.05, 8)


def _actual(loads: dict, couriers: dict, late: dict) -> pl.DataFrame:
    cells = list(loads)
    return pl.DataFrame(
        {
            "cell": pl.Series([h3.str_to_int(c) for c in cells], dtype=pl.UInt64),
            "branch_id": ["b-1"] * len(cells),
            "workload": [float(loads[c]) for c in cells],
            "capacity": [couriers[c] * PPH for c in cells],
            "late": [late.get(c, 0) for c in cells],
        }
    )


def test_couriers_moved_into_an_overloaded_cell_cut_overload_and_late_parcels():
    src = h3.grid_ring(CENTRE, 2)[0]
    actual = _actual({CENTRE: 48, src: 0}, {CENTRE: 2, src: 4}, {CENTRE: 10})
    zones = pl.DataFrame(
        {"zone_id": [1], "cells": [[h3.str_to_int(CENTRE)]]},
        schema={"zone_id": pl.Int64, "cells": pl.List(pl.UInt64)},
    )
    moves, _ = dispatch.suggest(actual, zones, PPH, dispatch.Rules(source_res=8))
    assert moves["couriers"].sum() == 2  # 48 parcels: 4 couriers bring the ratio to 1.0
    e = simulate.hour_effect(actual, moves, zones, PPH, 1.5)
    assert e["overloaded_before"] == 1 and e["overloaded_after"] == 0
    # the two couriers ride ~2.4 km: they work the rest of the hour in the zone
    on_site = float(moves["on_site"].mean())
    assert 0.8 < on_site < 0.9
    assert e["peak_before"] == pytest.approx(2.0)
    assert e["peak_after"] == pytest.approx(48 / ((2 + 2 * on_site) * PPH))
    # 24 parcels beyond capacity before, what the ride costs after: most late parcels go
    ex_after = 48 - (2 + 2 * on_site) * PPH
    assert e["late_before"] == 10 and e["late_after"] == pytest.approx(10 * ex_after / 24)
    assert e["late_after"] < 2
    nothing = simulate.hour_effect(actual, moves.head(0), zones, PPH, 1.5)
    assert nothing["overloaded_after"] == nothing["overloaded_before"] == 1
    assert nothing["late_after"] == nothing["late_before"]


def test_totals_add_up_the_hours():
    per_hour = pl.DataFrame(
        {
            "hour": [1, 2],
            "zones": [1, 0],
            "moves": [2, 0],
            "couriers_moved": [3, 0],
            "vehicles_moved": [1, 0],
            "unavailable": [0.5, 0],
            "overloaded_before": [4, 1],
            "overloaded_after": [1, 1],
            "newly_overloaded": [1, 0],
            "peak_before": [2.5, 1.6],
            "peak_after": [1.7, 1.6],
            "late_before": [10.0, 2.0],
            "late_after": [4.0, 2.0],
        }
    )
    t = simulate.totals(per_hour)
    assert t == {
        "overloaded_before": 5,
        "overloaded_after": 2,
        "newly_overloaded": 1,
        "peak_before": 2.5,
        "peak_after": 1.7,
        "late_before": 12.0,
        "late_after": 6.0,
        "couriers_moved": 3,
        "vehicles_moved": 1,
        "unavailable": 0.5,
        "moves": 2,
    }


def test_moves_from_outlets_are_cut_to_who_really_was_idle():
    src = h3.grid_ring(CENTRE, 1)[0]
    actual = _actual({CENTRE: 96}, {CENTRE: 2}, {CENTRE: 10})
    zones = pl.DataFrame(
        {"zone_id": [1], "cells": [[h3.str_to_int(CENTRE)]]},
        schema={"zone_id": pl.Int64, "cells": pl.List(pl.UInt64)},
    )
    lat, lng = h3.cell_to_latlng(src)
    reserves = pl.DataFrame(
        {
            "outlet_id": ["o-1", "h-1"],
            "branch_id": ["b-1", "b-1"],
            "cell": [h3.str_to_int(src)] * 2,
            "lat": [lat, lat],
            "lng": [lng, lng],
            "kind": ["courier", "vehicle"],
            "mode": ["ebike", "van"],
            "spare": [2, 2],
        },
        schema=dispatch.RESERVE_SCHEMA,
    )
    moves, _ = dispatch.suggest(actual, zones, PPH, reserves=reserves)
    # 96 parcels, 2 couriers: 2 idle couriers, then 96 - 48 = 48 parcels -> 2 vans
    assert moves["couriers"].sum() == 2 and moves["vehicles"].sum() == 2
    full = simulate.hour_effect(actual, moves, zones, PPH, 1.5, idle=reserves)
    assert full["unavailable"] == 0 and full["vehicles_moved"] == 2 and full["couriers_moved"] == 2
    assert full["peak_before"] == pytest.approx(4.0)
    on_site = moves["on_site"].to_numpy()  # couriers and vans, ~1.2 km: a few minutes on the road
    assert (on_site > 0.9).all() and (on_site < 1).all()
    gained = float(((moves["couriers"] * PPH + moves["vehicles"] * 36.0) * moves["on_site"]).sum())
    assert full["peak_after"] == pytest.approx(96 / (2 * PPH + gained))
    # on the day one van was out on the road after all: only one van could go
    one_van = reserves.with_columns(pl.when(pl.col("kind") == "vehicle").then(1).otherwise(2).alias("spare"))
    cut = simulate.hour_effect(actual, moves, zones, PPH, 1.5, idle=one_van)
    assert cut["unavailable"] == 1 and cut["vehicles_moved"] == 1
    assert full["peak_after"] < cut["peak_after"] < full["peak_before"]
    assert cut["late_after"] > full["late_after"]


def test_demo_day_with_suggestions_has_fewer_overloaded_cell_hours_and_late_parcels(
    forecast_store, forecast_settings
):
    day = bt.newest_day(forecast_store, "hq", forecast_settings.local_tz)
    r = bt.simulate(forecast_store, "hq", day, forecast_settings)
    t = r["totals"]
    assert len(r["hours"]) >= 12
    assert t["overloaded_before"] > 0 and t["couriers_moved"] > 0
    assert t["overloaded_after"] < t["overloaded_before"]
    assert t["late_after"] < t["late_before"]
    # every move keeps within the reach of its mode
    rules = dispatch.Rules.from_settings(forecast_settings)
    for mode, km in r["moves"].group_by("mode").agg(pl.col("distance_km").max()).iter_rows():
        assert km <= rules.radius_km(mode) + 1e-9
    assert r["distances"]["units"].sum() == r["moves"]["couriers"].sum() + r["moves"]["vehicles"].sum()


def test_commands_print_their_figures(forecast_settings, capsys):
    p = argparse.ArgumentParser()
    forecast_cli.add_arguments(p)
    args = p.parse_args(["--horizon", "2"])
    args.command = "backtest"
    assert forecast_cli.run(args, forecast_settings) == 0
    out = capsys.readouterr().out
    assert "WAPE" in out and "+2h" in out and "predicted alerts:" in out
    args = p.parse_args(["--node", "r-440300", "--within", "branch"])
    args.command = "simulate"
    assert forecast_cli.run(args, forecast_settings) == 0
    out = capsys.readouterr().out
    assert "overloaded cell-hours" in out and "late parcels" in out
    assert "move limits: 15 min of travel (walk 1.12 km, ebike 3.75 km, van 6.00 km)" in out
    args = p.parse_args(["--node", "nowhere"])
    args.command = "simulate"
    assert forecast_cli.run(args, forecast_settings) == 2
