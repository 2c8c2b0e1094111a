"""Scoped reads for the workload forecast, the dispatch suggestions and their record.

Every function takes the store and the viewer's scope (a node id) first and keeps to
the scope's branches through ``node_branches``. Times are naive UTC, like the store.
Frames come back ready for the pure functions of ``ops.forecast``, ``ops.dispatch``
and ``ops.simulate``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from data.store.branches import branches_of, in_scope
from data.store.database import Store
from geo import cells as h3cells

_BRANCHES = branches_of()
_SCOPED = in_scope()
#: How far back a scan can be and still describe a parcel not yet delivered.
PIPELINE_LOOKBACK = timedelta(hours=48)


def _cell(col: str, res: int) -> str:
    return h3cells.parent_sql(col, res) if res < h3cells.BASE_RES else col


def _frame_sql(store: Store, q: str, params: dict, **frames) -> pl.DataFrame:
    con = store.cursor()
    for name, frame in frames.items():
        con.register(name, frame.to_arrow())
    return con.sql(q, params=params).pl()


def _hours_frame(hours) -> pl.DataFrame:
    return pl.DataFrame({"hour": pl.Series(list(hours), dtype=pl.Datetime("us"))})


def cell_hours(store: Store, scope: str, hours, res: int) -> pl.DataFrame:
    """Cube figures of some hours (not necessarily contiguous) per cell and branch.

    Returns
    -------
    polars.DataFrame
        ``hour, cell, branch_id, pickups, deliveries, late, pings, couriers``; cells at
        ``res``. ``couriers`` are distinct couriers of the (cell, branch) in the hour,
        recounted from ``cube_presence``.
    """
    store.check_scope(scope)
    if not len(hours):
        return pl.DataFrame(
            schema={
                "hour": pl.Datetime("us"),
                "cell": pl.UInt64,
                "branch_id": pl.String,
                "pickups": pl.Int64,
                "deliveries": pl.Int64,
                "late": pl.Int64,
                "pings": pl.Int64,
                "couriers": pl.Int64,
            }
        )
    q = f"""
        WITH c AS (SELECT hour, {_cell("cell", res)} AS cell, branch_id, sum(pickups)::BIGINT AS pickups,
                          sum(deliveries)::BIGINT AS deliveries, sum(late)::BIGINT AS late,
                          sum(pings)::BIGINT AS pings
                   FROM cube_hourly {_SCOPED} SEMI JOIN hrs USING (hour)
                   WHERE hour >= $lo AND hour <= $hi GROUP BY ALL),
        p AS (SELECT hour, {_cell("cell", res)} AS cell, branch_id, count(DISTINCT actor_id) AS couriers
              FROM cube_presence {_SCOPED} SEMI JOIN hrs USING (hour)
              WHERE hour >= $lo AND hour <= $hi AND actor_kind = 'courier' GROUP BY ALL)
        SELECT hour, cell, branch_id, c.pickups, c.deliveries, c.late, c.pings,
               coalesce(p.couriers, 0)::BIGINT AS couriers
        FROM c LEFT JOIN p USING (hour, cell, branch_id) ORDER BY hour, cell, branch_id"""
    hrs = _hours_frame(hours)
    return _frame_sql(store, q, {"scope": scope, "lo": min(hours), "hi": max(hours)}, hrs=hrs)


def hour_rates(store: Store, scope: str, hours) -> pl.DataFrame:
    """Pings and distinct actors (couriers + vehicles) per hour inside ``scope``, and
    the distinct couriers of each branch: ``hour, branch_id, pings, actors, couriers``.

    ``branch_id`` is null on the scope-wide row of each hour (the ping rate of the
    load ratio is pings per actor per hour over the scope).
    """
    store.check_scope(scope)
    q = f"""
        WITH p AS (SELECT * FROM cube_presence {_SCOPED} SEMI JOIN hrs USING (hour)
                   WHERE hour >= $lo AND hour <= $hi),
        c AS (SELECT hour, sum(pings)::BIGINT AS pings FROM cube_hourly {_SCOPED} SEMI JOIN hrs USING (hour)
              WHERE hour >= $lo AND hour <= $hi GROUP BY hour)
        SELECT p.hour, NULL::VARCHAR AS branch_id, any_value(c.pings) AS pings,
               count(DISTINCT actor_id)::BIGINT AS actors,
               count(DISTINCT actor_id) FILTER (WHERE actor_kind = 'courier')::BIGINT AS couriers
        FROM p JOIN c USING (hour) GROUP BY p.hour
        UNION ALL
        SELECT hour, branch_id, NULL::BIGINT, NULL::BIGINT,
               count(DISTINCT actor_id) FILTER (WHERE actor_kind = 'courier')::BIGINT
        FROM p GROUP BY hour, branch_id
        ORDER BY 1, 2 NULLS FIRST"""
    return _frame_sql(store, q, {"scope": scope, "lo": min(hours), "hi": max(hours)}, hrs=_hours_frame(hours))


def delivery_pipeline(store: Store, scope: str, issued, horizon: int) -> pl.DataFrame:
    """Parcels on their way to the scope's branches, as known at each issue time.

    For each issue time ``t0``: every parcel whose newest scan before ``t0`` names a
    destination branch inside ``scope`` and an expected time in ``[t0, t0 + horizon h)``,
    and that was not delivered before ``t0``.

    Returns
    -------
    polars.DataFrame
        ``issued, branch_id, hour, parcels``; ``hour`` is the expected hour (start).
    """
    store.check_scope(scope)
    # Each destination scan speaks for its parcel from its time until the parcel's next
    # such scan or its delivery: a band join on two inequalities (DuckDB's IEJoin).
    q = _PIPELINE_SQL.format(dest=f"dest_branch_id IN {_BRANCHES}")
    iss = pl.DataFrame({"issued": pl.Series(list(issued), dtype=pl.Datetime("us"))})
    lo, hi = min(issued) - PIPELINE_LOOKBACK, max(issued) + timedelta(hours=horizon)
    return _frame_sql(store, q, {"scope": scope, "lo": lo, "hi": hi, "horizon": horizon}, iss=iss)


def open_pickups(store: Store, scope: str, issued, res: int) -> pl.DataFrame:
    """Pickup requests inside ``scope`` made before each issue time and not picked up
    before it: ``issued, cell, branch_id, age_s`` (seconds since the request)."""
    store.check_scope(scope)
    q = f"""
        WITH r AS (SELECT parcel_id, ts, {_cell("cell", res)} AS cell, branch_id FROM parcel_events {_SCOPED}
                   WHERE kind = 'pickup_request' AND ts >= $lo AND ts < $hi),
        p AS (SELECT parcel_id, ts FROM parcel_events {_SCOPED}
              WHERE kind = 'pickup' AND ts >= $lo AND ts < $hi)
        SELECT i.issued, r.cell, r.branch_id, epoch(i.issued) - epoch(r.ts) AS age_s
        FROM r JOIN iss i ON r.ts < i.issued AND r.ts >= i.issued - INTERVAL 24 HOUR
        WHERE NOT EXISTS (SELECT 1 FROM p WHERE p.parcel_id = r.parcel_id AND p.ts < i.issued)
        ORDER BY 1, 2"""
    iss = pl.DataFrame({"issued": pl.Series(list(issued), dtype=pl.Datetime("us"))})
    lo, hi = min(issued) - timedelta(hours=24), max(issued)
    return _frame_sql(store, q, {"scope": scope, "lo": lo, "hi": hi}, iss=iss)


def pickup_delays(store: Store, scope: str, start: datetime, end: datetime) -> pl.DataFrame:
    """Seconds from request to pickup of the parcels picked up in ``[start, end)``:
    ``delay_s`` (the shape of how far ahead a request announces its pickup)."""
    store.check_scope(scope)
    q = f"""
        WITH p AS (SELECT parcel_id, ts FROM parcel_events {_SCOPED}
                   WHERE kind = 'pickup' AND ts >= $start AND ts < $end),
        r AS (SELECT parcel_id, ts FROM parcel_events {_SCOPED}
              WHERE kind = 'pickup_request' AND ts >= $start - INTERVAL 24 HOUR AND ts < $end)
        SELECT (epoch(p.ts) - epoch(r.ts))::DOUBLE AS delay_s FROM p JOIN r USING (parcel_id)"""
    return store.cursor().sql(q, params={"scope": scope, "start": start, "end": end}).pl()


def known_pickups(store: Store, scope: str, issued, horizon: int, res: int) -> pl.DataFrame:
    """Pickups that happened in ``[t0, t0 + horizon h)`` whose request was already made at
    ``t0``, for each past issue time ``t0``: ``issued, hour, cell, branch_id, parcels``.

    On earlier days this is what the pipeline of pickup requests usually announced.
    """
    store.check_scope(scope)
    q = f"""
        WITH p AS (SELECT parcel_id, ts, {_cell("cell", res)} AS cell, branch_id FROM parcel_events {_SCOPED}
                   WHERE kind = 'pickup' AND ts >= $lo AND ts < $hi),
        r AS (SELECT parcel_id, ts FROM parcel_events {_SCOPED}
              WHERE kind = 'pickup_request' AND ts >= $lo - INTERVAL 24 HOUR AND ts < $hi)
        SELECT i.issued, date_trunc('hour', p.ts) AS hour, p.cell, p.branch_id, count(*)::BIGINT AS parcels
        FROM p JOIN r USING (parcel_id)
        JOIN iss i ON p.ts >= i.issued AND p.ts < i.issued + to_hours($horizon::BIGINT) AND r.ts < i.issued
        GROUP BY ALL ORDER BY 1, 2, 3"""
    iss = pl.DataFrame({"issued": pl.Series(list(issued), dtype=pl.Datetime("us"))})
    lo, hi = min(issued), max(issued) + timedelta(hours=horizon)
    return _frame_sql(store, q, {"scope": scope, "lo": lo, "hi": hi, "horizon": horizon}, iss=iss)


def destination_history(store: Store, scope: str, start: datetime, end: datetime, res: int) -> pl.DataFrame:
    """Deliveries inside ``scope`` in ``[start, end)`` of parcels scanned for a branch
    inside ``scope``: ``dest_branch_id, branch_id, hour, cell, parcels`` (``branch_id``
    and ``cell``: where they were delivered; a parcel's destination is its newest scan
    naming one). Parcels of the scope delivered outside it are left out, as every row
    outside the scope is; ``dest_total`` and ``hour_total`` count all of a destination's
    deliveries, and those of the hour (aggregates: shares of the cells inside the scope
    are not inflated and the destination's baseline is whole)."""
    store.check_scope(scope)
    q = f"""
        WITH d AS (SELECT parcel_id, ts, {_cell("cell", res)} AS cell, branch_id FROM parcel_events
                   WHERE kind = 'delivered' AND ts >= $start AND ts < $end),
        s AS (SELECT parcel_id, arg_max(dest_branch_id, ts) AS dest_branch_id FROM parcel_events
              WHERE dest_branch_id IN {_BRANCHES} AND expected_at IS NOT NULL
                AND ts >= $start - INTERVAL 48 HOUR AND ts < $end GROUP BY parcel_id),
        j AS (SELECT s.dest_branch_id, d.branch_id, date_trunc('hour', d.ts) AS hour, d.cell
              FROM d JOIN s USING (parcel_id)),
        t AS (SELECT dest_branch_id, count(*)::BIGINT AS dest_total FROM j GROUP BY 1),
        h AS (SELECT dest_branch_id, hour, count(*)::BIGINT AS hour_total FROM j GROUP BY 1, 2)
        SELECT j.dest_branch_id, j.branch_id, j.hour, j.cell, count(*)::BIGINT AS parcels,
               any_value(t.dest_total) AS dest_total, any_value(h.hour_total) AS hour_total
        FROM j JOIN t USING (dest_branch_id) JOIN h USING (dest_branch_id, hour)
        WHERE j.branch_id IN {_BRANCHES}
        GROUP BY j.dest_branch_id, j.branch_id, j.hour, j.cell ORDER BY 1, 3, 4"""
    return store.cursor().sql(q, params={"scope": scope, "start": start, "end": end}).pl()


def node_closure(store: Store, scope: str) -> pl.DataFrame:
    """``ancestor_id, branch_id`` for every node inside ``scope`` (itself included) and
    each of its branches: the roll-up of branch figures to nodes."""
    store.check_scope(scope)
    return (
        store.cursor()
        .sql(
            f"""
        SELECT nb.ancestor_id, nb.branch_id FROM node_branches nb
        WHERE nb.branch_id IN {_BRANCHES}
          AND nb.ancestor_id IN (SELECT n.node_id FROM nodes n WHERE NOT EXISTS (
                SELECT 1 FROM node_branches x WHERE x.ancestor_id = n.node_id
                AND x.branch_id NOT IN {_BRANCHES}))
        ORDER BY 1, 2""",
            params={"scope": scope},
        )
        .pl()
    )


def surges(store: Store, scope: str, start: datetime, end: datetime) -> pl.DataFrame:
    """Demo surges inside ``scope`` overlapping ``[start, end)`` (the truth for checks)."""
    store.check_scope(scope)
    return (
        store.cursor()
        .sql(
            f"SELECT * FROM demo_surges {_SCOPED} WHERE start_hour < $end AND end_hour > $start "
            "ORDER BY start_hour, branch_id",
            params={"scope": scope, "start": start, "end": end},
        )
        .pl()
    )


def cell_centres_branch(store: Store, scope: str, cells, res: int) -> pl.DataFrame:
    """The branch holding most of each cell's located res-9 cells, inside ``scope``:
    ``cell, branch_id`` (cells outside the scope are left out)."""
    store.check_scope(scope)
    frame = pl.DataFrame({"cell": pl.Series(list(cells), dtype=pl.UInt64)})
    q = f"""
        WITH k AS (SELECT {_cell("cell", res)} AS cell, branch_id, count(*) AS n
                   FROM cell_branch {_SCOPED} WHERE {_cell("cell", res)} IN (SELECT cell FROM frame)
                   GROUP BY ALL)
        SELECT cell, arg_max(branch_id, n) AS branch_id FROM k GROUP BY cell ORDER BY cell"""
    return _frame_sql(store, q, {"scope": scope}, frame=frame)


# -- reserves: idle couriers at outlets, idle vans at their bases ---------------------------------
def _roster_sql(res: int, scoped: bool = True) -> str:
    # Network-wide (``scoped`` false) each actor row also carries its outlet's branch.
    where = f"branch_id IN {_BRANCHES}" if scoped else "branch_id IS NOT NULL"
    branch = "" if scoped else ", o.branch_id AS outlet_branch"
    return f"""
        o AS (SELECT outlet_id, branch_id, {_cell("cell", res)} AS cell, lat, lng FROM outlets
              WHERE {where}),
        r AS (SELECT c.courier_id AS actor_id, c.outlet_id, 'courier' AS kind,
                     coalesce(c.mode, $default_mode) AS mode{branch}
              FROM couriers c JOIN o USING (outlet_id)
              UNION ALL
              SELECT v.vehicle_id, v.outlet_id, 'vehicle', coalesce(v.kind, 'van'){branch}
              FROM vehicles v JOIN o USING (outlet_id))"""


def reserve_roster(store: Store, scope: str, res: int, default_mode: str = "ebike") -> pl.DataFrame:
    """Couriers and vehicles based at each outlet or hub inside ``scope``.

    Returns
    -------
    polars.DataFrame
        ``outlet_id, branch_id, cell`` (at ``res``), ``lat, lng, kind`` (courier |
        vehicle), ``mode`` (walk | ebike for couriers, ``default_mode`` when unknown;
        the vehicle's kind: van | truck) and ``roster``.
    """
    store.check_scope(scope)
    q = f"""WITH {_roster_sql(res)}
        SELECT o.outlet_id, o.branch_id, o.cell, o.lat, o.lng, r.kind, r.mode, count(*)::BIGINT AS roster
        FROM r JOIN o USING (outlet_id) GROUP BY ALL ORDER BY 1, 6, 7"""
    return store.cursor().sql(q, params={"scope": scope, "default_mode": default_mode}).pl()


def reserve_seen(store: Store, scope: str, hours, default_mode: str = "ebike") -> pl.DataFrame:
    """How many of each outlet's couriers and vehicles were on the road (seen anywhere)
    in each of some hours: ``hour, outlet_id, kind, mode, seen``. The others were idle
    at their outlet or hub."""
    store.check_scope(scope)
    if not len(hours):
        return pl.DataFrame(
            schema={
                "hour": pl.Datetime("us"),
                "outlet_id": pl.String,
                "kind": pl.String,
                "mode": pl.String,
                "seen": pl.Int64,
            }
        )
    q = f"""WITH {_roster_sql(h3cells.BASE_RES)}
        SELECT p.hour, r.outlet_id, r.kind, r.mode, count(DISTINCT p.actor_id)::BIGINT AS seen
        FROM cube_presence p SEMI JOIN hrs USING (hour) JOIN r USING (actor_id)
        WHERE p.hour >= $lo AND p.hour <= $hi GROUP BY ALL ORDER BY 1, 2, 3, 4"""
    return _frame_sql(
        store,
        q,
        {"scope": scope, "lo": min(hours), "hi": max(hours), "default_mode": default_mode},
        hrs=_hours_frame(hours),
    )


def mode_mix(store: Store, scope: str) -> pl.DataFrame:
    """How the couriers of each branch inside ``scope`` travel: ``branch_id, mode, couriers``."""
    store.check_scope(scope)
    q = f"""SELECT branch_id, mode, count(*)::BIGINT AS couriers FROM couriers
            WHERE branch_id IN {_BRANCHES} AND mode IS NOT NULL GROUP BY ALL ORDER BY 1, 2"""
    return store.cursor().sql(q, params={"scope": scope}).pl()


# -- network-wide frames of a day, sliced per scope ---------------------------------------------
# The reads above for one scope and one issue time, answered instead by filtering frames read
# once for the whole network and every issue hour of a (local) day. Equal to the scoped reads
# when each parcel keeps to one destination branch, is not scanned for a destination after
# being delivered, is delivered within PIPELINE_LOOKBACK of its last such scan, and is picked
# up in the branch of its request within 24 h after it: the windows of the reads then cannot
# change a parcel's part, and a scope holds all of a parcel's rows or none. Parcels that break
# one of these are found by :func:`irregular_branches`; a scope holding one of their branches
# is answered by the scoped reads.

#: Frames of :func:`network_day` (each sliced per scope by :func:`sliced_inputs`).
DAY_FRAMES = (
    "cells",
    "pings",
    "presence",
    "seen",
    "pipeline",
    "open_pickups",
    "known_pickups",
    "delays",
    "dest",
)


def _day_issues(start: datetime, end: datetime) -> list[datetime]:
    out, t = [], start
    while t < end:
        out.append(t)
        t += timedelta(hours=1)
    return out


def network_day(
    store: Store,
    start: datetime,
    end: datetime,
    res: int,
    horizon: int = 6,
    default_mode: str = "ebike",
    pause=None,
) -> dict:
    """Network-wide frames for the forecasts issued at the hour starts of ``[start, end)``
    (a local day) and for the figures of its hours, to be sliced per scope.

    Returns
    -------
    dict
        ``cells`` (:func:`cell_hours` of the day's hours), ``pings`` (``hour, branch_id,
        pings``), ``presence`` (``hour, branch_id, courier, actor``: distinct actors, as
        small integers), ``seen`` (:func:`reserve_seen` plus the outlet's ``branch_id``),
        ``pipeline`` (:func:`delivery_pipeline` at each issue hour), ``open_pickups``,
        ``known_pickups`` (at each issue hour), ``delays`` (``ts, branch_id, delay_s`` of
        the day's pickups) and ``dest`` (``dest_branch_id, branch_id, hour, cell,
        parcels``: the day's deliveries by destination).
    """
    pause = pause or _nothing
    issued = _day_issues(start, end)
    cell = _cell("cell", res)
    win = {"start": start, "end": end}
    iss = pl.DataFrame({"issued": pl.Series(issued, dtype=pl.Datetime("us"))})
    lo, hi = start - PIPELINE_LOOKBACK, issued[-1] + timedelta(hours=horizon)
    reads = {
        "cells": lambda: (
            store.cursor()
            .sql(
                f"""
            WITH c AS (SELECT hour, {cell} AS cell, branch_id, sum(pickups)::BIGINT AS pickups,
                              sum(deliveries)::BIGINT AS deliveries, sum(late)::BIGINT AS late,
                              sum(pings)::BIGINT AS pings
                       FROM cube_hourly WHERE hour >= $start AND hour < $end AND branch_id IS NOT NULL GROUP BY ALL),
            p AS (SELECT hour, {cell} AS cell, branch_id, count(DISTINCT actor_id) AS couriers
                  FROM cube_presence WHERE hour >= $start AND hour < $end AND actor_kind = 'courier'
                  GROUP BY ALL)
            SELECT hour, cell, branch_id, c.pickups, c.deliveries, c.late, c.pings,
                   coalesce(p.couriers, 0)::BIGINT AS couriers
            FROM c LEFT JOIN p USING (hour, cell, branch_id) ORDER BY hour, cell, branch_id""",
                params=win,
            )
            .pl()
        ),
        "pings": lambda: (
            store.cursor()
            .sql(
                "SELECT hour, branch_id, sum(pings)::BIGINT AS pings FROM cube_hourly "
                "WHERE hour >= $start AND hour < $end AND branch_id IS NOT NULL GROUP BY ALL",
                params=win,
            )
            .pl()
        ),
        "presence": lambda: (
            store.cursor()
            .sql(
                "SELECT DISTINCT hour, branch_id, actor_kind = 'courier' AS courier, actor_id FROM cube_presence "
                "WHERE hour >= $start AND hour < $end AND branch_id IS NOT NULL",
                params=win,
            )
            .pl()
            .with_columns(pl.col("actor_id").rank("dense").cast(pl.UInt32).alias("actor"))
            .drop("actor_id")
        ),
        "seen": lambda: (
            store.cursor()
            .sql(
                f"""WITH {_roster_sql(h3cells.BASE_RES, scoped=False)}
            SELECT p.hour, r.outlet_id, r.kind, r.mode, count(DISTINCT p.actor_id)::BIGINT AS seen,
                   any_value(r.outlet_branch) AS outlet_branch
            FROM cube_presence p JOIN r USING (actor_id)
            WHERE p.hour >= $start AND p.hour < $end GROUP BY p.hour, r.outlet_id, r.kind, r.mode""",
                params={**win, "default_mode": default_mode},
            )
            .pl()
        ),
        "pipeline": lambda: _frame_sql(
            store,
            _PIPELINE_SQL.format(dest="dest_branch_id IS NOT NULL"),
            {"lo": lo, "hi": hi, "horizon": horizon},
            iss=iss,
        ),
        "open_pickups": lambda: _frame_sql(
            store,
            f"""
            WITH r AS (SELECT parcel_id, ts, {cell} AS cell, branch_id FROM parcel_events
                       WHERE kind = 'pickup_request' AND branch_id IS NOT NULL AND ts >= $lo AND ts < $hi),
            p AS (SELECT parcel_id, ts FROM parcel_events
                  WHERE kind = 'pickup' AND branch_id IS NOT NULL AND ts >= $lo AND ts < $hi)
            SELECT i.issued, r.cell, r.branch_id, epoch(i.issued) - epoch(r.ts) AS age_s
            FROM r JOIN iss i ON r.ts < i.issued AND r.ts >= i.issued - INTERVAL 24 HOUR
            WHERE NOT EXISTS (SELECT 1 FROM p WHERE p.parcel_id = r.parcel_id AND p.ts < i.issued)
            ORDER BY 1, 2""",
            {"lo": start - timedelta(hours=24), "hi": issued[-1]},
            iss=iss,
        ),
        "known_pickups": lambda: _frame_sql(
            store,
            f"""
            WITH p AS (SELECT parcel_id, ts, {cell} AS cell, branch_id FROM parcel_events
                       WHERE kind = 'pickup' AND branch_id IS NOT NULL AND ts >= $lo AND ts < $hi),
            r AS (SELECT parcel_id, ts FROM parcel_events
                  WHERE kind = 'pickup_request' AND branch_id IS NOT NULL AND ts >= $lo - INTERVAL 24 HOUR AND ts < $hi)
            SELECT i.issued, date_trunc('hour', p.ts) AS hour, p.cell, p.branch_id, count(*)::BIGINT AS parcels
            FROM p JOIN r USING (parcel_id)
            JOIN iss i ON p.ts >= i.issued AND p.ts < i.issued + to_hours($horizon::BIGINT) AND r.ts < i.issued
            GROUP BY ALL ORDER BY 1, 2, 3""",
            {"lo": start, "hi": hi, "horizon": horizon},
            iss=iss,
        ),
        "delays": lambda: (
            store.cursor()
            .sql(
                """
            WITH p AS (SELECT parcel_id, ts, branch_id FROM parcel_events
                       WHERE kind = 'pickup' AND branch_id IS NOT NULL AND ts >= $start AND ts < $end),
            r AS (SELECT parcel_id, ts FROM parcel_events WHERE kind = 'pickup_request' AND branch_id IS NOT NULL
                  AND ts >= $start - INTERVAL 24 HOUR AND ts < $end)
            SELECT p.ts, p.branch_id, (epoch(p.ts) - epoch(r.ts))::DOUBLE AS delay_s FROM p JOIN r USING (parcel_id)""",
                params=win,
            )
            .pl()
        ),
        "dest": lambda: (
            store.cursor()
            .sql(
                f"""
            WITH d AS (SELECT parcel_id, ts, {cell} AS cell, branch_id FROM parcel_events
                       WHERE kind = 'delivered' AND ts >= $start AND ts < $end),
            s AS (SELECT parcel_id, arg_max(dest_branch_id, ts) AS dest_branch_id FROM parcel_events
                  WHERE dest_branch_id IS NOT NULL AND expected_at IS NOT NULL
                    AND ts >= $start - INTERVAL 48 HOUR AND ts < $end GROUP BY parcel_id)
            SELECT s.dest_branch_id, d.branch_id, date_trunc('hour', d.ts) AS hour, d.cell, count(*)::BIGINT AS parcels
            FROM d JOIN s USING (parcel_id) GROUP BY ALL""",
                params=win,
            )
            .pl()
        ),
    }
    out = {}
    for name, read in reads.items():
        pause()
        out[name] = read()
    return out


_PIPELINE_SQL = """
        WITH s AS (SELECT parcel_id, ts, dest_branch_id AS branch_id, expected_at FROM parcel_events
                   WHERE {dest} AND expected_at IS NOT NULL
                     AND ts >= $lo AND ts < $hi),
        d AS (SELECT parcel_id, min(ts) AS dts FROM parcel_events
              WHERE kind = 'delivered' AND ts >= $lo AND ts < $hi
                AND parcel_id IN (SELECT parcel_id FROM s) GROUP BY parcel_id),
        v AS (SELECT s.branch_id, s.ts, s.expected_at,
                     least(coalesce(lead(s.ts) OVER (PARTITION BY s.parcel_id ORDER BY s.ts), 'infinity'::TIMESTAMP),
                           coalesce(d.dts, 'infinity'::TIMESTAMP)) AS valid_to
              FROM s LEFT JOIN d USING (parcel_id))
        SELECT i.issued, v.branch_id, date_trunc('hour', v.expected_at) AS hour, count(*)::BIGINT AS parcels
        FROM v JOIN iss i ON v.ts < i.issued AND i.issued <= v.valid_to
            AND v.expected_at >= i.issued AND v.expected_at < i.issued + to_hours($horizon::BIGINT)
        WHERE v.ts >= i.issued - INTERVAL 48 HOUR
        GROUP BY ALL ORDER BY 1, 2, 3"""


def irregular_branches(store: Store, start: datetime, end: datetime) -> set:
    """Branches of the parcels of the day ``[start, end)`` whose part in a forecast depends
    on the scope or on the windows of the reads (see :func:`network_day`): scanned for two
    destination branches, scanned for a destination after a delivery, delivered more than
    ``PIPELINE_LOOKBACK`` after their last such scan, picked up before their request,
    more than 24 h after it or in another branch. Empty for the demo data."""
    q = """
        WITH e AS (SELECT parcel_id, kind, ts, branch_id, dest_branch_id, expected_at FROM parcel_events
                   WHERE ts >= $start - INTERVAL 48 HOUR AND ts < $end),
        s AS (SELECT parcel_id, ts, dest_branch_id FROM e WHERE dest_branch_id IS NOT NULL AND expected_at IS NOT NULL),
        d AS (SELECT parcel_id, ts FROM e WHERE kind = 'delivered'),
        odd AS (SELECT parcel_id FROM s GROUP BY parcel_id HAVING count(DISTINCT dest_branch_id) > 1
                UNION SELECT s.parcel_id FROM s JOIN d USING (parcel_id) WHERE s.ts > d.ts
                UNION SELECT d.parcel_id FROM d WHERE d.ts >= $start AND NOT EXISTS (
                    SELECT 1 FROM s WHERE s.parcel_id = d.parcel_id AND s.ts < d.ts
                    AND s.ts >= d.ts - INTERVAL 48 HOUR)),
        p AS (SELECT parcel_id, ts, branch_id FROM parcel_events WHERE kind = 'pickup' AND ts >= $start AND ts < $end),
        r AS (SELECT parcel_id, ts, branch_id FROM parcel_events WHERE kind = 'pickup_request'
              AND ts >= $start - INTERVAL 16 DAY AND ts < $end + INTERVAL 6 HOUR),
        pr AS (SELECT p.branch_id AS a, r.branch_id AS b FROM p JOIN r USING (parcel_id)
               WHERE r.ts > p.ts OR p.ts - r.ts > INTERVAL 24 HOUR OR p.branch_id IS DISTINCT FROM r.branch_id)
        SELECT DISTINCT dest_branch_id AS branch_id FROM parcel_events
        WHERE parcel_id IN (SELECT parcel_id FROM odd) AND dest_branch_id IS NOT NULL
          AND ts >= $start - INTERVAL 18 DAY AND ts < $end + INTERVAL 6 HOUR
        UNION SELECT a FROM pr UNION SELECT b FROM pr"""
    rows = store.cursor().execute(q, {"start": start, "end": end}).fetchall()
    return {r[0] for r in rows if r[0] is not None}


def network_frames(days: list[dict]) -> dict:
    """The frames of several :func:`network_day` calls (oldest day first) as one of each."""
    return {name: pl.concat([d[name] for d in days], how="vertical") for name in DAY_FRAMES}


#: The column naming the branch by which each frame of :func:`network_day` is scoped
#: (:func:`sliced_inputs` keeps a destination's deliveries wherever they landed, to count
#: its totals, and an outlet's reserves by the outlet's branch).
SCOPE_COLUMN = {name: "branch_id" for name in DAY_FRAMES} | {
    "dest": "dest_branch_id",
    "seen": "outlet_branch",
}


def scope_frames(net: dict, branches: pl.Series) -> dict:
    """The rows of the network-wide frames ``net`` that the slices of a scope (whose
    branches are ``branches``) can read: :func:`sliced_inputs` and :func:`sliced_actual`
    give the same answer from them as from ``net``, and filter fewer rows for each hour."""
    keep = branches.implode()
    return {name: frame.filter(pl.col(SCOPE_COLUMN[name]).is_in(keep)) for name, frame in net.items()}


def _nothing() -> None:
    return None
