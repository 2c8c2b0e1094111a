"""The forecast and dispatch suggestions of a scope, from the store's reads.

The orchestration between ``data.store.forecast_reads`` (what the store holds, scoped)
and ``ops.forecast`` / ``ops.dispatch`` (pure functions over frames): the inputs of a
forecast issued at an hour, the predicted alerts and suggested moves of an outlook, and
what happened afterwards (for confirming alerts and scoring backtests).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from config import Settings
from data.store.branches import branch_ids
from data.store.database import Store
from data.store.forecast_reads import (
    _nothing,
    cell_hours,
    delivery_pipeline,
    destination_history,
    hour_rates,
    known_pickups,
    mode_mix,
    node_closure,
    open_pickups,
    pickup_delays,
    reserve_roster,
    reserve_seen,
)


def actual_reserves(store: Store, scope: str, hours, res: int, default_mode: str = "ebike") -> dict:
    """Hour -> idle couriers and vans of each outlet really seen idle in that hour
    (``ops.dispatch.RESERVE_SCHEMA``)."""
    from ops import dispatch

    roster = reserve_roster(store, scope, res, default_mode)
    seen = reserve_seen(store, scope, hours, default_mode)
    out = {}
    for h in hours:
        s = seen.filter(pl.col("hour") == h).drop("hour")
        out[h] = (
            roster.join(s, on=["outlet_id", "kind", "mode"], how="left")
            .with_columns((pl.col("roster") - pl.col("seen").fill_null(0)).clip(lower_bound=0).alias("spare"))
            .select([pl.col(c).cast(t) for c, t in dispatch.RESERVE_SCHEMA.items()])
        )
    return out


# -- everything the forecast reads, in a few queries ----------------------------------------------
def _fresh(_key, make):
    return make()


def forecast_inputs(store: Store, scope: str, issued, res: int, params=None, memo=None, pause=None) -> dict:
    """Frames for ``ops.forecast.forecast`` for one or more issue times (hour starts).

    Reads only what was known before each issue time, plus the earlier days the
    baseline and the usual pipeline average over.

    Parameters
    ----------
    memo : callable, optional
        ``memo(key, make)`` returning ``make()`` or a kept copy of it: the frames that
        do not depend on the issue time (the tree below the scope, rosters, travel
        modes) are read through it, so a caller answering many views reads them once.
    pause : callable, optional
        Called between the reads (a caller serving users gives way to their requests).
    """
    from ops import forecast as fc

    params = params or fc.Params()
    memo = memo or _fresh
    pause = pause or _nothing
    issued = sorted(issued)
    targets = fc.plan(issued, params.horizon)
    hours = fc.past_hours(targets["hour"].unique().to_list(), params)
    past_issued = sorted({t0 - k * fc.DAY for t0 in issued for k in fc.candidate_days(params)})
    out = {"issued": issued, "res": res}
    reads = [
        ("history", lambda: cell_hours(store, scope, hours, res)),
        ("rates", lambda: hour_rates(store, scope, hours)),
        ("pipeline", lambda: delivery_pipeline(store, scope, issued, params.horizon)),
        ("pipeline_past", lambda: delivery_pipeline(store, scope, past_issued, params.horizon)),
        ("open_pickups", lambda: open_pickups(store, scope, issued, res)),
        (
            "delays",
            lambda: pickup_delays(store, scope, issued[0] - params.lookback_days * fc.DAY, issued[0])[
                "delay_s"
            ].to_numpy(),
        ),
        ("known_pickups", lambda: known_pickups(store, scope, past_issued, params.horizon, res)),
        ("closure", lambda: memo(("fq-closure", scope), lambda: node_closure(store, scope))),
        (
            "dest_history",
            lambda: destination_history(
                store, scope, issued[0] - max(fc.candidate_days(params)) * fc.DAY, issued[-1], res
            ),
        ),
        # who is based where, and how many of them were on the road in the earlier hours:
        # the idle couriers and vans dispatch may call on (ops.dispatch.reserve_forecast)
        (
            "reserve_roster",
            lambda: memo(("fq-roster", scope, res), lambda: reserve_roster(store, scope, res)),
        ),
        ("reserve_seen", lambda: reserve_seen(store, scope, hours)),
        ("mode_mix", lambda: memo(("fq-mode-mix", scope), lambda: mode_mix(store, scope))),
    ]
    for name, read in reads:
        pause()
        out[name] = read()
    out["present"] = set(out["rates"].filter(pl.col("branch_id").is_null())["hour"].to_list())
    return out


def actual_cells(
    store: Store,
    scope: str,
    hours,
    res: int,
    parcels_per_courier_hour: float,
    ratio_threshold: float,
    baseline_factor: float,
    min_workload: float,
) -> dict:
    """What really happened in some hours, flagged like the dashboard's current alerts.

    Returns
    -------
    dict
        Hour -> ``cell, branch_id, pickups, deliveries, late, pings, couriers,
        workload, capacity, load_ratio, baseline, over, rule, excess``.
    """
    from data.store.reads import baseline_hours

    hours = sorted(hours)
    return flag_actual(
        hours,
        cell_hours(store, scope, hours, res),
        hour_rates(store, scope, hours),
        baseline_hours(store, scope, hours, res),
        parcels_per_courier_hour,
        ratio_threshold,
        baseline_factor,
        min_workload,
    )


def flag_actual(
    hours,
    raw: pl.DataFrame,
    rates: pl.DataFrame,
    base: pl.DataFrame,
    parcels_per_courier_hour: float,
    ratio_threshold: float,
    baseline_factor: float,
    min_workload: float,
) -> dict:
    """:func:`actual_cells` from its reads (:func:`cell_hours`, :func:`hour_rates` and
    ``data.store.reads.baseline_hours`` of the hours)."""
    from ops import alerts as alerts_mod
    from ops import kpis as kpis_mod

    hours = sorted(hours)
    cells = raw.group_by("hour", "cell").agg(
        pl.col("pickups", "deliveries", "late", "pings", "couriers").sum(),
        pl.col("branch_id").sort_by(pl.col("pickups") + pl.col("deliveries"), descending=True).first(),
    )
    rates = rates.filter(pl.col("branch_id").is_null())
    rate = {h: (p / a if a else None) for h, p, a in rates.select("hour", "pings", "actors").iter_rows()}
    out = {}
    for h in hours:
        g = cells.filter(pl.col("hour") == h).drop("hour").sort("cell")
        g = g.join(
            base.filter(pl.col("hour") == h).drop("hour"), on="cell", how="left", maintain_order="left"
        )
        lr = kpis_mod.load_ratio(g, parcels_per_courier_hour, rate.get(h))
        out[h] = alerts_mod.flag_cells(lr, ratio_threshold, baseline_factor, min_workload)
    return out


# -- what the dashboard and the commands call ------------------------------------------------------
def alert_res(settings) -> int:
    """Resolution of the peak-load detection (the dashboard's)."""
    return int(getattr(settings, "alert_resolution", Settings.alert_resolution))


def alert_min(settings) -> float:
    """Parcels a cell needs in an hour before it can raise an alert (the dashboard's)."""
    return float(getattr(settings, "alert_min_workload", Settings.alert_min_workload))


def day_hours(day: date, local_tz: str) -> list[datetime]:
    """UTC starts of the 24 local hours of ``day``.

    Examples
    --------
    >>> hours = day_hours(date(2026, 1, 15), "Asia/Shanghai")
    >>> len(hours), str(hours[0]), str(hours[-1])
    (24, '2026-01-14 16:00:00', '2026-01-15 15:00:00')
    """
    start = datetime.combine(day, datetime.min.time()).replace(tzinfo=ZoneInfo(local_tz))
    start = start.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    return [start + timedelta(hours=i) for i in range(24)]


def region_map(store: Store) -> dict:
    """Branch id -> region id (where dispatch may look for couriers)."""
    n = store.nodes().filter(pl.col("level") == "branch")
    return dict(zip(n["node_id"].to_list(), n["region_id"].to_list(), strict=True))


def predict(
    store: Store,
    scope: str,
    issued,
    settings,
    horizon: int = 6,
    with_baseline_only: bool = False,
    memo=None,
    pause=None,
    net: dict | None = None,
) -> dict:
    """Forecast, flags, zones and predicted alerts for ``scope`` at each issue time, with
    the dashboard's settings (``ops.forecast.predict`` on this store's frames); ``memo``
    and ``pause`` as in :func:`forecast_inputs`; with ``net`` (network-wide frames, see
    :func:`sliced_inputs`) the inputs are sliced from them instead of read."""
    from ops import forecast as fc

    params = fc.Params(horizon=horizon)
    if net is None:
        inputs = forecast_inputs(store, scope, issued, alert_res(settings), params, memo, pause)
    else:
        inputs = sliced_inputs(store, scope, issued, alert_res(settings), net, params, memo)
    return fc.predict(
        inputs,
        settings.parcels_per_courier_hour,
        settings.load_ratio_threshold,
        settings.baseline_factor,
        alert_min(settings),
        params,
        with_baseline_only,
    )


def suggestions_by_hour(pred: dict, settings, rules, regions: dict, pause=None) -> tuple[list, list]:
    """Dispatch suggestions (``ops.dispatch.suggest``) for the zones of each hour of a
    forecast (``ops.forecast.predict``): lists of ``moves`` and ``summary`` frames, one per
    hour, each with an ``hour`` column."""
    from ops import dispatch

    pause = pause or _nothing
    moves, summary = [], []
    for (hour,), z in pred["zones"].sort("hour").group_by("hour", maintain_order=True):
        pause()
        m, s = dispatch.suggest(
            pred["cells"].filter(pl.col("hour") == hour),
            z,
            settings.parcels_per_courier_hour,
            rules,
            regions,
            reserves=pred["reserves"].filter(pl.col("hour") == hour),
            mode_mix=pred["mode_mix"],
        )
        lit = pl.lit(hour).cast(pl.Datetime("us")).alias("hour")
        moves.append(m.with_columns(lit))
        summary.append(s.with_columns(lit))
    return moves, summary


def outlook(
    store: Store,
    scope: str,
    issued: datetime,
    settings,
    horizon: int = 6,
    rules=None,
    memo=None,
    pause=None,
    net: dict | None = None,
    newest: datetime | None = None,
) -> dict:
    """Everything the alert panel and the map show about the next hours of ``scope``.

    Parameters
    ----------
    issued : datetime
        UTC hour start the forecast is made at (what was known before it is used).
    memo, pause : callable, optional
        As in :func:`forecast_inputs`: frames kept across calls (the result is the same
        with or without), and a call between steps to give way to other work.
    net : dict, optional
        Network-wide frames of the days the forecast reads (:func:`network_frames`): the
        reads are slices of them (:func:`sliced_inputs`, :func:`sliced_actual`), with the
        same result. The caller checks :func:`irregular_branches` first.
    newest : datetime, optional
        The newest hour of data in ``scope`` (read from the store when not given).

    Returns
    -------
    dict
        ``alerts``: predicted alerts (``ops.forecast.predicted_alerts``, with
        ``status``: confirmed / missed / pending against what is already in the store);
        ``nodes``: forecast per branch and hour; ``moves`` and ``summary``: the dispatch
        suggestions (``ops.dispatch.suggest``: couriers from areas and outlets, vans from
        their bases) for the zones of each forecast hour, with an ``hour`` column.
    """
    from ops import dispatch
    from ops import forecast as fc

    memo = memo or _fresh
    pause = pause or _nothing
    rules = rules or dispatch.Rules.from_settings(settings)
    pred = predict(store, scope, [issued], settings, horizon, memo=memo, pause=pause, net=net)
    regions = memo(("fq-regions",), lambda: region_map(store))
    moves, summary = suggestions_by_hour(pred, settings, rules, regions, pause)
    if newest is None:
        newest = store.data_hours(scope)[1]
    targets = sorted({issued + timedelta(hours=k) for k in range(horizon)})
    done = [t for t in targets if newest is not None and t < newest]
    over = {}
    if done:
        pause()
        flags = (
            settings.parcels_per_courier_hour,
            settings.load_ratio_threshold,
            settings.baseline_factor,
            alert_min(settings),
        )
        if net is None:
            actual = actual_cells(store, scope, done, alert_res(settings), *flags)
        else:
            actual = flag_actual(
                done, *sliced_actual(store, scope, done, alert_res(settings), net, memo), *flags
            )
        over = {h: set(f.filter(pl.col("over"))["cell"].to_list()) for h, f in actual.items()}
    complete = max(done) if done else None
    alerts = fc.resolve(pred["alerts"], over, complete)
    empty_moves, empty_summary = dispatch.suggest(
        pred["cells"].head(0).select("cell", "branch_id", "workload", "capacity"),
        pred["zones"].head(0),
        settings.parcels_per_courier_hour,
        rules,
    )
    return {
        "alerts": alerts,
        "nodes": pred["nodes"],
        "cells": pred["cells"],
        "moves": pl.concat(moves)
        if moves
        else empty_moves.with_columns(pl.lit(None, dtype=pl.Datetime("us")).alias("hour")),
        "summary": pl.concat(summary)
        if summary
        else empty_summary.with_columns(pl.lit(None, dtype=pl.Datetime("us")).alias("hour")),
    }


def _scope_branches(store: Store, scope: str, memo) -> pl.Series:
    store.check_scope(scope)
    return memo(
        ("fq-branches", scope),
        lambda: branch_ids(store, scope),
    )


def _hours_in(hours, col: str = "hour") -> pl.Expr:
    return pl.col(col).is_in(pl.Series(sorted(set(hours)), dtype=pl.Datetime("us")).implode())


def _rates_of(net: dict, inside: pl.Expr, hours) -> pl.DataFrame:
    """:func:`hour_rates` from the network-wide pings and presence rows."""
    p = net["presence"].filter(_hours_in(hours) & inside)
    c = net["pings"].filter(_hours_in(hours) & inside).group_by("hour").agg(pl.col("pings").sum())
    couriers = pl.col("actor").filter(pl.col("courier")).n_unique().cast(pl.Int64).alias("couriers")
    whole = (
        p.group_by("hour")
        .agg(pl.col("actor").n_unique().cast(pl.Int64).alias("actors"), couriers)
        .join(c, on="hour", how="inner")
        .select(
            "hour",
            pl.lit(None, dtype=pl.String).alias("branch_id"),
            pl.col("pings").cast(pl.Int64),
            "actors",
            "couriers",
        )
    )
    per_branch = (
        p.group_by("hour", "branch_id")
        .agg(couriers)
        .select(
            "hour",
            "branch_id",
            pl.lit(None, dtype=pl.Int64).alias("pings"),
            pl.lit(None, dtype=pl.Int64).alias("actors"),
            "couriers",
        )
    )
    return pl.concat([whole, per_branch]).sort("hour", "branch_id", nulls_last=False)


def sliced_inputs(store: Store, scope: str, issued, res: int, net: dict, params=None, memo=None) -> dict:
    """:func:`forecast_inputs` as slices of the network-wide frames ``net``
    (:func:`network_frames` of the days the forecast reads; equal to the scoped reads for
    branches outside :func:`irregular_branches`). A new scope costs filters, not reads."""
    from ops import forecast as fc

    params = params or fc.Params()
    memo = memo or _fresh
    branches = _scope_branches(store, scope, memo).implode()
    inside = pl.col("branch_id").is_in(branches)
    issued = sorted(issued)
    targets = fc.plan(issued, params.horizon)
    hours = fc.past_hours(targets["hour"].unique().to_list(), params)
    past_issued = sorted({t0 - k * fc.DAY for t0 in issued for k in fc.candidate_days(params)})
    back = issued[0] - max(fc.candidate_days(params)) * fc.DAY
    dest = net["dest"].filter(
        pl.col("dest_branch_id").is_in(branches) & (pl.col("hour") >= back) & (pl.col("hour") < issued[-1])
    )
    dest = (
        dest.filter(inside)
        .join(
            dest.group_by("dest_branch_id").agg(pl.col("parcels").sum().alias("dest_total")),
            on="dest_branch_id",
        )
        .join(
            dest.group_by("dest_branch_id", "hour").agg(pl.col("parcels").sum().alias("hour_total")),
            on=["dest_branch_id", "hour"],
        )
        .select("dest_branch_id", "branch_id", "hour", "cell", "parcels", "dest_total", "hour_total")
        .sort("dest_branch_id", "hour", "cell", maintain_order=True)
    )
    start = issued[0] - params.lookback_days * fc.DAY
    out = {
        "issued": issued,
        "res": res,
        "history": net["cells"].filter(_hours_in(hours) & inside),
        "rates": _rates_of(net, inside, hours),
        "pipeline": net["pipeline"].filter(_hours_in(issued, "issued") & inside),
        "pipeline_past": net["pipeline"].filter(_hours_in(past_issued, "issued") & inside),
        "open_pickups": net["open_pickups"].filter(_hours_in(issued, "issued") & inside),
        "delays": net["delays"]
        .filter((pl.col("ts") >= start) & (pl.col("ts") < issued[0]) & inside)["delay_s"]
        .to_numpy(),
        "known_pickups": net["known_pickups"].filter(_hours_in(past_issued, "issued") & inside),
        "closure": memo(("fq-closure", scope), lambda: node_closure(store, scope)),
        "dest_history": dest,
        "reserve_roster": memo(("fq-roster", scope, res), lambda: reserve_roster(store, scope, res)),
        "reserve_seen": net["seen"]
        .filter(_hours_in(hours) & pl.col("outlet_branch").is_in(branches))
        .drop("outlet_branch")
        .sort("hour", "outlet_id", "kind", "mode"),
        "mode_mix": memo(("fq-mode-mix", scope), lambda: mode_mix(store, scope)),
    }
    out["present"] = set(out["rates"].filter(pl.col("branch_id").is_null())["hour"].to_list())
    return out


def sliced_actual(store: Store, scope: str, hours, res: int, net: dict, memo=None) -> tuple:
    """The reads of :func:`actual_cells` (cells, rates and the alerts' baseline of the
    hours) as slices of the network-wide frames ``net``: the arguments of :func:`flag_actual`
    after the hours."""
    memo = memo or _fresh
    inside = pl.col("branch_id").is_in(_scope_branches(store, scope, memo).implode())
    hours = sorted(hours)
    days = 7  # data.store.reads.baseline_hours
    pairs = pl.DataFrame(
        {
            "hour": [h for h in hours for _ in range(days)],
            "past": [h - timedelta(days=d) for h in hours for d in range(1, days + 1)],
        },
        schema={"hour": pl.Datetime("us"), "past": pl.Datetime("us")},
    )
    c = (
        net["cells"]
        .filter(_hours_in(pairs["past"].to_list()) & inside)
        .select(pl.col("hour").alias("past"), "cell", (pl.col("pickups") + pl.col("deliveries")).alias("w"))
    )
    j = pairs.join(c, on="past").group_by("hour", "past", "cell").agg(pl.col("w").sum())
    n = j.group_by("hour").agg(pl.col("past").n_unique().alias("days"))
    base = (
        j.group_by("hour", "cell")
        .agg(pl.col("w").sum())
        .join(n, on="hour")
        .select("hour", "cell", (pl.col("w") / pl.col("days")).cast(pl.Float64).alias("baseline"))
        .sort("hour", "cell")
    )
    return net["cells"].filter(_hours_in(hours) & inside), _rates_of(net, inside, hours), base
