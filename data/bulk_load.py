"""Bulk load: one file's pings or parcel events stored in one transaction, optimistically.

Files rarely repeat a record, so the import does not pay up front for the case where
they do. Rows go straight into their table inside one open transaction (nothing is
visible to readers until the end) while a 64-bit hash of each record id and the
file's cube share, worked out per batch in polars, are kept aside. Two checks keep
this exact:

* before a batch is inserted, its record ids are looked up among the rows committed
  before the load began (skipped when its time window misses their time span, as for
  a new day);
* at the end, the hashes of the whole file must all differ.

If either finds a record id twice (or two hashes collide), :class:`Clash` is raised,
the transaction is rolled back, and the caller imports the file again on the path that
deduplicates every row (:meth:`data.store.Store.stage`). A clean file is therefore
written once, with no staging copy, no distinct over all its keys and no second scan
for the cube; into hours the cube does not hold yet, its cube rows are appended as
they are.

This module works on the store's connection, lock and cube merge: it is the store's
bulk path, kept in a module of its own.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from data.schema import CUBE_COUNTS
from data.store import _RECORDS, Store, cube_parts

#: Batches whose cube counts are kept before they are folded into one frame (bounds memory).
_FOLD_EVERY = 8
#: The cube's hour (a timestamp) from the hours-since-1970 of a kept row of table ``t``.
_HOUR_SQL = "make_timestamp({t}.hour::BIGINT * 3600000000) AS hour"


class Clash(Exception):
    """A record id of the file is already stored, or the file holds it twice."""


def record_hashes(table: str, rows: pl.DataFrame) -> np.ndarray:
    """64-bit hash of each row's record id (``uint64``; equal ids give equal hashes)."""
    _fields, key = _RECORDS[table]
    return rows.select(key).hash_rows(seed=0x5EED).to_numpy()


