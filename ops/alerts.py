"""Peak-load zones: connected groups of over-loaded H3 cells. Pure functions over frames.

A cell is *over load* in an hour when, with at least ``min_workload`` parcels,

* its load ratio exceeds ``ratio_threshold`` (work beyond the couriers present), or
* its workload exceeds ``baseline_factor`` x its baseline for that hour (a surge
  against the usual volume; the baseline is the mean of the same hour on earlier
  days, missing when there is no history).

Over-load cells that are H3 neighbours join into one zone (connected components).
Thresholds are arguments; the dashboard passes the ones from ``config.Settings``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from geo import cells as h3cells

ZONE_COLUMNS = [
    "zone_id",
    "n_cells",
    "workload",
    "couriers",
    "peak_ratio",
    "excess",
    "lat",
    "lng",
    "lat_min",
    "lat_max",
    "lng_min",
    "lng_max",
    "cells",
    "rule",
]


def flag_cells(
    frame: pl.DataFrame, ratio_threshold: float, baseline_factor: float, min_workload: float = 0.0
) -> pl.DataFrame:
    """Mark over-load cells.

    Parameters
    ----------
    frame : polars.DataFrame
        ``cell``, ``workload``, ``load_ratio``, ``capacity`` and optionally
        ``baseline`` (mean workload of that hour on earlier days; null: no history).

    Returns
    -------
    polars.DataFrame
        ``frame`` plus ``over`` (bool), ``rule`` ("ratio", "baseline" or "both")
        and ``excess``: parcels beyond what the rules allow (0 when not over).

    Examples
    --------
    >>> f = pl.DataFrame({"cell": [1, 2, 3], "workload": [30.0, 12.0, 12.0],
    ...                   "load_ratio": [2.5, 0.5, 1.0], "capacity": [12.0, 24.0, 12.0],
    ...                   "baseline": [None, 4.0, 11.0]})
    >>> flag_cells(f, 1.5, 2.0, min_workload=5).select("over", "rule", "excess").rows()
    [(True, 'ratio', 12.0), (True, 'baseline', 4.0), (False, None, 0.0)]
    """
    missing = {"cell", "workload", "load_ratio", "capacity"} - set(frame.columns)
    if missing:
        raise ValueError(f"flag_cells needs columns {sorted(missing)}")
    if "baseline" not in frame.columns:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("baseline"))
    w = pl.col("workload")
    enough = w >= min_workload
    by_ratio = enough & (pl.col("load_ratio") > ratio_threshold)
    allowed_b = pl.col("baseline").cast(pl.Float64) * baseline_factor
    by_base = enough & pl.col("baseline").is_not_null() & (pl.col("baseline") > 0) & (w > allowed_b)
    excess_ratio = pl.when(by_ratio).then(w - pl.col("capacity") * ratio_threshold).otherwise(0.0)
    excess_base = pl.when(by_base).then(w - allowed_b).otherwise(0.0)
    return frame.with_columns(
        (by_ratio | by_base).fill_null(False).alias("over"),
        pl.when(by_ratio & by_base)
        .then(pl.lit("both"))
        .when(by_ratio)
        .then(pl.lit("ratio"))
        .when(by_base)
        .then(pl.lit("baseline"))
        .otherwise(None)
        .alias("rule"),
        pl.max_horizontal(excess_ratio, excess_base).fill_null(0.0).alias("excess"),
    )


def components(n: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Connected-component label of each of ``n`` items given edges (union-find).

    Examples
    --------
    >>> components(5, np.array([0, 3]), np.array([1, 4])).tolist()
    [0, 0, 1, 2, 2]
    """
    parent = np.arange(n)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(src.tolist(), dst.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(i) for i in range(n)], dtype=np.int64)
    _, labels = np.unique(roots, return_inverse=True)
    return labels


