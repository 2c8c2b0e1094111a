"""Effect of the dispatch suggestions over a day. Pure functions over frames.

For each hour, the suggestions made from that hour's forecast (its predicted zones
and forecast cells) are applied to what really happened in the hour: sources lose the
couriers they send, zone cells gain them. Before and after, per hour and in total:

* **overloaded cell-hours**: cells with at least ``min_workload`` parcels whose load
  ratio exceeds the threshold (the ratio rule of ``geo.alerts``; the baseline rule
  compares volume with history and no move of couriers changes it);
* **peak load ratio**: the highest cell ratio of the hour;
* **late parcels**: the hour's late deliveries, scaled in each cell by how much of the
  work beyond its capacity is left (a cell without work beyond capacity keeps its
  late parcels: they are late for other reasons). This is an estimate: the demo's
  lateness grows with the backlog, and the backlog with the work beyond capacity.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from geo import dispatch

HOUR_COLUMNS = [
    "hour",
    "zones",
    "moves",
    "couriers_moved",
    "overloaded_before",
    "overloaded_after",
    "newly_overloaded",
    "peak_before",
    "peak_after",
    "late_before",
    "late_after",
]


def _ratio(workload: np.ndarray, capacity: np.ndarray, pph: float) -> np.ndarray:
    # At least one courier-hour serves a cell with work (the floor of geo.kpis).
    cap = np.where(workload > 0, np.maximum(capacity, pph), capacity)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(workload > 0, workload / cap, 0.0)


def hour_effect(
    actual: pl.DataFrame,
    moves: pl.DataFrame,
    zones: pl.DataFrame,
    parcels_per_courier_hour: float,
    ratio_threshold: float,
    min_workload: float = 0.0,
    rules: dispatch.Rules = dispatch.RULES,
) -> dict:
    """Before and after figures of one hour.

    Parameters
    ----------
    actual : polars.DataFrame
        What happened: ``cell, workload, capacity, late``.
    moves, zones : polars.DataFrame
        The hour's suggestions (``geo.dispatch.suggest``) and the zones they serve.
    """
    pph = parcels_per_courier_hour
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
        "couriers_moved": int(moves["couriers"].sum()) if len(moves) else 0,
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
            moves = pl.DataFrame(schema={"zone_id": pl.Int64, "source_cell": pl.UInt64, "couriers": pl.Int64})
        else:
            moves, _ = dispatch.suggest(fc, zones, parcels_per_courier_hour, rules, region_of)
        rows.append(
            {
                "hour": h,
                **hour_effect(
                    act, moves, zones, parcels_per_courier_hour, ratio_threshold, min_workload, rules
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
        "peak_before": float(per_hour["peak_before"].max()),
        "peak_after": float(per_hour["peak_after"].max()),
        "late_before": round(float(per_hour["late_before"].sum()), 1),
        "late_after": round(float(per_hour["late_after"].sum()), 1),
        "couriers_moved": int(per_hour["couriers_moved"].sum()),
        "moves": int(per_hour["moves"].sum()),
    }
