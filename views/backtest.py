"""How good the forecast is, and what the dispatch suggestions would have changed, over
one day of the store: the figures behind ``python app.py backtest`` and ``simulate``.

backtest
    Replays a local day hour by hour: at the start of each hour, forecasts the next
    ``horizon`` hours from what was known then, and compares with what happened. Per
    horizon: WAPE of the forecast and of the baseline-only forecast, and for peak cells
    (cells really over load) the hit rate of predicted overloads, with the share of
    predicted overloads that came true. Predicted alerts are counted confirmed or missed.
simulate
    Applies, hour by hour, the dispatch suggestions made from the forecast to what
    happened, and reports overloaded cell-hours, the peak load ratio and late parcels
    before and after.
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from ops import dispatch
from ops import forecast as fc
from ops import simulate as sim
from views import forecast as vf
from views.forecast import alert_min, alert_res, day_hours, region_map


def _predict(store, scope, issued, settings, horizon, with_baseline_only=False):
    return vf.predict(store, scope, issued, settings, horizon, with_baseline_only)


def _actual(store, scope, hours, settings):
    return vf.actual_cells(
        store,
        scope,
        hours,
        alert_res(settings),
        settings.parcels_per_courier_hour,
        settings.load_ratio_threshold,
        settings.baseline_factor,
        alert_min(settings),
    )


def backtest(
    store, scope: str, day: date, settings, horizon: int = fc.HORIZON, local_hours: range | None = None
) -> dict:
    """Forecast every hour of a day from what was known then; score against the truth.

    Returns
    -------
    dict
        ``horizons``: a frame with one row per horizon (``wape``, ``wape_baseline``,
        ``hit_rate``, ``hit_rate_baseline``, ``precision``, ``precision_baseline``,
        ``peak_cells``, ``actual``); ``alerts``: the predicted alerts with their status;
        ``seconds``.
    """
    t = time.perf_counter()
    hours = day_hours(day, settings.local_tz)
    issued = [hours[i] for i in (local_hours or range(24))]
    pred = _predict(store, scope, issued, settings, horizon, with_baseline_only=True)
    targets = sorted({h + timedelta(hours=k) for h in issued for k in range(horizon)})
    actual = _actual(store, scope, targets, settings)
    act = (
        pl.concat(
            [
                f.select("cell", "workload", "over").with_columns(
                    pl.lit(h).cast(pl.Datetime("us")).alias("hour")
                )
                for h, f in actual.items()
            ]
        )
        if actual
        else pl.DataFrame(
            schema={"cell": pl.UInt64, "workload": pl.Float64, "over": pl.Boolean, "hour": pl.Datetime("us")}
        )
    )
    rows = []
    for h in range(1, horizon + 1):
        f = pred["cells"].filter(pl.col("horizon") == h).select("issued", "hour", "cell", "workload", "over")
        b = (
            pred["baseline_cells"]
            .filter(pl.col("horizon") == h)
            .select(
                "issued",
                "hour",
                pl.col("cell"),
                pl.col("workload").alias("b_workload"),
                pl.col("over").alias("b_over"),
            )
        )
        grid = f.join(b, on=["issued", "hour", "cell"], how="full", coalesce=True)
        grid = grid.join(
            act.rename({"workload": "a_workload", "over": "a_over"}).join(
                f.select("issued", "hour").unique(), on="hour"
            ),
            on=["issued", "hour", "cell"],
            how="full",
            coalesce=True,
        )
        grid = grid.with_columns(
            pl.col("workload", "b_workload", "a_workload").fill_null(0.0),
            pl.col("over", "b_over", "a_over").fill_null(False),
        )
        a, peak = grid["a_workload"].to_numpy(), grid["a_over"].to_numpy()
        po, bo = grid["over"].to_numpy(), grid["b_over"].to_numpy()
        rows.append(
            {
                "horizon": h,
                "actual": float(a.sum()),
                "wape": fc.wape(grid["workload"].to_numpy(), a),
                "wape_baseline": fc.wape(grid["b_workload"].to_numpy(), a),
                "peak_cells": int(peak.sum()),
                "hit_rate": float((po & peak).sum() / peak.sum()) if peak.sum() else None,
                "hit_rate_baseline": float((bo & peak).sum() / peak.sum()) if peak.sum() else None,
                "precision": float((po & peak).sum() / po.sum()) if po.sum() else None,
                "precision_baseline": float((bo & peak).sum() / bo.sum()) if bo.sum() else None,
            }
        )
    over = {h: set(f.filter(pl.col("over"))["cell"].to_list()) for h, f in actual.items()}
    newest = store.data_hours(scope)[1]
    alerts = fc.resolve(pred["alerts"], over, newest)
    return {"horizons": pl.DataFrame(rows), "alerts": alerts, "seconds": time.perf_counter() - t}


def simulate(
    store, scope: str, day: date, settings, lead: int = 1, rules: dispatch.Rules | None = None
) -> dict:
    """Apply the suggestions made ``lead`` hours ahead to each hour of a day.

    Returns
    -------
    dict
        ``hours`` (one row per hour, :data:`ops.simulate.HOUR_COLUMNS`), ``totals``
        (:func:`ops.simulate.totals`), ``moves`` (every suggested move, with its
        ``hour``), ``distances`` (:func:`ops.simulate.distances`) and ``seconds``.
    """
    rules = rules or dispatch.Rules.from_settings(settings)
    t = time.perf_counter()
    hours = day_hours(day, settings.local_tz)
    issued = [h - timedelta(hours=lead - 1) for h in hours]
    pred = _predict(store, scope, issued, settings, lead)
    cells = pred["cells"].filter(pl.col("horizon") == lead)
    zones = pred["zones"].filter(pl.col("horizon") == lead)
    forecast_by_hour = {h: g.drop("issued", "horizon", "hour") for (h,), g in cells.group_by("hour")}
    zones_by_hour = {h: g for (h,), g in zones.group_by("hour")}
    reserves = pred["reserves"].filter(pl.col("horizon") == lead)
    reserves_by_hour = {h: g.drop("issued", "horizon", "hour") for (h,), g in reserves.group_by("hour")}
    idle = vf.actual_reserves(store, scope, hours, alert_res(settings), rules.default_mode)
    actual = _actual(store, scope, hours, settings)
    moves: list = []
    per_hour = sim.day_effect(
        hours,
        actual,
        forecast_by_hour,
        zones_by_hour,
        settings.parcels_per_courier_hour,
        settings.load_ratio_threshold,
        alert_min(settings),
        rules,
        region_map(store),
        reserves_by_hour=reserves_by_hour,
        mode_mix=pred["mode_mix"],
        idle_by_hour=idle,
        moves_out=moves,
    )
    all_moves = pl.concat(moves) if moves else pl.DataFrame(schema=dispatch.MOVE_SCHEMA)
    return {
        "hours": per_hour,
        "totals": sim.totals(per_hour),
        "moves": all_moves,
        "distances": sim.distances(all_moves),
        "seconds": time.perf_counter() - t,
    }


def newest_day(store, scope, local_tz) -> date | None:
    hi = store.data_hours(scope)[1]
    if hi is None:
        return None
    return hi.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(local_tz)).date()
