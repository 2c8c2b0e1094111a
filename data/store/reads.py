"""Read queries of the dashboard. Each takes the store and the viewer's scope (a node id)
first and restricts rows to the scope's branches through ``node_branches``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from data.store.branches import in_scope
from data.store.database import Store
from geo import cells as h3cells

_SCOPED = in_scope()


def hourly_totals(store: Store, scope: str, start: datetime, end: datetime) -> pl.DataFrame:
    """Totals per hour inside ``scope`` for ``start <= hour < end`` (distinct couriers and
    vehicles recounted per hour)."""
    store.check_scope(scope)
    hourly, presence = store.cube_sources(None)
    q = f"""
        WITH c AS (SELECT hour, sum(pickups)::BIGINT AS pickups, sum(deliveries)::BIGINT AS deliveries,
                          sum(on_time)::BIGINT AS on_time, sum(late)::BIGINT AS late,
                          sum(scans)::BIGINT AS scans, sum(pings)::BIGINT AS pings
                   FROM {hourly} {_SCOPED} WHERE hour >= $start AND hour < $end GROUP BY hour),
        p AS (SELECT hour, count(DISTINCT actor_id) FILTER (WHERE actor_kind = 'courier') AS couriers,
                     count(DISTINCT actor_id) FILTER (WHERE actor_kind = 'vehicle') AS vehicles
              FROM {presence} {_SCOPED} WHERE hour >= $start AND hour < $end GROUP BY hour)
        SELECT c.*, coalesce(p.couriers, 0)::BIGINT AS couriers, coalesce(p.vehicles, 0)::BIGINT AS vehicles
        FROM c LEFT JOIN p USING (hour) ORDER BY hour"""
    return store.cursor().sql(q, params={"scope": scope, "start": start, "end": end}).pl()


def latest_positions(
    store: Store, scope: str, start: datetime, end: datetime, kind: str = "courier"
) -> pl.DataFrame:
    """Newest fix of each courier (or vehicle) inside ``scope`` with ``start <= ts < end``.

    Returns ``<kind>_id, ts, lat, lng, speed, heading``.
    """
    store.check_scope(scope)
    if kind not in ("courier", "vehicle"):
        raise ValueError(f"kind must be courier or vehicle, got {kind!r}")
    col = f"{kind}_id"
    q = f"""
        SELECT {col}, max(ts) AS ts, arg_max(lat, ts) AS lat, arg_max(lng, ts) AS lng,
               arg_max(speed, ts) AS speed, arg_max(heading, ts) AS heading
        FROM pings {_SCOPED}
        WHERE ts >= $start AND ts < $end AND {col} IS NOT NULL
        GROUP BY {col} ORDER BY {col}"""
    return store.cursor().sql(q, params={"scope": scope, "start": start, "end": end}).pl()


def outlet_load(store: Store, scope: str, start: datetime, end: datetime) -> pl.DataFrame:
    """Outlets inside ``scope`` with their parcel scans in the window and ``load`` =
    scans per hour / ``capacity_parcels_per_hour``."""
    store.check_scope(scope)
    hours = max((end - start).total_seconds() / 3600.0, 1e-9)
    q = f"""
        WITH o AS (SELECT * FROM outlets {_SCOPED}),
        e AS (SELECT outlet_id, count(*) AS parcels FROM parcel_events
              WHERE ts >= $start AND ts < $end AND outlet_id IN (SELECT outlet_id FROM o)
              GROUP BY outlet_id)
        SELECT o.outlet_id, o.name, o.kind, o.branch_id, o.lat, o.lng, o.capacity_couriers,
               o.capacity_parcels_per_hour, coalesce(e.parcels, 0)::BIGINT AS parcels,
               coalesce(e.parcels, 0) / $hours / greatest(o.capacity_parcels_per_hour, 1) AS load
        FROM o LEFT JOIN e USING (outlet_id) ORDER BY o.outlet_id"""
    return store.cursor().sql(q, params={"scope": scope, "start": start, "end": end, "hours": hours}).pl()


def baseline(store: Store, scope: str, hour: datetime, res: int, days: int = 7) -> pl.DataFrame:
    """Usual workload (pickups + deliveries) of each cell for the hour of day of ``hour``:
    the mean over the previous ``days`` days that have any data in ``scope`` at that hour.

    Returns ``cell, baseline``; empty when there is no history.
    """
    store.check_scope(scope)
    cell = h3cells.parent_sql("cell", res) if res < h3cells.BASE_RES else "cell"
    hourly = store.cube_sources(res)[0]
    hours = [hour - timedelta(days=d) for d in range(1, days + 1)]
    q = f"""
        WITH c AS (SELECT hour, {cell} AS cell, sum(pickups + deliveries) AS w
                   FROM {hourly} {_SCOPED} WHERE list_contains($hours, hour) GROUP BY ALL),
        n AS (SELECT count(DISTINCT hour) AS days FROM c)
        SELECT cell, (sum(w) / any_value(n.days))::DOUBLE AS baseline
        FROM c, n GROUP BY cell ORDER BY cell"""
    return store.cursor().sql(q, params={"scope": scope, "hours": hours}).pl()


def children_of_cells(store: Store, scope: str, cells, res: int) -> pl.DataFrame:
    """For cells at ``res`` inside ``scope``: the child node of ``scope`` holding most of
    the cell's res-9 cells (drill-down by clicking a hex). Returns ``cell, node_id``."""
    store.check_scope(scope)
    cell = h3cells.parent_sql("cb.cell", res) if res < h3cells.BASE_RES else "cb.cell"
    frame = pl.DataFrame({"cell": pl.Series(list(cells), dtype=pl.UInt64)})  # noqa: F841 (used by SQL)
    q = f"""
        WITH k AS (SELECT {cell} AS cell, nb.ancestor_id AS node_id, count(*) AS n
                   FROM cell_branch cb JOIN node_branches nb USING (branch_id)
                   JOIN nodes n ON n.node_id = nb.ancestor_id AND n.parent_id = $scope
                   WHERE {cell} IN (SELECT cell FROM frame) GROUP BY ALL)
        SELECT cell, arg_max(node_id, n) AS node_id FROM k GROUP BY cell ORDER BY cell"""
    con = store.cursor()
    con.register("frame", frame.to_arrow())
    return con.sql(q, params={"scope": scope}).pl()