def zones(flagged: pl.DataFrame) -> pl.DataFrame:
    """Join over-load cells of one hour into zones, most severe first.

    Parameters
    ----------
    flagged : polars.DataFrame
        Output of :func:`flag_cells` (needs ``cell``, ``over``, ``workload``,
        ``couriers``, ``load_ratio``, ``excess``, ``rule``).

    Returns
    -------
    polars.DataFrame
        :data:`ZONE_COLUMNS`; ``zone_id`` is 1..n by decreasing severity (excess
        parcels, then size); ``cells`` is the list of uint64 cells of the zone.
    """
    over = flagged.filter(pl.col("over"))
    if over.is_empty():
        return pl.DataFrame(
            schema={
                "zone_id": pl.Int64,
                "n_cells": pl.Int64,
                "workload": pl.Float64,
                "couriers": pl.Int64,
                "peak_ratio": pl.Float64,
                "excess": pl.Float64,
                "lat": pl.Float64,
                "lng": pl.Float64,
                "lat_min": pl.Float64,
                "lat_max": pl.Float64,
                "lng_min": pl.Float64,
                "lng_max": pl.Float64,
                "cells": pl.List(pl.UInt64),
                "rule": pl.String,
            }
        )
    cells = over["cell"].to_numpy().astype(np.uint64)
    src, dst = h3cells.neighbours(cells)
    labels = components(len(cells), src, dst)
    lat, lng = h3cells.centers(cells)
    g = over.with_columns(
        pl.Series("group", labels),
        pl.Series("lat", lat),
        pl.Series("lng", lng),
        pl.col("cell").cast(pl.UInt64),
    )
    agg = (
        g.group_by("group")
        .agg(
            pl.len().cast(pl.Int64).alias("n_cells"),
            pl.col("workload").sum().cast(pl.Float64),
            pl.col("couriers").sum().cast(pl.Int64),
            pl.col("load_ratio").max().cast(pl.Float64).alias("peak_ratio"),
            pl.col("excess").sum().cast(pl.Float64),
            ((pl.col("lat") * pl.col("workload")).sum() / pl.col("workload").sum()).alias("lat"),
            ((pl.col("lng") * pl.col("workload")).sum() / pl.col("workload").sum()).alias("lng"),
            pl.col("lat").min().alias("lat_min"),
            pl.col("lat").max().alias("lat_max"),
            pl.col("lng").min().alias("lng_min"),
            pl.col("lng").max().alias("lng_max"),
            pl.col("cell").sort().alias("cells"),
            pl.col("rule").drop_nulls().unique().alias("rules"),
        )
        .with_columns(
            # a zone is "both" when both rules fire somewhere in it
            pl.when(
                pl.col("rules").list.contains("both")
                | (pl.col("rules").list.contains("ratio") & pl.col("rules").list.contains("baseline"))
            )
            .then(pl.lit("both"))
            .otherwise(pl.col("rules").list.first())
            .alias("rule"),
        )
        .sort(["excess", "n_cells", "lat"], descending=[True, True, False])
    )
    return agg.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("zone_id")).select(
        ZONE_COLUMNS
    )


def since(zone_cells, hours: list, over_by_hour: dict) -> object:
    """Start of the run of consecutive hours, ending at the last hour, in which any
    cell of the zone was over load.

    Parameters
    ----------
    zone_cells : iterable of int
        The zone's cells.
    hours : list
        Hours in increasing order; the last one is the hour the zone was found in.
    over_by_hour : dict
        Hour -> set of over-load cells in that hour (explicit state, one entry per hour).

    Examples
    --------
    >>> since([1, 2], ["h1", "h2", "h3"], {"h1": {2}, "h2": set(), "h3": {1}})
    'h3'
    >>> since([1, 2], ["h1", "h2", "h3"], {"h1": {2}, "h2": {1}, "h3": {1}})
    'h1'
    """
    zc = {int(c) for c in zone_cells}
    start = hours[-1]
    for h in reversed(hours):
        if zc & over_by_hour.get(h, set()):
            start = h
        else:
            break
    return start


def detect(
    frame: pl.DataFrame,
    parcels_per_courier_hour: float,
    ratio_threshold: float,
    baseline_factor: float,
    min_workload: float = 0.0,
    ping_rate: float | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Load ratio, flags and zones of one hour in one call.

    Returns ``(flagged cells, zones)``.

    Examples
    --------
    Two neighbouring cells over load (30 and 20 parcels for one courier who handles 10
    an hour) make one zone; a cell far away at its capacity makes none.

    >>> import h3
    >>> here = h3.str_to_int("89411caa05bffff")
    >>> next_door = h3.str_to_int(h3.grid_ring("89411caa05bffff", 1)[0])
    >>> far = h3.str_to_int(h3.latlng_to_cell(31.23, 121.47, 9))
    >>> f = pl.DataFrame({"cell": [here, next_door, far], "pickups": [30, 20, 10],
    ...                   "deliveries": [0, 0, 0], "couriers": [1, 1, 1]})
    >>> flagged, found = detect(f, 10.0, ratio_threshold=1.5, baseline_factor=2.0)
    >>> flagged["over"].to_list()
    [True, True, False]
    >>> found.select("zone_id", "n_cells", "workload", "excess", "rule").rows()
    [(1, 2, 50.0, 20.0, 'ratio')]
    """
    from ops.kpis import load_ratio

    flagged = flag_cells(
        load_ratio(frame, parcels_per_courier_hour, ping_rate), ratio_threshold, baseline_factor, min_workload
    )
    return flagged, zones(flagged)