class BulkLoad:
    """Rows of one file for ``pings`` or ``parcel_events``, committed together.

    :meth:`prepare` is pure and may run in another thread (the one reading and
    validating the next batch); :meth:`add`, :meth:`finish` and :meth:`abort` run in
    the writing thread, which holds the store's write lock from the first
    :meth:`add` to the end.

    Examples
    --------
    >>> load = BulkLoad(store, "pings")              # doctest: +SKIP
    >>> for ready in batches:                        # doctest: +SKIP
    ...     load.add(ready, load.prepare(ready))
    >>> stored = load.finish()                       # doctest: +SKIP
    """

    def __init__(self, store: Store, table: str):
        if table not in _RECORDS:
            raise ValueError(f"not an operations table: {table}")
        self.store, self.table = store, table
        self.fields, self.key = _RECORDS[table]
        self.rows = 0
        self._lo = self._hi = None
        self._end = 0
        self._hashes: list[np.ndarray] = []
        self._deltas: list[pl.DataFrame] = []
        self._open = False

    # -- reader side ------------------------------------------------------------------
    def prepare(self, ready: pl.DataFrame):
        """The record-id hashes and cube share of ``ready`` (pure; any thread)."""
        if ready.is_empty():
            return None
        delta, presence = cube_parts(self.table, ready)
        # sorted here, in the workers: finish() then only merges sorted runs, which is quick
        return np.sort(record_hashes(self.table, ready)), delta, presence

    # -- writer side ------------------------------------------------------------------
    def add(self, ready: pl.DataFrame, parts) -> None:
        """Insert ``ready`` (in the open transaction) with what :meth:`prepare` gave."""
        if parts is None:
            return
        hashes, delta, presence = parts
        if not self._open:
            self._begin()
        self._check_committed(ready)
        # Through a relation, not a registered view: a view registered inside the open
        # transaction stays in its catalog, holding the batch in memory, until COMMIT.
        self.store._con.from_arrow(ready.select(self.fields).to_arrow()).insert_into(self.table)
        self.rows += len(ready)
        self._hashes.append(hashes)
        self._deltas.append(delta)
        if presence is not None:
            # Presence (a row per courier or van per cell-hour) grows with the file: it
            # waits in a temporary table, which DuckDB spills, not in this process's heap.
            self.store._con.from_arrow(
                presence.with_columns(pl.col("actor_id").cast(pl.String)).to_arrow()).insert_into("bulk_presence")
        if len(self._deltas) >= _FOLD_EVERY:
            self._fold()

    def _begin(self) -> None:
        """Take the write lock, note where the committed rows end, open the transaction."""
        self.store._write_lock.acquire()
        try:
            con = self.store._con
            span = "min(ts), max(ts)" if self.table == "pings" else "NULL, NULL"
            self._lo, self._hi, self._end = con.execute(
                f"SELECT {span}, coalesce(max(rowid) + 1, 0) FROM {self.table}").fetchall()[0]
            con.execute("BEGIN")
            if self.table == "pings":
                con.execute("CREATE OR REPLACE TEMP TABLE bulk_presence "
                            "(hour INTEGER, cell UBIGINT, branch_id VARCHAR, actor_id VARCHAR, is_vehicle BOOLEAN)")
        except BaseException:
            self.store._write_lock.release()
            raise
        self._open = True

    def _check_committed(self, ready: pl.DataFrame) -> None:
        """Raise :class:`Clash` if a record id of ``ready`` was stored before this load.

        Rows this transaction added are told apart by their row ids: committed rows
        have ids below the end noted at :meth:`_begin`, rows added since do not.
        """
        if not self._end:
            return
        where, params = "t.rowid < $end", {"end": self._end}
        if self.table == "pings":
            # A ping's id includes its time: only committed rows in the batch's time
            # window can match (none if the window misses the committed time span), and
            # the window lets DuckDB skip other days' row groups.
            lo, hi = ready.select(pl.col("ts").min().alias("lo"), pl.col("ts").max().alias("hi")).row(0)
            if hi < self._lo or lo > self._hi:
                return
            where += " AND t.ts BETWEEN $lo AND $hi"
            params |= {"lo": lo, "hi": hi}
        keys = ", ".join(self.key)
        batch_keys = ready.select(self.key).to_arrow()  # noqa: F841 (read by name in the query)
        found = self.store._con.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {self.table} t SEMI JOIN batch_keys "
            f"USING ({keys}) WHERE {where} LIMIT 1)", params).fetchall()[0][0]
        if found:
            raise Clash(f"a record id of this file is already in {self.table}")

    def _fold(self) -> None:
        """Fold the kept cube counts into one frame (sums per cell-hour)."""
        counts = [c for c in self._deltas[0].columns if c not in ("hour", "cell", "branch_id")]
        self._deltas = [pl.concat(self._deltas).group_by("hour", "cell").agg(
            pl.col("branch_id").first(), *(pl.col(c).sum() for c in counts))]

    def finish(self) -> int:
        """Commit everything added: the number of rows stored.

        Raises
        ------
        Clash
            Two rows of the file share a record id (or a hash); nothing is stored.
        """
        if not self._open:
            return 0
        try:
            hashes = np.concatenate(self._hashes)
            self._hashes = []
            # In place (no hash table the size of the file); the batches' runs are sorted
            # already and a stable sort (timsort) merges runs.
            hashes.sort(kind="stable")
            if (hashes[1:] == hashes[:-1]).any():
                raise Clash("this file holds a record id more than once")
            del hashes
            self._fold()
            con = self.store._con
            flushed = self.store._flush_cells(con)
            try:
                self._store_cube(con)
                con.execute("DROP TABLE IF EXISTS bulk_presence")
                con.execute("DROP TABLE IF EXISTS bulk_actors")
                con.execute("COMMIT")
            except BaseException:
                self.store._cells.unflush(flushed)
                raise
        except BaseException:
            self.abort()
            raise
        self._release()
        return self.rows

    def _store_cube(self, con) -> None:
        """Add the file's cube share: appended as it is where the cube holds nothing yet
        in the file's hours (a new day), merged cell-hour by cell-hour otherwise."""
        delta = self._deltas[0]
        if delta.is_empty():
            return
        pings = self.table == "pings"
        lo, hi = delta.select(pl.col("hour").min().alias("lo"), pl.col("hour").max().alias("hi")).row(0)
        taken = con.execute(
            "SELECT count(*) FROM (SELECT 1 FROM cube_hourly WHERE hour BETWEEN "
            "make_timestamp($lo * 3600000000) AND make_timestamp($hi * 3600000000) LIMIT 1)",
            {"lo": int(lo), "hi": int(hi)}).fetchall()[0][0]
        if taken:
            presence = con.sql("SELECT DISTINCT * FROM bulk_presence").pl() if pings else None
            self.store._merge_cube(con, delta, presence)
            return
        hour = _HOUR_SQL.format(t="d")
        counts = ", ".join(f"d.{c}" if c in delta.columns else f"0 AS {c}" for c in CUBE_COUNTS)
        cube_delta = delta  # noqa: F841 (read by name in the queries)
        if not pings:
            con.execute(f"INSERT INTO cube_hourly BY NAME SELECT {hour}, d.cell, d.branch_id, {counts}, "
                        "0 AS couriers, 0 AS vehicles FROM cube_delta d")
            return
        con.execute("CREATE OR REPLACE TEMP TABLE bulk_actors AS SELECT DISTINCT * FROM bulk_presence")
        con.execute(f"""
            INSERT INTO cube_presence BY NAME
            SELECT {_HOUR_SQL.format(t="p")}, p.cell, p.branch_id, p.actor_id,
                   CASE WHEN p.is_vehicle THEN 'vehicle' ELSE 'courier' END AS actor_kind
            FROM bulk_actors p""")
        con.execute(f"""
            INSERT INTO cube_hourly BY NAME
            SELECT {hour}, d.cell, d.branch_id, {counts},
                   coalesce(a.couriers, 0) AS couriers, coalesce(a.vehicles, 0) AS vehicles
            FROM cube_delta d LEFT JOIN (
                SELECT hour, cell, count(*) FILTER (WHERE NOT is_vehicle) AS couriers,
                       count(*) FILTER (WHERE is_vehicle) AS vehicles
                FROM bulk_actors GROUP BY ALL) a USING (hour, cell)""")

    def abort(self) -> None:
        """Roll back whatever was added (safe to call more than once)."""
        if self._open:
            try:
                self.store._con.execute("ROLLBACK")
            finally:
                self._release()

    def _release(self) -> None:
        self._open = False
        self._hashes, self._deltas = [], []
        self.store._write_lock.release()