def baseline_hours(store: Store, scope: str, hours: list[datetime], res: int, days: int = 7) -> pl.DataFrame:
    """:func:`baseline` for several hours at once: ``hour, cell, baseline``."""
    store.check_scope(scope)
    cell = h3cells.parent_sql("cell", res) if res < h3cells.BASE_RES else "cell"
    hourly = store.cube_sources(res)[0]
    pairs = pl.DataFrame(
        {
            "hour": [h for h in hours for _ in range(days)],
            "past": [h - timedelta(days=d) for h in hours for d in range(1, days + 1)],
        }
    )
    q = f"""
        WITH c AS (SELECT p.hour, c.hour AS past, {cell} AS cell, sum(c.pickups + c.deliveries) AS w
                   FROM {hourly} c {_SCOPED} JOIN pairs p ON p.past = c.hour
                   WHERE c.hour >= $lo AND c.hour <= $hi GROUP BY ALL),
        n AS (SELECT hour, count(DISTINCT past) AS days FROM c GROUP BY hour)
        SELECT hour, cell, (sum(w) / any_value(n.days))::DOUBLE AS baseline
        FROM c JOIN n USING (hour) GROUP BY hour, cell ORDER BY hour, cell"""
    con = store.cursor()
    con.register("pairs", pairs.to_arrow())
    return con.sql(q, params={"scope": scope, "lo": min(pairs["past"]), "hi": max(pairs["past"])}).pl()


def children_hourly(store: Store, scope: str, start: datetime, end: datetime) -> pl.DataFrame:
    """Figures of each child of ``scope`` per hour (``store.node_figures`` for every hour
    of a window in one query): ``hour, node_id, name, <counts>, couriers, vehicles``."""
    store.check_scope(scope)
    hourly, presence = store.cube_sources(None)
    counts = ", ".join(
        f"sum(c.{c})::BIGINT AS {c}" for c in ("pings", "pickups", "deliveries", "on_time", "late", "scans")
    )
    q = f"""
        WITH nb AS (SELECT nb.ancestor_id AS node_id, nb.branch_id FROM node_branches nb
                    JOIN nodes n ON n.node_id = nb.ancestor_id WHERE n.parent_id = $scope),
        c AS (SELECT c.hour, nb.node_id, {counts} FROM {hourly} c JOIN nb USING (branch_id)
              WHERE c.hour >= $start AND c.hour < $end GROUP BY ALL),
        p AS (SELECT p.hour, nb.node_id,
                     count(DISTINCT actor_id) FILTER (WHERE actor_kind = 'courier') AS couriers,
                     count(DISTINCT actor_id) FILTER (WHERE actor_kind = 'vehicle') AS vehicles
              FROM {presence} p JOIN nb USING (branch_id)
              WHERE p.hour >= $start AND p.hour < $end GROUP BY ALL)
        SELECT c.*, coalesce(p.couriers, 0)::BIGINT AS couriers, coalesce(p.vehicles, 0)::BIGINT AS vehicles
        FROM c LEFT JOIN p USING (hour, node_id) ORDER BY hour, node_id"""
    return store.cursor().sql(q, params={"scope": scope, "start": start, "end": end}).pl()


def outlet_scans_hourly(store: Store, scope: str, start: datetime, end: datetime) -> pl.DataFrame:
    """Parcel scans per outlet inside ``scope`` and hour: ``hour, outlet_id, parcels``."""
    store.check_scope(scope)
    q = f"""
        SELECT date_trunc('hour', ts) AS hour, outlet_id, count(*)::BIGINT AS parcels
        FROM parcel_events
        WHERE ts >= $start AND ts < $end AND outlet_id IN (SELECT outlet_id FROM outlets {_SCOPED})
        GROUP BY ALL ORDER BY hour, outlet_id"""
    return store.cursor().sql(q, params={"scope": scope, "start": start, "end": end}).pl()


def outlets_in(store: Store, scope: str) -> pl.DataFrame:
    """Outlets inside ``scope``."""
    store.check_scope(scope)
    return (
        store.cursor()
        .sql(
            f"SELECT outlet_id, name, kind, branch_id, lat, lng, capacity_couriers, capacity_parcels_per_hour "
            f"FROM outlets {_SCOPED} ORDER BY outlet_id",
            params={"scope": scope},
        )
        .pl()
    )
