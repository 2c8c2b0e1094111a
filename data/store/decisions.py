"""Dispatch decisions: a manager's accepted or dismissed suggestions, with who decided."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from data.store.branches import in_scope
from data.store.database import Store

DECISIONS_DDL = """CREATE TABLE IF NOT EXISTS dispatch_decisions (
    decided_at TIMESTAMP NOT NULL,   -- when the manager answered (UTC)
    scope VARCHAR NOT NULL,          -- the node the manager was viewing
    branch_id VARCHAR NOT NULL,      -- the branch of the zone (scoped reads filter on it)
    hour TIMESTAMP NOT NULL,         -- the hour the suggestion is for (UTC hour start)
    source_cell UBIGINT NOT NULL,    -- where the couriers come from
    zone_cell UBIGINT NOT NULL,      -- the zone cell they go to (its most loaded cell)
    couriers INTEGER NOT NULL,       -- how many couriers (0 for a move of vans)
    distance_km DOUBLE,
    decision VARCHAR NOT NULL,       -- accepted | dismissed
    user_name VARCHAR,               -- who answered, when known
    kind VARCHAR DEFAULT 'courier',  -- courier | vehicle
    mode VARCHAR,                    -- walk | ebike | van
    vehicles INTEGER DEFAULT 0,      -- how many vans
    source_outlet VARCHAR            -- the outlet or hub they leave, for idle couriers and vans
)"""


#: Columns added after the first version of the table (stores made before get them).
DECISIONS_ADDED = {
    "kind": "VARCHAR DEFAULT 'courier'",
    "mode": "VARCHAR",
    "vehicles": "INTEGER DEFAULT 0",
    "source_outlet": "VARCHAR",
}


DECISIONS = ("accepted", "dismissed")


# -- record of decisions --------------------------------------------------------------------
def ensure_decisions_table(store: Store) -> None:
    """Create the ``dispatch_decisions`` table if missing (and add newer columns)."""
    con = store.cursor()
    con.execute(DECISIONS_DDL)
    for name, kind in DECISIONS_ADDED.items():
        con.execute(f"ALTER TABLE dispatch_decisions ADD COLUMN IF NOT EXISTS {name} {kind}")


def record_decision(
    store: Store,
    scope: str,
    branch_id: str,
    hour: datetime,
    source_cell: int,
    zone_cell: int,
    couriers: int,
    decision: str,
    distance_km: float | None = None,
    user: str | None = None,
    at: datetime | None = None,
    *,
    kind: str = "courier",
    mode: str | None = None,
    vehicles: int = 0,
    source_outlet: str | None = None,
) -> None:
    """Record that a manager viewing ``scope`` accepted or dismissed a suggestion for a
    zone of ``branch_id`` (which must lie inside the scope): ``couriers`` couriers, or
    for ``kind="vehicle"`` ``vehicles`` vans (``couriers`` 0)."""
    store.check_scope(scope)
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    if kind not in ("courier", "vehicle"):
        raise ValueError(f"kind must be courier or vehicle, got {kind!r}")
    inside = (
        store.cursor()
        .execute("SELECT 1 FROM node_branches WHERE ancestor_id = ? AND branch_id = ?", [scope, branch_id])
        .fetchone()
    )
    if inside is None:
        raise PermissionError(f"branch {branch_id!r} is outside scope {scope!r}")
    ensure_decisions_table(store)
    at = at or datetime.now(UTC).replace(tzinfo=None)
    store.cursor().execute(
        "INSERT INTO dispatch_decisions (decided_at, scope, branch_id, hour, source_cell, zone_cell, couriers, "
        "distance_km, decision, user_name, kind, mode, vehicles, source_outlet) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            at,
            scope,
            branch_id,
            hour,
            int(source_cell),
            int(zone_cell),
            int(couriers),
            distance_km,
            decision,
            user,
            kind,
            mode,
            int(vehicles),
            source_outlet,
        ],
    )


def decisions(
    store: Store, scope: str, start: datetime | None = None, end: datetime | None = None
) -> pl.DataFrame:
    """Decisions about zones inside ``scope`` for suggestion hours in ``[start, end)``,
    newest first."""
    store.check_scope(scope)
    ensure_decisions_table(store)
    q = f"""SELECT * FROM dispatch_decisions {in_scope()}
            WHERE ($start IS NULL OR hour >= $start) AND ($end IS NULL OR hour < $end)
            ORDER BY decided_at DESC"""
    return store.cursor().sql(q, params={"scope": scope, "start": start, "end": end}).pl()
