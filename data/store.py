"""The embedded store: a DuckDB file holding the tree, the operations data and the cube.

Writes go through :class:`Store` methods that keep the hourly cube in step with the raw
tables (incrementally: only the cell-hours a batch touches are updated). Every method
that returns operations data takes the viewer's scope, a node id, as its first argument:
access control is a property of the data layer.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import geopandas as gpd
import numpy as np
import polars as pl
import shapely

from data.schema import CUBE_COUNTS, ddl
from geo import cells as h3cells
from geo.hierarchy import BranchLocator, branch_closure

#: Columns of the pings table in order.
PING_FIELDS = ["device_id", "ts", "lat", "lng", "speed", "heading", "accuracy",
               "courier_id", "vehicle_id", "cell", "branch_id"]
EVENT_FIELDS = ["event_id", "parcel_id", "kind", "ts", "lat", "lng", "outlet_id", "courier_id",
                "promised_at", "dest_branch_id", "expected_at", "cell", "branch_id"]
#: Record tables: their columns in order and their record id (dedupe key).
_RECORDS = {
    "pings": (PING_FIELDS, ["device_id", "ts"]),
    "parcel_events": (EVENT_FIELDS, ["event_id"]),
}
_OUTLINE_TOLERANCE = {"hq": 0.05, "division": 0.02, "region": 0.005, "branch": 0.001}


class ScopeError(LookupError):
    """The scope names no node of the tree."""


class Store:
    """One DuckDB file. Thread-safe: reads use their own cursor, writes take a lock.

    Parameters
    ----------
    path : str or Path
        The DuckDB file (created with its schema if missing).
    read_only : bool
        Open without write access (several readers may share the file).
    memory_limit : str
        DuckDB's buffer pool limit (``Settings.duckdb_memory_limit``).
    """

    def __init__(self, path: str | Path, read_only: bool = False, memory_limit: str = "1GB"):
        self.path = Path(path)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # A bounded buffer pool: DuckDB would otherwise cache up to 80% of the machine's
        # memory, and the store shares the machine with the web server.
        self._con = duckdb.connect(str(self.path), read_only=read_only,
                                   config={"memory_limit": memory_limit})
        self._write_lock = threading.Lock()
        self._locator: BranchLocator | None = None
        if not read_only:
            for stmt in ddl():
                self._con.execute(stmt)

    # -- plumbing ---------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for one thread's reads."""
        return self._con.cursor()

    def close(self) -> None:
        self._con.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def sql(self, query: str, params: list | None = None) -> pl.DataFrame:
        """Run a read query and return a polars frame (for tests and tools)."""
        return self.cursor().sql(query, params=params or None).pl()

    def scalar(self, query: str, params: list | None = None):
        return self.cursor().execute(query, params or []).fetchone()[0]

    def meta(self, key: str) -> str | None:
        row = self.cursor().execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._write_lock:
            self._con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, str(value)])

    def counts(self) -> dict[str, int]:
        """Row count of each table."""
        names = [r[0] for r in self.cursor().execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()]
        return {n: self.scalar(f"SELECT count(*) FROM {n}") for n in sorted(names)}

    # -- the tree -----------------------------------------------------------------------
    def has_tree(self) -> bool:
        return self.scalar("SELECT count(*) FROM nodes") > 0

    def save_tree(self, nodes: gpd.GeoDataFrame) -> None:
        """Store the organisation tree (replacing any previous one)."""
        frame = nodes.drop(columns="geometry").copy()
        geoms = nodes.geometry.values
        frame["territory"] = shapely.to_wkb(geoms)
        tol = nodes["level"].map(_OUTLINE_TOLERANCE).to_numpy(dtype=float)
        frame["outline"] = shapely.to_wkb(shapely.simplify(geoms, tol, preserve_topology=True))
        closure = branch_closure(nodes)  # noqa: F841 (read by name in SQL)
        with self._write_lock:
            self._con.execute("BEGIN")
            self._con.execute("DELETE FROM nodes")
            self._con.execute("DELETE FROM node_branches")
            self._con.execute("DELETE FROM cell_branch")
            self._con.execute("INSERT INTO nodes BY NAME SELECT * FROM frame")
            self._con.execute("INSERT INTO node_branches SELECT * FROM closure")
            self._con.execute("COMMIT")
        self._locator = None

    def nodes(self) -> pl.DataFrame:
        """Every node without geometry."""
        return self.sql("SELECT * EXCLUDE (territory, outline) FROM nodes ORDER BY node_id")

    def territories(self, node_ids: list[str], detail: str = "outline") -> gpd.GeoDataFrame:
        """Polygons of some nodes: ``outline`` (simplified, for drawing) or ``territory``."""
        col = "outline" if detail == "outline" else "territory"
        rows = self.cursor().execute(
            f"SELECT node_id, level, name, name_en, label_lat, label_lng, {col} AS wkb "
            "FROM nodes WHERE list_contains(?, node_id)", [list(node_ids)]).fetchdf()
        geoms = shapely.from_wkb(rows.pop("wkb").map(bytes).to_numpy())
        return gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4326")

    def check_scope(self, scope: str) -> None:
        """Raise :class:`ScopeError` unless ``scope`` is a node id."""
        if not isinstance(scope, str) or self.cursor().execute(
                "SELECT 1 FROM nodes WHERE node_id = ?", [scope]).fetchone() is None:
            raise ScopeError(f"unknown node {scope!r}")

    def locator(self) -> BranchLocator:
        if self._locator is None:
            b = self.cursor().execute(
                "SELECT node_id, level, territory FROM nodes WHERE level = 'branch'").fetchdf()
            gdf = gpd.GeoDataFrame(b[["node_id", "level"]],
                                   geometry=shapely.from_wkb(b["territory"].map(bytes).to_numpy()))
            self._locator = BranchLocator(gdf)
        return self._locator

    def branches_of_cells(self, cells: np.ndarray) -> pl.Series:
        """Branch of each res-9 cell (the branch holding its centre), cached in the store.

        Only cells never seen before go through the spatial join, so a batch costs one
        join over its distinct cells, not one per point.
        """
        uniq = pl.DataFrame({"cell": np.unique(cells)})
        con = self.cursor()
        known = con.sql(
            "SELECT u.cell, cb.branch_id FROM uniq u JOIN cell_branch cb USING (cell)").pl()
        new = uniq.join(known.select("cell"), on="cell", how="anti")
        if len(new):
            lat, lng = h3cells.centers(new["cell"].to_numpy())
            found = pl.DataFrame({"cell": new["cell"],
                                  "branch_id": pl.Series(self.locator().locate(lat, lng).tolist(), dtype=pl.String)})
            with self._write_lock:
                self._con.execute("INSERT INTO cell_branch SELECT * FROM found")
            known = pl.concat([known, found])
        looked = pl.DataFrame({"cell": cells}).join(known, on="cell", how="left", maintain_order="left")
        return looked["branch_id"]

    # -- reference data -----------------------------------------------------------------
    def upsert(self, table: str, frame: pl.DataFrame, key: str) -> int:
        """Insert or replace rows of a reference table (outlets, couriers, vehicles, devices)."""
        if table not in ("outlets", "couriers", "vehicles", "devices"):
            raise ValueError(f"not a reference table: {table}")
        with self._write_lock:
            self._con.execute("BEGIN")
            self._con.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM frame)")
            self._con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM frame")
            self._con.execute("COMMIT")
        return len(frame)

    def quarantine(self, bad: pl.DataFrame, source: str, kind: str) -> int:
        """Keep rejected records with where they came from and why."""
        if bad.is_empty():
            return 0
        rows = bad.select(
            pl.lit(datetime.now(UTC).replace(tzinfo=None)).alias("received_at"),
            pl.lit(source).alias("source"),
            pl.col("_row").cast(pl.Int64).alias("row_number"),
            pl.lit(kind).alias("record_kind"),
            pl.col("reason"),
            pl.col("raw"),
        )
        with self._write_lock:
            self._con.execute("INSERT INTO quarantine SELECT * FROM rows")
        return len(rows)

    # -- operations data ----------------------------------------------------------------
    def ingest_pings(self, good: pl.DataFrame) -> tuple[int, int, pl.DataFrame]:
        """Index, locate and store validated pings, updating the cube.

        Returns ``(stored, duplicates, bad)`` where ``bad`` holds rows refused here
        (unknown device, outside the network) in the validator's bad-row shape.
        """
        ok, bad = self.prepare_pings(good)
        stored, dup = self.commit("pings", ok)
        return stored, dup, bad

    def ingest_events(self, good: pl.DataFrame) -> tuple[int, int, pl.DataFrame]:
        """Index, locate and store validated parcel events, updating the cube."""
        ok, bad = self.prepare_events(good)
        stored, dup = self.commit("parcel_events", ok)
        return stored, dup, bad

    def prepare_pings(self, good: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Cell, device owner and branch of validated pings: ``(ready rows, refused rows)``.

        Separate from :meth:`commit` so that a caller can prepare the next batch while
        the store writes this one.
        """
        if good.is_empty():
            return good.select("_row"), _empty_bad()
        good = good.with_columns(h3cells.cell_expr("lat", "lng").alias("cell"))
        devices = self.sql("SELECT device_id, courier_id, vehicle_id FROM devices")
        good = good.join(devices, on="device_id", how="left")
        good = good.with_columns(self.branches_of_cells(good["cell"].to_numpy()).alias("branch_id"))
        reason = (pl.when(pl.col("courier_id").is_null() & pl.col("vehicle_id").is_null())
                  .then(pl.concat_str(pl.lit("unknown device '"), pl.col("device_id"), pl.lit("'")))
                  .when(pl.col("branch_id").is_null())
                  .then(pl.lit("position outside every branch territory")))
        good = good.with_columns(reason.alias("reason"))
        bad = _bad_rows(good.filter(pl.col("reason").is_not_null()))
        ok = good.filter(pl.col("reason").is_null()).select(["_row", *PING_FIELDS])
        return ok, bad

    def prepare_events(self, good: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Cell and branch of validated parcel events: ``(ready rows, refused rows)``."""
        if good.is_empty():
            return good.select("_row"), _empty_bad()
        good = good.with_columns(h3cells.cell_expr("lat", "lng").alias("cell"))
        good = good.with_columns(self.branches_of_cells(good["cell"].to_numpy()).alias("branch_id"))
        good = good.with_columns(
            pl.when(pl.col("branch_id").is_null())
            .then(pl.lit("position outside every branch territory")).alias("reason"))
        bad = _bad_rows(good.filter(pl.col("reason").is_not_null()))
        ok = good.filter(pl.col("reason").is_null()).select(["_row", *EVENT_FIELDS])
        return ok, bad

    def commit(self, table: str, ready: pl.DataFrame) -> tuple[int, int]:
        """Store prepared rows of ``pings`` or ``parcel_events`` now: ``(stored, duplicates)``.

        One transaction: the batch is stored with its cube update, or not at all.
        """
        fields, _key = _RECORDS[table]
        if ready.is_empty():
            return 0, 0
        with self._write_lock:
            self._con.register("incoming_batch", ready.select(fields))
            try:
                stored = self._store_new(table, "incoming_batch")
            finally:
                self._con.unregister("incoming_batch")
        return stored, len(ready) - stored

    def stage(self, table: str, ready: pl.DataFrame) -> None:
        """Append prepared rows to a staging table; nothing is visible until
        :meth:`commit_staged`. File import stages every batch and stores them once, so
        dedupe and cube work is one pass over the file instead of one per batch."""
        fields, _key = _RECORDS[table]
        with self._write_lock:
            self._con.execute(f"CREATE TEMP TABLE IF NOT EXISTS stage_{table} AS "
                              f"SELECT {', '.join(fields)} FROM {table} LIMIT 0")
            self._con.register("incoming_batch", ready.select(fields))
            try:
                self._con.execute(f"INSERT INTO stage_{table} SELECT * FROM incoming_batch")
            finally:
                self._con.unregister("incoming_batch")

    def commit_staged(self, table: str) -> tuple[int, int]:
        """Store what :meth:`stage` collected: ``(stored, duplicates)``; empties the stage."""
        if table not in _RECORDS:
            raise ValueError(f"not an operations table: {table}")
        with self._write_lock:
            exists = self._con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?",
                [f"stage_{table}"]).fetchone()[0]
            if not exists:
                return 0, 0
            staged = self._con.execute(f"SELECT count(*) FROM stage_{table}").fetchone()[0]
            try:
                stored = self._store_new(table, f"stage_{table}") if staged else 0
            finally:
                self._con.execute(f"DROP TABLE IF EXISTS stage_{table}")
        return stored, staged - stored

    def discard_staged(self, table: str) -> None:
        """Forget staged rows (an import that failed half-way stores nothing)."""
        with self._write_lock:
            self._con.execute(f"DROP TABLE IF EXISTS stage_{table}")

    def _store_new(self, table: str, source: str) -> int:
        """Insert the rows of ``source`` whose record id is new, and update the cube.

        The caller holds the write lock. Returns the number of rows stored.
        """
        fields, key = _RECORDS[table]
        keys = ", ".join(key)
        on = " AND ".join(f"b.{k} = t.{k}" for k in key)
        con = self._con
        window = ""
        if table == "pings":
            # A ping's key includes its time, so only rows in the batch's time window can
            # match; the window lets DuckDB skip row groups of other days (zone maps).
            lo, hi = con.execute(f"SELECT min(ts), max(ts) FROM {source}").fetchone()
            window = f" AND t.ts BETWEEN '{lo}'::TIMESTAMP AND '{hi}'::TIMESTAMP"
        # Most batches hold no repeated record: check that cheaply (a count of distinct
        # keys and a semi join) and only then pay for DISTINCT ON and an anti join.
        total, distinct = con.execute(
            f"SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {source})) "
            f"FROM {source}").fetchone()
        clash = con.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {source} b WHERE EXISTS "
            f"(SELECT 1 FROM {table} t WHERE {on}{window}) LIMIT 1)").fetchone()[0]
        con.execute("BEGIN")
        try:
            if total == distinct and not clash:
                fresh, stored = source, total
            else:
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE fresh AS "
                    f"SELECT * FROM (SELECT DISTINCT ON ({keys}) * FROM {source}) b "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {on}{window})")
                fresh = "fresh"
                stored = con.execute("SELECT count(*) FROM fresh").fetchone()[0]
            con.execute(f"INSERT INTO {table} SELECT * FROM {fresh}")
            if table == "pings":
                self._cube_add_pings(con, fresh)
            else:
                self._cube_add_events(con, fresh)
            con.execute("DROP TABLE IF EXISTS fresh")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return stored

    @staticmethod
    def _cube_merge(con, delta_sql: str) -> None:
        """Add a delta (same columns as the cube's counts) into cube_hourly."""
        con.execute(f"CREATE OR REPLACE TEMP TABLE delta AS {delta_sql}")
        sets = ", ".join(f"{c} = cube_hourly.{c} + d.{c}" for c in CUBE_COUNTS)
        con.execute(
            f"UPDATE cube_hourly SET {sets} FROM delta d WHERE cube_hourly.hour = d.hour "
            "AND cube_hourly.cell = d.cell AND cube_hourly.branch_id = d.branch_id")
        con.execute(
            "INSERT INTO cube_hourly BY NAME SELECT d.*, 0 AS couriers, 0 AS vehicles "
            "FROM delta d ANTI JOIN cube_hourly c USING (hour, cell, branch_id)")
        con.execute("DROP TABLE delta")

    def _cube_add_pings(self, con, fresh: str) -> None:
        self._cube_merge(con, f"""
            SELECT date_trunc('hour', ts) AS hour, cell, branch_id, count(*) AS pings,
                   0 AS pickups, 0 AS deliveries, 0 AS on_time, 0 AS late, 0 AS scans
            FROM {fresh} GROUP BY ALL""")
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE new_presence AS
            SELECT DISTINCT date_trunc('hour', ts) AS hour, cell, branch_id,
                   coalesce(courier_id, vehicle_id) AS actor_id,
                   CASE WHEN courier_id IS NOT NULL THEN 'courier' ELSE 'vehicle' END AS actor_kind
            FROM {fresh}""")
        con.execute("""
            INSERT INTO cube_presence SELECT n.* FROM new_presence n
            ANTI JOIN cube_presence p USING (hour, cell, branch_id, actor_id)""")
        # Distinct counts of the touched cell-hours are recounted, never added up.
        con.execute("""
            UPDATE cube_hourly SET couriers = r.couriers, vehicles = r.vehicles FROM (
                SELECT p.hour, p.cell, p.branch_id,
                       count(*) FILTER (WHERE actor_kind = 'courier') AS couriers,
                       count(*) FILTER (WHERE actor_kind = 'vehicle') AS vehicles
                FROM cube_presence p
                SEMI JOIN (SELECT DISTINCT hour, cell, branch_id FROM new_presence) t
                    USING (hour, cell, branch_id)
                GROUP BY ALL) r
            WHERE cube_hourly.hour = r.hour AND cube_hourly.cell = r.cell
              AND cube_hourly.branch_id = r.branch_id""")
        con.execute("DROP TABLE new_presence")

    def _cube_add_events(self, con, fresh: str) -> None:
        self._cube_merge(con, f"""
            SELECT date_trunc('hour', ts) AS hour, cell, branch_id, 0 AS pings,
                   count(*) FILTER (WHERE kind = 'pickup') AS pickups,
                   count(*) FILTER (WHERE kind = 'delivered') AS deliveries,
                   count(*) FILTER (WHERE kind = 'delivered' AND ts <= promised_at) AS on_time,
                   count(*) FILTER (WHERE kind = 'delivered' AND ts > promised_at) AS late,
                   count(*) AS scans
            FROM {fresh} GROUP BY ALL""")

    # -- scoped reads -------------------------------------------------------------------
    def cube_sources(self, res: int | None) -> tuple[str, str]:
        """The hourly and presence tables that answer a read at resolution ``res``
        (``None``: no cells needed, per node only). The embedded store has one tier; a
        store over a lake also has coarse tables and overrides this."""
        return "cube_hourly", "cube_presence"

    def cube(self, scope: str, start: datetime, end: datetime, res: int = h3cells.BASE_RES,
             per_hour: bool = True) -> pl.DataFrame:
        """Cube figures within ``scope`` for ``start <= hour < end`` at resolution ``res``.

        Counts are summed; distinct couriers and vehicles are recounted from the
        presence table at the requested grain, so they are exact at every roll-up.

        Returns
        -------
        polars.DataFrame
            ``[hour,] cell, pings, couriers, vehicles, pickups, deliveries, on_time,
            late, scans``; ``cell`` at resolution ``res``.
        """
        self.check_scope(scope)
        hourly, presence = self.cube_sources(res)
        cell = h3cells.parent_sql("cell", res) if res < h3cells.BASE_RES else "cell"
        grain = ("hour, " if per_hour else "")
        counts = ", ".join(f"sum({c})::BIGINT AS {c}" for c in CUBE_COUNTS)
        scoped = "SEMI JOIN (SELECT branch_id FROM node_branches WHERE ancestor_id = $scope) s USING (branch_id)"
        q = f"""
            WITH c AS (
                SELECT {grain}{cell} AS cell, {counts} FROM {hourly} {scoped}
                WHERE hour >= $start AND hour < $end GROUP BY ALL),
            p AS (
                SELECT {grain}{cell} AS cell,
                       count(DISTINCT actor_id) FILTER (WHERE actor_kind = 'courier') AS couriers,
                       count(DISTINCT actor_id) FILTER (WHERE actor_kind = 'vehicle') AS vehicles
                FROM {presence} {scoped}
                WHERE hour >= $start AND hour < $end GROUP BY ALL)
            SELECT {grain}c.cell, c.pings, coalesce(p.couriers, 0)::BIGINT AS couriers,
                   coalesce(p.vehicles, 0)::BIGINT AS vehicles,
                   c.pickups, c.deliveries, c.on_time, c.late, c.scans
            FROM c LEFT JOIN p USING ({grain}cell)
            ORDER BY {grain}c.cell"""
        return self.cursor().sql(q, params={"scope": scope, "start": start, "end": end}).pl()

    def node_figures(self, scope: str, start: datetime, end: datetime,
                     level: str | None = None) -> pl.DataFrame:
        """Cube figures per node: the children of ``scope`` (or, with ``level``, every
        node of that level inside ``scope``), distinct counts recounted per node."""
        self.check_scope(scope)
        hourly, presence = self.cube_sources(None)
        counts = ", ".join(f"sum(c.{c})::BIGINT AS {c}" for c in CUBE_COUNTS)
        if level is None:
            pick = "n.parent_id = $scope"
        else:
            pick = ("n.level = $level AND n.node_id IN (SELECT ancestor_id FROM node_branches "
                    "WHERE branch_id IN (SELECT branch_id FROM node_branches WHERE ancestor_id = $scope))")
        q = f"""
            WITH targets AS (SELECT node_id, name FROM nodes n WHERE {pick}),
            nb AS (SELECT nb.ancestor_id AS node_id, nb.branch_id FROM node_branches nb
                   JOIN targets t ON t.node_id = nb.ancestor_id),
            c AS (SELECT nb.node_id, {counts} FROM {hourly} c JOIN nb USING (branch_id)
                  WHERE c.hour >= $start AND c.hour < $end GROUP BY ALL),
            p AS (SELECT nb.node_id,
                     count(DISTINCT actor_id) FILTER (WHERE actor_kind = 'courier') AS couriers,
                     count(DISTINCT actor_id) FILTER (WHERE actor_kind = 'vehicle') AS vehicles
                  FROM {presence} p JOIN nb USING (branch_id)
                  WHERE p.hour >= $start AND p.hour < $end GROUP BY ALL)
            SELECT t.node_id, t.name, {", ".join(f"coalesce(c.{x}, 0)::BIGINT AS {x}" for x in CUBE_COUNTS)},
                   coalesce(p.couriers, 0)::BIGINT AS couriers, coalesce(p.vehicles, 0)::BIGINT AS vehicles
            FROM targets t LEFT JOIN c USING (node_id) LEFT JOIN p USING (node_id)
            ORDER BY t.node_id"""
        params = {"scope": scope, "start": start, "end": end}
        if level is not None:
            params["level"] = level
        return self.cursor().sql(q, params=params).pl()

    def data_hours(self, scope: str) -> tuple[datetime | None, datetime | None]:
        """First and last hour with cube data inside ``scope``."""
        self.check_scope(scope)
        return self.cursor().execute(
            "SELECT min(hour), max(hour) FROM cube_hourly SEMI JOIN (SELECT branch_id FROM "
            "node_branches WHERE ancestor_id = ?) s USING (branch_id)", [scope]).fetchone()


def _bad_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows refused after validation, in the validator's bad-row shape."""
    raw_cols = [c for c in frame.columns if c not in ("_row", "reason", "cell", "branch_id",
                                                        "courier_id", "vehicle_id")]
    if frame.is_empty():
        return _empty_bad()
    return frame.select(
        pl.col("_row"), pl.col("reason"),
        pl.struct(raw_cols).struct.json_encode().alias("raw"))


def _empty_bad() -> pl.DataFrame:
    return pl.DataFrame(schema={"_row": pl.UInt32, "reason": pl.String, "raw": pl.String})
