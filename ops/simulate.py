"""Effect of the dispatch suggestions over a day. Pure functions over frames.

For each hour, the suggestions made from that hour's forecast (its predicted zones,
forecast cells and the idle couriers and vans expected at outlets) are applied to what
really happened in the hour: area sources lose the couriers they send, zone cells gain
them and the vans sent. Idle couriers and vans are sent only as far as the outlet
really had them idle that hour (the rest of such a move is counted ``unavailable``).
Before and after, per hour and in total:

* **overloaded cell-hours**: cells with at least ``min_workload`` parcels whose load
  ratio exceeds the threshold (the ratio rule of ``ops.alerts``; the baseline rule
  compares volume with history and no move of couriers changes it);
* **peak load ratio**: the highest cell ratio of the hour;
* **late parcels**: the hour's late deliveries, scaled in each cell by how much of the
  work beyond its capacity is left (a cell without work beyond capacity keeps its
  late parcels: they are late for other reasons). This is an estimate: the demo's
  lateness grows with the backlog, and the backlog with the work beyond capacity.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import polars as pl

from ops import dispatch

HOUR_COLUMNS = [
    "hour",
    "zones",
    "moves",
    "couriers_moved",
    "vehicles_moved",
    "unavailable",
    "overloaded_before",
    "overloaded_after",
    "newly_overloaded",
    "peak_before",
    "peak_after",
    "late_before",
    "late_after",
]


def _ratio(workload: np.ndarray, capacity: np.ndarray, pph: float) -> np.ndarray:
    # At least one courier-hour serves a cell with work (the floor of ops.kpis).
    cap = np.where(workload > 0, np.maximum(capacity, pph), capacity)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(workload > 0, workload / cap, 0.0)


def available(moves: pl.DataFrame, idle: pl.DataFrame | None) -> tuple[pl.DataFrame, float]:
    """The moves as far as they could really be made: moves of idle couriers and vans of
    an outlet are scaled down to what it really had idle (``idle``: its
    ``outlet_id, kind, mode, spare`` in the hour). Returns the moves (``couriers`` and
    ``vehicles`` as floats) and the units that were not there.

    Examples
    --------
    Four couriers asked of outlet o1, which had two idle: each of its moves is halved;
    the move from no outlet (couriers already on the road) stays.

    >>> moves = pl.DataFrame({"source_outlet": ["o1", "o1", None], "kind": ["courier"] * 3,
    ...                       "mode": ["ebike"] * 3, "couriers": [2, 2, 1], "vehicles": [0, 0, 0]})
    >>> idle = pl.DataFrame({"outlet_id": ["o1"], "kind": ["courier"], "mode": ["ebike"], "spare": [2]})
    >>> done, missing = available(moves, idle)
    >>> done["couriers"].to_list(), missing
    ([1.0, 1.0, 1.0], 2.0)
    """
    if moves.is_empty() or "source_outlet" not in moves.columns:
        return moves, 0.0
    m = moves.with_columns(
        pl.col("couriers", "vehicles").cast(pl.Float64), pl.int_range(pl.len()).alias("_i")
    )
    out = m.filter(pl.col("source_outlet").is_null())
    at = m.filter(pl.col("source_outlet").is_not_null())
    if at.is_empty():
        return moves, 0.0
    idle = idle if idle is not None else pl.DataFrame(schema=dispatch.RESERVE_SCHEMA)
    at = (
        at.with_columns((pl.col("couriers") + pl.col("vehicles")).alias("_n"))
        .with_columns(pl.col("_n").sum().over("source_outlet", "kind", "mode").alias("_tot"))
        .join(
            idle.select(
                pl.col("outlet_id").alias("source_outlet"), "kind", "mode", pl.col("spare").alias("_idle")
            ),
            on=["source_outlet", "kind", "mode"],
            how="left",
        )
        .with_columns(
            (pl.col("_idle").fill_null(0).cast(pl.Float64) / pl.col("_tot")).clip(upper_bound=1.0).alias("_f")
        )
    )
    missing = float((at["_n"] * (1.0 - at["_f"])).sum())
    at = at.with_columns(pl.col("couriers") * pl.col("_f"), pl.col("vehicles") * pl.col("_f"))
    both = pl.concat([out, at.select(out.columns)]).sort("_i").drop("_i")
    return both, missing


def hour_effect(
    actual: pl.DataFrame,
    moves: pl.DataFrame,
    zones: pl.DataFrame,
    parcels_per_courier_hour: float,
    ratio_threshold: float,
    min_workload: float = 0.0,
    rules: dispatch.Rules = dispatch.RULES,
    idle: pl.DataFrame | None = None,
) -> dict:
    """Before and after figures of one hour.

    Parameters
    ----------
    actual : polars.DataFrame
        What happened: ``cell, workload, capacity, late``.
    moves, zones : polars.DataFrame
        The hour's suggestions (``ops.dispatch.suggest``) and the zones they serve.
    idle : polars.DataFrame, optional
        Couriers and vans really idle at each outlet in the hour
        (``ops.dispatch.RESERVE_SCHEMA``); moves from outlets are cut to it. Without it
        they are made as suggested.
    """
    pph = parcels_per_courier_hour
    missing = 0.0
    if idle is not None:
        moves, missing = available(moves, idle)
    after = dispatch.apply(actual, moves, zones, pph, rules)
    w0 = actual["workload"].to_numpy().astype(np.float64)
    c0 = actual["capacity"].to_numpy().astype(np.float64)
    a = actual.select("cell").join(
        after.select("cell", "workload", "capacity"), on="cell", how="left", maintain_order="left"
    )
    w1 = a["workload"].to_numpy().astype(np.float64)
    c1 = a["capacity"].to_numpy().astype(np.float64)
    r0, r1 = _ratio(w0, c0, pph), _ratio(w1, c1, pph)
    late = actual["late"].to_numpy().astype(np.float64)
    ex0 = np.maximum(w0 - np.maximum(c0, pph), 0.0)
    ex1 = np.maximum(w1 - np.maximum(c1, pph), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        late1 = np.where(ex0 > 0, late * np.minimum(ex1 / np.where(ex0 > 0, ex0, 1.0), 10.0), late)
    enough0, enough1 = w0 >= min_workload, w1 >= min_workload
    return {
        "zones": len(zones),
        "moves": len(moves),
        "couriers_moved": round(float(moves["couriers"].sum()), 1) if len(moves) else 0,
        "vehicles_moved": round(float(moves["vehicles"].sum()), 1)
        if len(moves) and "vehicles" in moves.columns
        else 0,
        "unavailable": round(missing, 1),
        "overloaded_before": int(((r0 > ratio_threshold) & enough0).sum()),
        "overloaded_after": int(((r1 > ratio_threshold) & enough1).sum()),
        # cells the moves pushed over (sources whose own rush the forecast missed)
        "newly_overloaded": int(
            ((r1 > ratio_threshold) & enough1 & ~((r0 > ratio_threshold) & enough0)).sum()
        ),
        "peak_before": float(r0.max()) if r0.size else 0.0,
        "peak_after": float(r1.max()) if r1.size else 0.0,
        "late_before": float(late.sum()),
        "late_after": float(late1.sum()),
    }


def day_effect(
    hours: list,
    actual_by_hour: dict,
    forecast_by_hour: dict,
    zones_by_hour: dict,
    parcels_per_courier_hour: float,
    ratio_threshold: float,
    min_workload: float = 0.0,
    rules: dispatch.Rules = dispatch.RULES,
    region_of: dict | None = None,
    reserves_by_hour: dict | None = None,
    mode_mix: pl.DataFrame | None = None,
    idle_by_hour: dict | None = None,
    moves_out: list | None = None,
) -> pl.DataFrame:
    """Suggest and apply hour by hour; one row per hour (:data:`HOUR_COLUMNS`).

    Parameters
    ----------
    actual_by_hour : dict
        Hour -> actual cells (``cell, workload, capacity, late``).
    forecast_by_hour : dict
        Hour -> forecast cells the suggestions are computed from (``cell, branch_id,
        workload, capacity``).
    zones_by_hour : dict
        Hour -> predicted zones of that hour (``zone_id, cells``).
    reserves_by_hour : dict, optional
        Hour -> idle couriers and vans expected at outlets (``ops.dispatch.suggest``).
    mode_mix : polars.DataFrame, optional
        How each branch's couriers travel (``ops.dispatch.suggest``).
    idle_by_hour : dict, optional
        Hour -> couriers and vans really idle at outlets (:func:`hour_effect`).
    moves_out : list, optional
        Receives each hour's suggested moves (with an ``hour`` column).
    """
    rows = []
    empty_zones = pl.DataFrame(schema={"zone_id": pl.Int64, "cells": pl.List(pl.UInt64)})
    for h in hours:
        act = actual_by_hour.get(h)
        if act is None or act.is_empty():
            continue
        zones = zones_by_hour.get(h, empty_zones)
        fc = forecast_by_hour.get(h)
        if fc is None or zones.is_empty():
            moves = pl.DataFrame(schema=dispatch.MOVE_SCHEMA)
        else:
            moves, _ = dispatch.suggest(
                fc,
                zones,
                parcels_per_courier_hour,
                rules,
                region_of,
                reserves=(reserves_by_hour or {}).get(h),
                mode_mix=mode_mix,
            )
        if moves_out is not None and len(moves):
            moves_out.append(moves.with_columns(pl.lit(h).cast(pl.Datetime("us")).alias("hour")))
        idle = (
            None
            if idle_by_hour is None
            else idle_by_hour.get(h, pl.DataFrame(schema=dispatch.RESERVE_SCHEMA))
        )
        rows.append(
            {
                "hour": h,
                **hour_effect(
                    act, moves, zones, parcels_per_courier_hour, ratio_threshold, min_workload, rules, idle
                ),
            }
        )
    if not rows:
        return pl.DataFrame(
            schema={c: (pl.Datetime("us") if c == "hour" else pl.Float64) for c in HOUR_COLUMNS}
        )
    return pl.DataFrame(rows).select(HOUR_COLUMNS)


def totals(per_hour: pl.DataFrame) -> dict:
    """Day totals: overloaded cell-hours, peak ratio, late parcels, before and after."""
    if per_hour.is_empty():
        return {k: 0 for k in HOUR_COLUMNS if k not in ("hour", "zones")}
    return {
        "overloaded_before": int(per_hour["overloaded_before"].sum()),
        "overloaded_after": int(per_hour["overloaded_after"].sum()),
        "newly_overloaded": int(per_hour["newly_overloaded"].sum()),
        # (polars types a column's max as any literal; these columns are Float64)
        "peak_before": float(cast(float, per_hour["peak_before"].max())),
        "peak_after": float(cast(float, per_hour["peak_after"].max())),
        "late_before": round(float(per_hour["late_before"].sum()), 1),
        "late_after": round(float(per_hour["late_after"].sum()), 1),
        "couriers_moved": round(float(per_hour["couriers_moved"].sum()), 1),
        "vehicles_moved": round(float(per_hour["vehicles_moved"].sum()), 1),
        "unavailable": round(float(per_hour["unavailable"].sum()), 1),
        "moves": int(per_hour["moves"].sum()),
    }


def distances(moves: pl.DataFrame) -> pl.DataFrame:
    """Typical distance of the suggested moves per kind and mode, each courier or van
    counted once: ``kind, mode, units, median_km, p90_km, max_km``.

    Examples
    --------
    >>> moves = pl.DataFrame({"kind": ["courier", "courier"], "mode": ["ebike", "ebike"],
    ...                       "couriers": [2, 1], "vehicles": [0, 0], "distance_km": [1.0, 3.0]})
    >>> distances(moves).rows()
    [('courier', 'ebike', 3, 1.0, 2.6, 3.0)]
    """
    schema = {
        "kind": pl.String,
        "mode": pl.String,
        "units": pl.Int64,
        "median_km": pl.Float64,
        "p90_km": pl.Float64,
        "max_km": pl.Float64,
    }
    if moves.is_empty():
        return pl.DataFrame(schema=schema)
    rows = []
    for (kind, mode), g in moves.group_by("kind", "mode"):
        n = (g["couriers"] + g["vehicles"]).to_numpy().astype(np.int64)
        km = np.repeat(g["distance_km"].to_numpy(), n)
        if km.size:
            rows.append(
                (kind, mode, int(km.size), float(np.median(km)), float(np.quantile(km, 0.9)), float(km.max()))
            )
    return pl.DataFrame(rows, schema=schema, orient="row").sort("kind", "mode")
