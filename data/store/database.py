"""The embedded store: a DuckDB file holding the tree, the operations data and the cube.

Writes go through :class:`Store` methods that keep the hourly cube in step with the raw
tables (incrementally: only the cell-hours a batch touches are updated). Every method
that returns operations data takes the viewer's scope, a node id, as its first argument:
access control is a property of the data layer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import geopandas as gpd
import numpy as np
import polars as pl
import shapely

from data.store import tracking
from data.store.branches import branches_of, in_scope
from data.store.schema import CUBE_COUNTS, table_ddl, view_ddl
from geo import cells as h3cells
from geo.hierarchy import BranchLocator, branch_closure

#: Columns of the pings view in order.
PING_FIELDS = [
    "device_id",
    "ts",
    "lat",
    "lng",
    "speed",
    "heading",
    "accuracy",
    "courier_id",
    "vehicle_id",
    "cell",
    "branch_id",
]
#: Columns of ping_rows, where pings are stored, in order (ids as keys of id_keys).
PING_ROW_FIELDS = [
    "device_key",
    "ts",
    "lat",
    "lng",
    "speed",
    "heading",
    "accuracy",
    "courier_key",
    "vehicle_key",
    "cell",
    "branch_key",
]
EVENT_FIELDS = [
    "event_id",
    "parcel_id",
    "kind",
    "ts",
    "lat",
    "lng",
    "outlet_id",
    "courier_id",
    "promised_at",
    "dest_branch_id",
    "expected_at",
    "cell",
    "branch_id",
]


@dataclass(frozen=True)
class Record:
    """How one kind of operations record is stored."""

    table: str  # where its rows are stored
    ready: list[str]  # columns of its prepared rows (prepare_pings / prepare_events)
    stored: list[str]  # columns of ``table`` in order
    key: list[str]  # record id (dedupe key), columns of both


_RECORDS = {
    # prepared pings carry text ids (for the cube) and their keys (for ping_rows)
    "pings": Record(
        "ping_rows",
        PING_FIELDS + ["device_key", "courier_key", "vehicle_key", "branch_key"],
        PING_ROW_FIELDS,
        ["device_key", "ts"],
    ),
    "parcel_events": Record("parcel_events", EVENT_FIELDS, EVENT_FIELDS, ["event_id"]),
}
#: Reference tables and their id columns that ping_rows refers to by key.
_KEYED_IDS = {
    "devices": ("device_id", "courier_id", "vehicle_id"),
    "couriers": ("courier_id",),
    "vehicles": ("vehicle_id",),
    "nodes": ("node_id",),
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
        self.read_only = read_only
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # A bounded buffer pool: DuckDB would otherwise cache up to 80% of the machine's
        # memory, and the store shares the machine with the web server.
        self._con = duckdb.connect(str(self.path), read_only=read_only, config={"memory_limit": memory_limit})
        self._write_lock = threading.Lock()
        self._locator: BranchLocator | None = None
        self._cells = _CellBranchCache()
        self._devices: pl.DataFrame | None = None  # device -> courier / vehicle, dropped on upsert
        self._newest: _NewestFixes | None = None  # newest stored fix of each device (the writer's)
        self._node_ids: frozenset[str] | None = None  # every node id, dropped by save_tree
        self._node_keys: dict[str, int] | None = None  # node id -> key, dropped by save_tree
        if not read_only:
            for stmt in table_ddl():
                self._con.execute(stmt)
            self._con.execute("BEGIN")
            try:
                _migrate_pings(self._con)
                for table, columns in _KEYED_IDS.items():
                    _add_keys(self._con, table, columns)
                self._con.execute("COMMIT")
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            for stmt in view_ddl():
                self._con.execute(stmt)

    # -- plumbing ---------------------------------------------------------------------
    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for one thread's reads."""
        tracking.store_read()  # an answer read from it uncached is not kept (views/answers.py)
        return self._con.cursor()

    def close(self, patience: float = 15.0) -> None:
        """Close the store; a read still running on another thread (a request being
        answered while the server stops) is waited for, up to ``patience`` seconds."""
        deadline = time.monotonic() + patience
        while True:
            try:
                self._con.close()
                return
            except duckdb.Error as exc:
                if "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

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
        """Row count of each table (pings counted in their view, not as ``ping_rows``)."""
        names = [
            r[0]
            for r in self.cursor()
            .execute(
                "SELECT table_name FROM duckdb_tables() WHERE NOT temporary AND table_name <> 'ping_rows' "
                "UNION SELECT view_name FROM duckdb_views() WHERE NOT internal AND NOT temporary"
            )
            .fetchall()
        ]
        return {n: self.scalar(f"SELECT count(*) FROM {n}") for n in sorted(names)}

    def backup_to(self, path: str | Path) -> None:
        """Write a consistent copy of the whole store to a new DuckDB file at ``path``.

        The copy is one read transaction (a snapshot): ingest and the dashboard go on
        while it is taken, and it holds every commit acknowledged before it began.
        """
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} exists: a backup never overwrites a file")
        con = self.cursor()
        source = con.execute("SELECT current_database()").fetchone()[0]
        con.execute("ATTACH ? AS emap_backup", [str(path)])
        try:
            con.execute(f'COPY FROM DATABASE "{source}" TO emap_backup')
        finally:
            con.execute("DETACH emap_backup")

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
            _add_keys(self._con, "nodes", _KEYED_IDS["nodes"])
            self._con.execute("COMMIT")
        self._locator = None
        self._cells = _CellBranchCache()
        self._node_ids = None
        self._node_keys = None

    def nodes(self) -> pl.DataFrame:
        """Every node without geometry."""
        return self.sql("SELECT * EXCLUDE (territory, outline) FROM nodes ORDER BY node_id")

    def territories(self, node_ids: list[str], detail: str = "outline") -> gpd.GeoDataFrame:
        """Polygons of some nodes: ``outline`` (simplified, for drawing) or ``territory``."""
        col = "outline" if detail == "outline" else "territory"
        rows = (
            self.cursor()
            .execute(
                f"SELECT node_id, level, name, name_en, label_lat, label_lng, {col} AS wkb "
                "FROM nodes WHERE list_contains(?, node_id)",
                [list(node_ids)],
            )
            .fetchdf()
        )
        geoms = shapely.from_wkb(rows.pop("wkb").map(bytes).to_numpy())
        return gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4326")

    def check_scope(self, scope: str) -> None:
        """Raise :class:`ScopeError` unless ``scope`` is a node id.

        The ids are kept in memory (every scoped read checks its scope, several per
        view) until :meth:`save_tree` replaces the tree; only this store writes it.
        """
        ids = self._node_ids
        if ids is None:
            ids = frozenset(row[0] for row in self.cursor().execute("SELECT node_id FROM nodes").fetchall())
            if ids:  # an empty store keeps asking until it has a tree
                self._node_ids = ids
        if not isinstance(scope, str) or scope not in ids:
            raise ScopeError(f"unknown node {scope!r}")

    def locator(self) -> BranchLocator:
        if self._locator is None:
            b = (
                self.cursor()
                .execute("SELECT node_id, level, territory FROM nodes WHERE level = 'branch'")
                .fetchdf()
            )
            gdf = gpd.GeoDataFrame(
                b[["node_id", "level"]], geometry=shapely.from_wkb(b["territory"].map(bytes).to_numpy())
            )
            self._locator = BranchLocator(gdf)
        return self._locator

    def branches_of_cells(self, cells: np.ndarray) -> pl.Series:
        """Branch of each res-9 cell (the branch holding its centre), cached in the store.

        Only cells never seen before go through the spatial join, so a batch costs one
        join over its distinct cells, not one per point. Known cells are looked up in
        memory (sorted arrays), once per run of equal cells (a track's neighbouring
        fixes mostly share a cell); new ones reach the ``cell_branch`` table with the
        next write transaction, so every stored row's cell is in it.
        """
        codes, names = self._branch_codes(cells)
        return names.gather(codes).alias("branch_id")

    def _branch_codes(self, cells: np.ndarray) -> tuple[np.ndarray, pl.Series]:
        """:meth:`branches_of_cells` as ``(code of each cell, branch of each code)``."""
        cells = np.asarray(cells, dtype=np.uint64)
        cache = self._cells
        if not cache.loaded:
            cache.load(self.cursor().sql("SELECT cell, branch_id FROM cell_branch").pl())
        if cells.size == 0:
            return np.zeros(0, np.int32), pl.Series([None], dtype=pl.String)
        starts = _run_starts(pl.Series(cells))
        runs = cells[starts]
        codes, found, names = cache.lookup(runs)
        if not found.all():
            new = np.unique(runs[~found])
            lat, lng = h3cells.centers(new)
            cache.add(new, self.locator().locate(lat, lng).tolist())
            codes, found, names = cache.lookup(runs)
        return _per_row(codes, starts, cells.size), names

    def _branch_keys(self, names: list[str | None]) -> np.ndarray:
        """Key of each branch name (-1 for none: the rows outside every branch)."""
        keys = self.node_keys()
        if any(n is not None and n not in keys for n in names):
            self._node_keys = None  # a tree saved by another store object
            keys = self.node_keys()
            missing = [n for n in names if n is not None and n not in keys]
            if missing:
                raise RuntimeError(f"branches without a key in id_keys: {missing[:5]}")
        return np.array([keys[n] if n is not None else -1 for n in names], dtype=np.int32)

    def node_keys(self) -> dict[str, int]:
        """Key (``id_keys``) of every node id, kept in memory until the tree is saved again."""
        keys = self._node_keys
        if keys is None:
            keys = self._node_keys = dict(
                self.cursor()
                .execute("SELECT n.node_id, k.key FROM nodes n JOIN id_keys k ON k.id = n.node_id")
                .fetchall()
            )
        return keys

    def _flush_cells(self, con) -> list[pl.DataFrame]:
        """Write newly located cells to ``cell_branch`` inside the caller's transaction.
        Returns what was written, for :meth:`_CellBranchCache.unflush` on a rollback."""
        pending = self._cells.take_pending()
        for frame in pending:
            con.register("new_cells", frame)
            try:
                con.execute("INSERT INTO cell_branch SELECT cell, branch_id FROM new_cells")
            finally:
                con.unregister("new_cells")
        return pending

    # -- reference data -----------------------------------------------------------------
    def upsert(self, table: str, frame: pl.DataFrame, key: str) -> int:
        """Insert or replace rows of a reference table (outlets, couriers, vehicles, devices)."""
        if table not in ("outlets", "couriers", "vehicles", "devices"):
            raise ValueError(f"not a reference table: {table}")
        with self._write_lock:
            self._con.execute("BEGIN")
            self._con.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM frame)")
            self._con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM frame")
            _add_keys(self._con, table, _KEYED_IDS.get(table, ()))
            self._con.execute("COMMIT")
            if table == "devices":
                self._devices = None
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

        Ready rows hold the text ids and, for ``ping_rows``, their keys. Separate from
        :meth:`commit` so that a caller can prepare the next batch while the store
        writes this one.
        """
        if good.is_empty():
            return good.select("_row"), _empty_bad()
        good = good.with_columns(h3cells.cells_of(good["lat"], good["lng"]))
        good = pl.concat([good, self._owners_of(good["device_id"])], how="horizontal")
        codes, names = self._branch_codes(good["cell"].to_numpy())
        key_of_code = self._branch_keys(names.to_list())
        good = good.with_columns(
            names.gather(codes).alias("branch_id"), pl.Series("branch_key", key_of_code[codes])
        )
        reason = (
            pl.when(pl.col("courier_id").is_null() & pl.col("vehicle_id").is_null())
            .then(pl.concat_str(pl.lit("unknown device '"), pl.col("device_id"), pl.lit("'")))
            .when(pl.col("branch_id").is_null())
            .then(pl.lit("position outside every branch territory"))
        )
        good = good.with_columns(reason.alias("reason"))
        bad = _bad_rows(good.filter(pl.col("reason").is_not_null()))
        ok = good.filter(pl.col("reason").is_null()).select(["_row", *_RECORDS["pings"].ready])
        return ok, bad

    def _owners_of(self, devices: pl.Series) -> pl.DataFrame:
        """:meth:`device_owners` of each row's device, without ``device_id``, in row order.

        Files and batches list a device's fixes together, so each run of one device is
        joined once when runs are long (a join of every row otherwise).
        """
        owners = self.device_owners()
        starts = _run_starts(devices)
        if len(starts) > len(devices) // 4:
            return (
                devices.to_frame("device_id")
                .join(owners, on="device_id", how="left", maintain_order="left")
                .drop("device_id")
            )
        heads = (
            devices.gather(starts)
            .to_frame("device_id")
            .join(owners, on="device_id", how="left", maintain_order="left")
            .drop("device_id")
        )
        return heads[_per_row(np.arange(len(heads)), starts, len(devices))]

    def device_owners(self) -> pl.DataFrame:
        """``device_id, courier_id, vehicle_id`` of every device, with their keys
        (``device_key, courier_key, vehicle_key``), kept in memory until the next
        :meth:`upsert` of devices (every ingest commit needs it)."""
        devices = self._devices
        if devices is None:
            devices = self._devices = self.sql("""
                SELECT d.device_id, d.courier_id, d.vehicle_id,
                       kd.key AS device_key, kc.key AS courier_key, kv.key AS vehicle_key
                FROM devices d JOIN id_keys kd ON kd.id = d.device_id
                LEFT JOIN id_keys kc ON kc.id = d.courier_id LEFT JOIN id_keys kv ON kv.id = d.vehicle_id""")
        return devices

    def prepare_events(self, good: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Cell and branch of validated parcel events: ``(ready rows, refused rows)``."""
        if good.is_empty():
            return good.select("_row"), _empty_bad()
        good = good.with_columns(h3cells.cells_of(good["lat"], good["lng"]))
        good = good.with_columns(self.branches_of_cells(good["cell"].to_numpy()).alias("branch_id"))
        good = good.with_columns(
            pl.when(pl.col("branch_id").is_null())
            .then(pl.lit("position outside every branch territory"))
            .alias("reason")
        )
        bad = _bad_rows(good.filter(pl.col("reason").is_not_null()))
        ok = good.filter(pl.col("reason").is_null()).select(["_row", *EVENT_FIELDS])
        return ok, bad

    def commit(self, table: str, ready: pl.DataFrame) -> tuple[int, int]:
        """Store prepared rows of ``pings`` or ``parcel_events`` now: ``(stored, duplicates)``.

        One transaction: the new rows (record id not stored yet; the first of a repeated
        id) are stored with their cube update, or nothing is. The cube delta is worked
        out in polars, so a call costs a handful of statements however many requests a
        group commit holds.
        """
        return self.commit_batch(Batch.of(table, ready))

    def commit_batch(self, batch: Batch) -> tuple[int, int]:
        """:meth:`commit` of rows whose polars work was done before (:meth:`Batch.of`),
        outside the write lock: by the ingest writer's preparer, beside a commit."""
        table, rows = batch.table, batch.rows
        if rows.is_empty():
            return 0, batch.received
        record = _RECORDS[table]
        with self._write_lock:
            con = self._con
            flushed: list[pl.DataFrame] = []
            con.execute("BEGIN")
            newest = None
            try:
                flushed = self._flush_cells(con)
                if table == "pings":
                    newest = self._newest_fixes(con)
                    fresh = self._drop_stored(con, table, rows, maybe=newest.maybe_stored(rows))
                else:
                    fresh = self._drop_stored(con, table, rows)
                self._append(con, record, fresh)
                # the cube rows of the batch hold for the fresh rows unless some were repeats
                cube = batch.cube if len(fresh) == len(rows) else cube_tables(*cube_parts(table, fresh))
                self._merge_cube_rows(con, *cube)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                self._cells.unflush(flushed)
                raise
            if newest is not None:
                self._newest = newest.after(fresh)
        return len(fresh), batch.received - len(fresh)

    def _newest_fixes(self, con) -> _NewestFixes:
        """The newest stored fix of each device, as of the caller's transaction (which
        holds the write lock). Kept from the commit before while ``ping_rows`` holds the
        rows it knew of; read again when anything else stored pings (a file import)."""
        rows = con.execute("SELECT count(*) FROM ping_rows").fetchall()[0][0]
        known = self._newest
        if known is None or known.rows != rows:
            newest = con.sql("SELECT device_key, max(ts) AS newest FROM ping_rows GROUP BY ALL").pl()
            known = _NewestFixes(rows, newest.cast({"device_key": pl.Int32, "newest": pl.Datetime("us")}))
        return known

    def stage(self, table: str, ready: pl.DataFrame) -> None:
        """Append prepared rows to a staging table; nothing is visible until
        :meth:`commit_staged`. File import stages every batch and stores them once, so
        dedupe and cube work is one pass over the file instead of one per batch."""
        if ready.is_empty():
            return
        fields = _RECORDS[table].ready
        with self._write_lock:
            self._con.register("incoming_batch", ready.select(fields))
            try:
                self._con.execute(
                    f"CREATE TEMP TABLE IF NOT EXISTS stage_{table} AS SELECT * FROM incoming_batch LIMIT 0"
                )
                self._con.execute(f"INSERT INTO stage_{table} SELECT * FROM incoming_batch")
            finally:
                self._con.unregister("incoming_batch")

    def commit_staged(self, table: str) -> tuple[int, int]:
        """Store what :meth:`stage` collected: ``(stored, duplicates)``; empties the stage."""
        if table not in _RECORDS:
            raise ValueError(f"not an operations table: {table}")
        with self._write_lock:
            exists = self._con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?", [f"stage_{table}"]
            ).fetchone()[0]
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
        record = _RECORDS[table]
        keys = ", ".join(record.key)
        on = " AND ".join(f"b.{k} = t.{k}" for k in record.key)
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
            f"SELECT count(*), (SELECT count(*) FROM (SELECT DISTINCT {keys} FROM {source})) FROM {source}"
        ).fetchone()
        clash = con.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {source} b WHERE EXISTS "
            f"(SELECT 1 FROM {record.table} t WHERE {on}{window}) LIMIT 1)"
        ).fetchone()[0]
        con.execute("BEGIN")
        flushed: list[pl.DataFrame] = []
        try:
            flushed = self._flush_cells(con)
            if total == distinct and not clash:
                fresh, stored = source, total
            else:
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE fresh AS "
                    f"SELECT * FROM (SELECT DISTINCT ON ({keys}) * FROM {source}) b "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {record.table} t WHERE {on}{window})"
                )
                fresh = "fresh"
                stored = con.execute("SELECT count(*) FROM fresh").fetchone()[0]
            con.execute(f"INSERT INTO {record.table} SELECT {', '.join(record.stored)} FROM {fresh}")
            if table == "pings":
                self._cube_add_pings(con, fresh)
            else:
                self._cube_add_events(con, fresh)
            con.execute("DROP TABLE IF EXISTS fresh")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            self._cells.unflush(flushed)
            raise
        return stored

    @staticmethod
    def _cube_merge(con, delta_sql: str) -> None:
        """Add a delta (same columns as the cube's counts) into cube_hourly."""
        con.execute(f"CREATE OR REPLACE TEMP TABLE delta AS {delta_sql}")
        sets = ", ".join(f"{c} = cube_hourly.{c} + d.{c}" for c in CUBE_COUNTS)
        con.execute(
            f"UPDATE cube_hourly SET {sets} FROM delta d WHERE cube_hourly.hour = d.hour "
            "AND cube_hourly.cell = d.cell AND cube_hourly.branch_id = d.branch_id"
        )
        con.execute(
            "INSERT INTO cube_hourly BY NAME SELECT d.*, 0 AS couriers, 0 AS vehicles "
            "FROM delta d ANTI JOIN cube_hourly c USING (hour, cell, branch_id)"
        )
        con.execute("DROP TABLE delta")

    def _cube_add_pings(self, con, fresh: str) -> None:
        self._cube_merge(
            con,
            f"""
            SELECT date_trunc('hour', ts) AS hour, cell, branch_id, count(*) AS pings,
                   0 AS pickups, 0 AS deliveries, 0 AS on_time, 0 AS late, 0 AS scans
            FROM {fresh} GROUP BY ALL""",
        )
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
        self._cube_merge(
            con,
            f"""
            SELECT date_trunc('hour', ts) AS hour, cell, branch_id, 0 AS pings,
                   count(*) FILTER (WHERE kind = 'pickup') AS pickups,
                   count(*) FILTER (WHERE kind = 'delivered') AS deliveries,
                   count(*) FILTER (WHERE kind = 'delivered' AND ts <= promised_at) AS on_time,
                   count(*) FILTER (WHERE kind = 'delivered' AND ts > promised_at) AS late,
                   count(*) AS scans
            FROM {fresh} GROUP BY ALL""",
        )

    @staticmethod
    def _drop_stored(con, table: str, rows: pl.DataFrame, maybe: pl.DataFrame | None = None) -> pl.DataFrame:
        """``rows`` without those whose record id ``table`` already holds, as ``con`` sees it.

        ``maybe``: the record ids among ``rows`` that may be stored (the others are known
        to be new); only those are looked for (default: all of them).
        """
        if rows.is_empty():
            return rows
        record = _RECORDS[table]
        key = record.key
        keys = ", ".join(key)
        look_for = rows.select(key) if maybe is None else maybe
        if look_for.is_empty():
            return rows
        where, params = "", None
        if table == "pings":
            # A ping's key includes its time, so only rows in the batch's time window can
            # match; the window lets DuckDB skip row groups of other days (zone maps).
            lo, hi = look_for.select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi")).row(0)
            where, params = "WHERE t.ts BETWEEN $lo AND $hi", {"lo": lo, "hi": hi}
        con.register("new_keys", look_for)
        try:
            found = con.execute(
                f"SELECT {keys} FROM {record.table} t SEMI JOIN new_keys USING ({keys}) {where}", params
            ).fetchall()
        finally:
            con.unregister("new_keys")
        if not found:
            return rows
        stored = pl.DataFrame(found, schema=rows.select(key).schema, orient="row")
        return rows.join(stored, on=key, how="anti", maintain_order="left")

    @staticmethod
    def _append(con, record: Record, rows: pl.DataFrame) -> None:
        if rows.is_empty():
            return
        con.register("new_rows", rows.select(record.stored))
        try:
            con.execute(f"INSERT INTO {record.table} SELECT * FROM new_rows")
        finally:
            con.unregister("new_rows")

    @staticmethod
    def _merge_cube(con, delta: pl.DataFrame, presence: pl.DataFrame | None) -> None:
        """Add a cube delta (parts of :func:`cube_parts`) into cube_hourly.

        With ``presence`` (pings) its new rows go to cube_presence and the distinct
        couriers and vehicles of every touched cell-hour are recounted from there, never
        added up. The caller holds the write lock inside a transaction.
        """
        if not delta.is_empty():
            Store._merge_cube_rows(con, *cube_tables(delta, presence))

    @staticmethod
    def _merge_cube_rows(con, delta: pl.DataFrame, presence: pl.DataFrame | None) -> None:
        """:meth:`_merge_cube` of parts already made rows of the tables (:func:`cube_tables`)."""
        if delta.is_empty():
            return
        lo, hi = delta.select(pl.col("hour").min().alias("lo"), pl.col("hour").max().alias("hi")).row(0)
        window = {"lo": lo, "hi": hi}
        counts = [c for c in CUBE_COUNTS if c in delta.columns]
        con.register("cube_delta", delta)
        try:
            if presence is not None:
                con.register("new_presence", presence)
                try:
                    con.execute(
                        """
                        INSERT INTO cube_presence
                        SELECT n.hour, n.cell, n.branch_id, n.actor_id, n.actor_kind FROM new_presence n
                        ANTI JOIN (SELECT hour, cell, branch_id, actor_id FROM cube_presence
                                   WHERE hour BETWEEN $lo AND $hi) p USING (hour, cell, branch_id, actor_id)""",
                        window,
                    )
                finally:
                    con.unregister("new_presence")
                source = """(
                    SELECT d.*, coalesce(r.couriers, 0) AS couriers, coalesce(r.vehicles, 0) AS vehicles
                    FROM cube_delta d LEFT JOIN (
                        SELECT hour, cell, branch_id,
                               count(*) FILTER (WHERE actor_kind = 'courier') AS couriers,
                               count(*) FILTER (WHERE actor_kind = 'vehicle') AS vehicles
                        FROM cube_presence SEMI JOIN cube_delta USING (hour, cell, branch_id)
                        WHERE hour BETWEEN $lo AND $hi GROUP BY ALL) r USING (hour, cell, branch_id))"""
                recount, distinct, params = (
                    ", couriers = d.couriers, vehicles = d.vehicles",
                    ["d.couriers", "d.vehicles"],
                    window,
                )
            else:
                source, recount, distinct, params = "cube_delta", "", ["0", "0"], None
            adds = ", ".join(f"{c} = c.{c} + d.{c}" for c in counts)
            names = ["hour", "cell", "branch_id", *CUBE_COUNTS, "couriers", "vehicles"]
            values = [
                "d.hour",
                "d.cell",
                "d.branch_id",
                *(f"d.{c}" if c in counts else "0" for c in CUBE_COUNTS),
                *distinct,
            ]
            con.execute(
                f"""
                MERGE INTO cube_hourly c USING {source} AS d
                ON c.hour = d.hour AND c.cell = d.cell AND c.branch_id = d.branch_id
                WHEN MATCHED THEN UPDATE SET {adds}{recount}
                WHEN NOT MATCHED THEN INSERT ({", ".join(names)}) VALUES ({", ".join(values)})""",
                params,
            )
        finally:
            con.unregister("cube_delta")

    # -- scoped reads -------------------------------------------------------------------
    def cube_sources(self, res: int | None) -> tuple[str, str]:
        """The hourly and presence tables that answer a read at resolution ``res``
        (``None``: no cells needed, per node only). The embedded store has one tier; a
        store over a lake also has coarse tables and overrides this."""
        return "cube_hourly", "cube_presence"

    def cube(
        self, scope: str, start: datetime, end: datetime, res: int = h3cells.BASE_RES, per_hour: bool = True
    ) -> pl.DataFrame:
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
        grain = "hour, " if per_hour else ""
        counts = ", ".join(f"sum({c})::BIGINT AS {c}" for c in CUBE_COUNTS)
        scoped = in_scope()
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

    def node_figures(
        self, scope: str, start: datetime, end: datetime, level: str | None = None
    ) -> pl.DataFrame:
        """Cube figures per node: the children of ``scope`` (or, with ``level``, every
        node of that level inside ``scope``), distinct counts recounted per node."""
        self.check_scope(scope)
        hourly, presence = self.cube_sources(None)
        counts = ", ".join(f"sum(c.{c})::BIGINT AS {c}" for c in CUBE_COUNTS)
        if level is None:
            pick = "n.parent_id = $scope"
        else:
            pick = (
                "n.level = $level AND n.node_id IN (SELECT ancestor_id FROM node_branches "
                f"WHERE branch_id IN {branches_of()})"
            )
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

    def data_hours(
        self, scope: str, start: datetime | None = None, end: datetime | None = None
    ) -> tuple[datetime | None, datetime | None]:
        """First and last hour with cube data inside ``scope`` (within ``[start, end)``
        when given: a store may hold a stray hour centuries away, and readers keep to
        the plausible window)."""
        self.check_scope(scope)
        return (
            self.cursor()
            .execute(
                f"SELECT min(hour), max(hour) FROM {self.cube_sources(None)[0]} {in_scope('?')} "
                "WHERE hour >= coalesce(?, hour) AND hour < coalesce(?, hour + INTERVAL 1 HOUR)",
                [scope, start, end],
            )
            .fetchone()
        )

    def recent_hours(self, scope: str, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """The newest ``limit`` distinct hours with cube data inside ``scope`` within
        ``[start, end)``, newest first."""
        self.check_scope(scope)
        rows = (
            self.cursor()
            .execute(
                f"SELECT DISTINCT hour FROM {self.cube_sources(None)[0]} {in_scope('?')} WHERE hour >= ? AND hour < ? "
                "ORDER BY hour DESC LIMIT ?",
                [scope, start, end, int(limit)],
            )
            .fetchall()
        )
        return [r[0] for r in rows]


def _bad_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows refused after validation, in the validator's bad-row shape."""
    added = (
        "_row",
        "reason",
        "cell",
        "branch_id",
        "courier_id",
        "vehicle_id",
        "device_key",
        "courier_key",
        "vehicle_key",
        "branch_key",
    )
    raw_cols = [c for c in frame.columns if c not in added]
    if frame.is_empty():
        return _empty_bad()
    return frame.select(
        pl.col("_row"), pl.col("reason"), pl.struct(raw_cols).struct.json_encode().alias("raw")
    )


def _empty_bad() -> pl.DataFrame:
    return pl.DataFrame(schema={"_row": pl.UInt32, "reason": pl.String, "raw": pl.String})


def _unique_keys(rows: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    """The first row of each record id (a batch may repeat a record)."""
    if rows.height > 1 and rows.n_unique(subset=key) < rows.height:
        return rows.unique(key, keep="first", maintain_order=True)
    return rows


def _hour_cell_key() -> pl.Expr:
    """``hour * 2**34 + the cell's variable bits`` (Int64; hours may be negative): an
    hour and a res-9 cell in one integer, so that a group-by runs on one column, which
    costs a good deal less than on the (hour, cell) pair."""
    hour = pl.col("ts").dt.epoch("us") // 3_600_000_000
    return (hour * (1 << h3cells.BASE_CELL_BITS) + h3cells.base_bits_expr("cell")).alias("key")


def unpack_hour_cell(key: str = "key") -> list[pl.Expr]:
    """``hour`` (Int32) and ``cell`` (UInt64) back from :func:`_hour_cell_key`."""
    hour = pl.col(key) // (1 << h3cells.BASE_CELL_BITS)  # floor division: right for negative hours too
    cell = h3cells.from_base_bits_expr(pl.col(key) - hour * (1 << h3cells.BASE_CELL_BITS))
    return [hour.cast(pl.Int32).alias("hour"), cell.alias("cell")]


def distinct_pairs(pairs: pl.DataFrame) -> pl.DataFrame:
    """Distinct rows of ``key`` (Int64) and ``a`` (an actor code, UInt32).

    The pairs pack into one integer (key offset in the high bits, the code in as many
    low bits as the largest code needs) when the key range leaves room: always unless
    the rows span years. A distinct over one integer column costs about half as much as
    over the pair.
    """
    lo, span, top = pairs.select(
        pl.col("key").min(),
        (pl.col("key").max() - pl.col("key").min()).alias("span"),
        pl.col("a").max().alias("top"),
    ).row(0)
    if lo is None:
        return pairs.select("key", "a")
    shift = max(int(top or 0), 1).bit_length()
    if span >= 1 << (62 - shift):
        return pairs.select("key", "a").unique()
    packed = pairs.select(((pl.col("key") - lo) * (1 << shift) + pl.col("a").cast(pl.Int64)).alias("p"))
    return (
        packed["p"]
        .unique()
        .to_frame()
        .select(
            (pl.col("p") // (1 << shift) + lo).alias("key"),
            (pl.col("p") % (1 << shift)).cast(pl.UInt32).alias("a"),
        )
    )


@dataclass
class CubeShare:
    """The cube delta of some rows, packed: what :meth:`Store._merge_cube` adds, in the
    compact form that cheap group-bys and folds need.

    ``delta``: ``key`` (:func:`_hour_cell_key`), ``branch_id`` and the counts; for pings
    also ``pairs`` (distinct ``key, a``: actor ``a`` seen in the cell-hour) and
    ``actors`` (``a, actor_id, is_vehicle``). Actor codes are the physical codes of
    polars' global categories, the same in every frame of the process, so the shares
    of several batches fold together (:meth:`fold`).
    """

    delta: pl.DataFrame
    pairs: pl.DataFrame | None = None
    actors: pl.DataFrame | None = None

    @staticmethod
    def fold(shares: list[CubeShare]) -> CubeShare:
        """One share holding the sums and distinct pairs of ``shares``."""
        if len(shares) == 1:
            return shares[0]
        delta = pl.concat([s.delta for s in shares])
        counts = [c for c in delta.columns if c not in ("key", "branch_id")]
        delta = delta.group_by("key").agg(pl.col("branch_id").first(), *(pl.col(c).sum() for c in counts))
        if shares[0].pairs is None:
            return CubeShare(delta)
        pairs = distinct_pairs(pl.concat([s.pairs for s in shares]))
        actors = pl.concat([s.actors for s in shares]).unique("a")
        return CubeShare(delta, pairs, actors)

    def rows(self) -> int:
        """Rows held (cell-hours and actor pairs)."""
        return self.delta.height + (0 if self.pairs is None else self.pairs.height)

    def unpacked(self) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """``(counts per hour and cell, presence)`` as :func:`cube_parts` gives them."""
        delta = self.delta.select(*unpack_hour_cell(), pl.exclude("key"))
        if self.pairs is None:
            return delta, None
        presence = (
            self.pairs.join(self.actors, on="a", how="left")
            .join(self.delta.select("key", "branch_id"), on="key", how="left")
            .select(*unpack_hour_cell(), "branch_id", "actor_id", "is_vehicle")
        )
        return delta, presence

    def actor_counts(self) -> pl.DataFrame:
        """``key, couriers, vehicles``: distinct couriers and vans per cell-hour of the
        pairs (the whole count only when the pairs are all there is in those hours)."""
        return (
            self.pairs.join(self.actors.select("a", "is_vehicle"), on="a", how="left")
            .group_by("key")
            .agg(
                (~pl.col("is_vehicle")).sum().cast(pl.Int32).alias("couriers"),
                pl.col("is_vehicle").sum().cast(pl.Int32).alias("vehicles"),
            )
        )


def cube_share(table: str, rows: pl.DataFrame) -> CubeShare:
    """The packed cube delta of new rows (see :class:`CubeShare`).

    ``rows`` hold res-9 cells (as every stored ping and event does). Compact keys keep
    the group-bys cheap: hour and cell pack into one integer (:func:`_hour_cell_key`),
    the branch rides along as the first of its cell (a cell's branch is the one holding
    its centre, one per cell), actors are categorical.
    """
    branch = pl.col("branch_id").first()
    if table == "pings":
        keyed = rows.select(
            _hour_cell_key(),
            "branch_id",
            pl.coalesce("courier_id", "vehicle_id").cast(pl.Categorical).alias("actor_id"),
            pl.col("courier_id").is_null().alias("is_vehicle"),
        )
        keyed = keyed.with_columns(pl.col("actor_id").to_physical().cast(pl.UInt32).alias("a"))
        delta = keyed.group_by("key").agg(branch, pl.len().cast(pl.Int64).alias("pings"))
        actors = keyed.select("a", "actor_id", "is_vehicle").unique("a")
        return CubeShare(delta, distinct_pairs(keyed), actors)
    delivered = pl.col("kind") == "delivered"
    delta = rows.group_by(_hour_cell_key()).agg(
        branch,
        (pl.col("kind") == "pickup").sum().cast(pl.Int64).alias("pickups"),
        delivered.sum().cast(pl.Int64).alias("deliveries"),
        (delivered & (pl.col("ts") <= pl.col("promised_at"))).sum().cast(pl.Int64).alias("on_time"),
        (delivered & (pl.col("ts") > pl.col("promised_at"))).sum().cast(pl.Int64).alias("late"),
        pl.len().cast(pl.Int64).alias("scans"),
    )
    return CubeShare(delta)


@dataclass(frozen=True)
class Batch:
    """Prepared rows of ``pings`` or ``parcel_events`` for :meth:`Store.commit_batch`: one
    row per record id, and the cube rows they add (:func:`cube_tables`). Pure polars work,
    made outside the write lock."""

    table: str
    rows: pl.DataFrame
    cube: tuple[pl.DataFrame, pl.DataFrame | None]
    received: int  # rows prepared, repeats within them included

    @staticmethod
    def of(table: str, ready: pl.DataFrame) -> Batch:
        """The batch of ``ready`` (:meth:`Store.prepare_pings` / ``prepare_events`` rows)."""
        if table not in _RECORDS:
            raise ValueError(f"not an operations table: {table}")
        record = _RECORDS[table]
        rows = _unique_keys(ready.select(record.ready), record.key) if not ready.is_empty() else ready
        cube = cube_tables(*cube_parts(table, rows)) if not rows.is_empty() else (pl.DataFrame(), None)
        return Batch(table, rows, cube, len(ready))


@dataclass(frozen=True)
class _NewestFixes:
    """The newest stored fix of each device (``device_key``, ``newest``), as of a
    ``ping_rows`` of ``rows`` rows.

    A fix newer than its device's newest stored one (or of a device with none) cannot be
    a repeat: live fixes almost all are, so a commit looks for repeats in ``ping_rows``
    only among the few others. Without it, the look spans the time window of the whole
    group: one phone's fix buffered for an hour makes a commit scan an hour of every
    device's fixes. In ``bench/bench_live.py`` (batches and phones a few minutes apart)
    that look was the largest part of a commit while people used the dashboard.
    """

    rows: int
    newest: pl.DataFrame

    def maybe_stored(self, fixes: pl.DataFrame) -> pl.DataFrame:
        """``device_key, ts`` of the ``fixes`` not newer than their device's newest."""
        return (
            fixes.select(pl.col("device_key").cast(pl.Int32), pl.col("ts").cast(pl.Datetime("us")))
            .join(self.newest, on="device_key", how="inner")
            .filter(pl.col("ts") <= pl.col("newest"))
            .select("device_key", "ts")
        )

    def after(self, stored: pl.DataFrame) -> _NewestFixes:
        """As it is once ``stored`` (new rows of ``ping_rows``) are committed."""
        if stored.is_empty():
            return self
        added = stored.group_by(pl.col("device_key").cast(pl.Int32)).agg(
            pl.col("ts").cast(pl.Datetime("us")).max().alias("newest")
        )
        newest = pl.concat([self.newest, added]).group_by("device_key").agg(pl.col("newest").max())
        return _NewestFixes(self.rows + len(stored), newest)


def cube_parts(table: str, rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """The cube delta of new rows, ``(counts per hour and cell, presence)``.

    ``hour`` counts hours since 1970 (Int32); presence (one row per distinct courier or
    van in a cell-hour, with the cell's branch) is there for pings only.
    :meth:`Store._merge_cube` stores them.
    """
    return cube_share(table, rows).unpacked()


def cube_tables(delta: pl.DataFrame, presence: pl.DataFrame | None):
    """Cube parts (of :func:`cube_parts`) as rows of cube_hourly and cube_presence
    (timestamps, text), columns in the tables' order."""
    hour = pl.from_epoch(pl.col("hour").cast(pl.Int64) * 3600, time_unit="s").cast(pl.Datetime("us"))
    rows = delta.with_columns(hour)
    if presence is None:
        return rows, None
    presence = presence.select(
        hour,
        "cell",
        "branch_id",
        pl.col("actor_id").cast(pl.String),
        pl.when(pl.col("is_vehicle"))
        .then(pl.lit("vehicle"))
        .otherwise(pl.lit("courier"))
        .alias("actor_kind"),
    )
    return rows, presence


def _run_starts(values: pl.Series) -> np.ndarray:
    """Index of the first row of each run of equal values."""
    return (values != values.shift(1)).fill_null(True).arg_true().to_numpy()


def _per_row(per_run: np.ndarray, starts: np.ndarray, rows: int) -> np.ndarray:
    """A value per run (:func:`_run_starts`) repeated over the run's rows."""
    return np.repeat(per_run, np.diff(starts, append=rows))


def _add_keys(con, table: str, columns: tuple[str, ...]) -> None:
    """Give a key in ``id_keys`` to every id in ``columns`` of ``table`` that has none.

    Keys are handed out in the writer's transaction (the caller holds the write lock),
    so every id has exactly one; ids of rows deleted later keep theirs.
    """
    if not columns:
        return
    ids = " UNION ".join(f"SELECT {c} AS id FROM {table} WHERE {c} IS NOT NULL" for c in columns)
    con.execute(f"""
        INSERT INTO id_keys
        SELECT (SELECT coalesce(max(key), 0) FROM id_keys) + row_number() OVER (ORDER BY id), id
        FROM ({ids}) new ANTI JOIN id_keys USING (id)""")


def _migrate_pings(con) -> None:
    """Move the pings of a store made before ``ping_rows`` (a table with text ids in
    every row) into ping_rows; the ``pings`` view then takes the table's place."""
    old = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'pings' "
        "AND schema_name = 'main' AND NOT temporary"
    ).fetchone()[0]
    if not old:
        return
    _add_keys(con, "pings", ("device_id", "courier_id", "vehicle_id", "branch_id"))
    con.execute("""
        INSERT INTO ping_rows
        SELECT d.key, p.ts, p.lat, p.lng, p.speed, p.heading, p.accuracy, c.key, v.key, p.cell, b.key
        FROM pings p JOIN id_keys d ON d.id = p.device_id JOIN id_keys b ON b.id = p.branch_id
        LEFT JOIN id_keys c ON c.id = p.courier_id LEFT JOIN id_keys v ON v.id = p.vehicle_id""")
    con.execute("DROP TABLE pings")


class _CellBranchCache:
    """Branch of every located res-9 cell, in memory (sorted cells, branch codes).

    Thread-safe. Cells located since the last write transaction wait in a pending
    list that the next one writes to ``cell_branch``.
    """

    def __init__(self):
        self.loaded = False
        self._lock = threading.Lock()
        self._names: list[str | None] = [None]
        # replaced as a whole, so readers take one consistent snapshot without the lock
        self._state = (np.empty(0, np.uint64), np.empty(0, np.int32), pl.Series([None], dtype=pl.String))
        self._pending: list[pl.DataFrame] = []

    def load(self, frame: pl.DataFrame) -> None:
        with self._lock:
            if not self.loaded:
                self._merge(frame["cell"].to_numpy().astype(np.uint64), frame["branch_id"])
                self.loaded = True

    def _merge(self, cells: np.ndarray, branches: pl.Series) -> None:
        """Add cells (the caller holds the lock; none of them is known yet)."""
        for name in branches.unique().drop_nulls().to_list():
            if name not in self._names:
                self._names.append(name)
        mapping = pl.DataFrame(
            {"b": self._names[1:], "code": np.arange(1, len(self._names), dtype=np.int32)},
            schema={"b": pl.String, "code": pl.Int32},
        )
        codes = (
            pl.DataFrame({"b": branches.cast(pl.String)})
            .join(mapping, on="b", how="left", maintain_order="left")["code"]
            .fill_null(0)
            .to_numpy()
        )
        old_cells, old_codes, _ = self._state
        all_cells = np.concatenate([old_cells, cells])
        all_codes = np.concatenate([old_codes, codes.astype(np.int32)])
        order = np.argsort(all_cells, kind="stable")
        self._state = (all_cells[order], all_codes[order], pl.Series(self._names, dtype=pl.String))

    def lookup(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, pl.Series]:
        """``(branch code of each cell, whether the cell is known, branch of each code)``;
        unknown cells get code 0, whose branch is null."""
        known, codes, names = self._state
        if len(known) == 0:
            return np.zeros(len(cells), np.int32), np.zeros(len(cells), bool), names
        idx = np.minimum(np.searchsorted(known, cells), len(known) - 1)
        found = known[idx] == cells
        return np.where(found, codes[idx], 0), found, names

    def add(self, cells: np.ndarray, branches: list[str | None]) -> None:
        """Newly located cells (another thread may have located some of them too)."""
        with self._lock:
            _, found, _ = self.lookup(cells)
            frame = pl.DataFrame(
                {
                    "cell": cells[~found],
                    "branch_id": pl.Series(branches, dtype=pl.String).filter(pl.Series(~found)),
                },
                schema={"cell": pl.UInt64, "branch_id": pl.String},
            )
            if frame.is_empty():
                return
            self._merge(frame["cell"].to_numpy(), frame["branch_id"])
            self._pending.append(frame)

    def take_pending(self) -> list[pl.DataFrame]:
        with self._lock:
            pending, self._pending = self._pending, []
        return pending

    def unflush(self, frames: list[pl.DataFrame]) -> None:
        """Put back cells whose write was rolled back."""
        if frames:
            with self._lock:
                self._pending = frames + self._pending
