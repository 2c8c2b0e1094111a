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
deduplicates every row (:meth:`data.store.database.Store.stage`). A clean file is therefore
written once, with no staging copy, no distinct over all its keys and no second scan
for the cube; into hours the cube does not hold yet, its cube rows are appended as
they are.

This module works on the store's connection, lock and cube merge: it is the store's
bulk path, kept in a module of its own.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from data.store.database import _RECORDS, CubeShare, Store, cube_share, cube_tables, unpack_hour_cell
from data.store.schema import CUBE_COUNTS

#: Rows of cube shares (cell-hours and actor pairs, packed integers) kept before they are
#: folded into one: bounds memory (about 20 bytes a row), while a file of tens of
#: millions of pings is folded once, at the end.
_FOLD_ROWS = 20_000_000
#: Presence rows inserted at once at the end of a file.
_PRESENCE_SLICE = 2_000_000


class Clash(Exception):
    """A record id of the file is already stored, or the file holds it twice."""


def record_hashes(table: str, rows: pl.DataFrame) -> np.ndarray:
    """64-bit hash of each row's record id (``uint64``; equal ids give equal hashes),
    sorted (by polars: about half numpy's time here)."""
    return rows.select(_RECORDS[table].key).hash_rows(seed=0x5EED).sort().to_numpy()


def _insert_by_name(con, table: str, rows: pl.DataFrame) -> None:
    con.register("bulk_rows", rows)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM bulk_rows")
    finally:
        con.unregister("bulk_rows")


def _new_hour_rows(share: CubeShare) -> pl.DataFrame:
    """cube_hourly rows of a share that is all there is in its hours."""
    rows = share.delta
    if share.pairs is not None:
        rows = rows.join(share.actor_counts(), on="key", how="left")
    distinct = [
        pl.col(c).fill_null(0) if c in rows.columns else pl.lit(0, dtype=pl.Int32).alias(c)
        for c in ("couriers", "vehicles")
    ]
    counts = [pl.col(c) if c in rows.columns else pl.lit(0, dtype=pl.Int64).alias(c) for c in CUBE_COUNTS]
    return cube_tables(rows.select(*unpack_hour_cell(), "branch_id", *counts, *distinct), None)[0]


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
        record = _RECORDS[table]
        self.stored_table, self.fields, self.key = record.table, record.stored, record.key
        self.rows = 0
        self._lo = self._hi = None
        self._end = 0
        self._hashes: list[np.ndarray] = []
        self._shares: list[CubeShare] = []
        self._kept = 0  # rows of the kept shares
        self._open = False

    # -- reader side ------------------------------------------------------------------
    def prepare(self, ready: pl.DataFrame):
        """The record-id hashes and cube share of ``ready`` (pure; any thread)."""
        if ready.is_empty():
            return None
        # sorted here, in the workers: finish() then only merges sorted runs, which is quick
        return record_hashes(self.table, ready), cube_share(self.table, ready)

    # -- writer side ------------------------------------------------------------------
    def add(self, ready: pl.DataFrame, parts) -> None:
        """Insert ``ready`` (in the open transaction) with what :meth:`prepare` gave."""
        if parts is None:
            return
        hashes, share = parts
        if not self._open:
            self._begin()
        self._check_committed(ready)
        # Through a relation, not a registered view: a view registered inside the open
        # transaction stays in its catalog, holding the batch in memory, until COMMIT.
        self.store._con.from_arrow(ready.select(self.fields).to_arrow()).insert_into(self.stored_table)
        self.rows += len(ready)
        self._hashes.append(hashes)
        # What is kept grows with the cell-hours and actors of the file (packed integers,
        # about a quarter of its rows for pings), not with its rows.
        self._shares.append(share)
        self._kept += share.rows()
        if self._kept > _FOLD_ROWS:
            self._fold()

    def _begin(self) -> None:
        """Take the write lock, note where the committed rows end, open the transaction."""
        self.store._write_lock.acquire()
        try:
            con = self.store._con
            span = "min(ts), max(ts)" if self.table == "pings" else "NULL, NULL"
            self._lo, self._hi, self._end = con.execute(
                f"SELECT {span}, coalesce(max(rowid) + 1, 0) FROM {self.stored_table}"
            ).fetchall()[0]
            con.execute("BEGIN")
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
            f"SELECT count(*) FROM (SELECT 1 FROM {self.stored_table} t SEMI JOIN batch_keys "
            f"USING ({keys}) WHERE {where} LIMIT 1)",
            params,
        ).fetchall()[0][0]
        if found:
            raise Clash(f"a record id of this file is already in {self.table}")

    def _fold(self) -> None:
        """Fold the kept cube shares into one."""
        self._shares = [CubeShare.fold(self._shares)]
        self._kept = self._shares[0].rows()

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
            # The record-id check and the cube's share are independent: the check runs
            # beside the last fold of the shares (both release the GIL).
            with ThreadPoolExecutor(max_workers=1) as pool:
                check = pool.submit(self._check_file_hashes)
                self._fold()
                # the file's hashes are let go before the cube's rows are made: the two
                # together would be the import's peak of memory
                check.result()
                con = self.store._con
                flushed = self.store._flush_cells(con)
                try:
                    self._store_cube(con, pool)
                    con.execute("COMMIT")
                except BaseException:
                    self.store._cells.unflush(flushed)
                    raise
        except BaseException:
            self.abort()
            raise
        self._release()
        return self.rows

    def _check_file_hashes(self) -> None:
        """Raise :class:`Clash` if two rows of the file share a record-id hash."""
        hashes = np.concatenate(self._hashes)
        self._hashes = []
        # In place (no hash table the size of the file); the batches' runs are sorted
        # already and a stable sort (timsort) merges runs.
        hashes.sort(kind="stable")
        if (hashes[1:] == hashes[:-1]).any():
            raise Clash("this file holds a record id more than once")

    def _store_cube(self, con, pool: ThreadPoolExecutor) -> None:
        """Add the file's cube share: appended as it is where the cube holds nothing yet
        in the file's hours (a new day), merged cell-hour by cell-hour otherwise."""
        share = self._shares[0]
        if share.delta.is_empty():
            return
        delta, presence = share.unpacked()
        lo, hi = delta.select(pl.col("hour").min().alias("lo"), pl.col("hour").max().alias("hi")).row(0)
        taken = con.execute(
            "SELECT count(*) FROM (SELECT 1 FROM cube_hourly WHERE hour BETWEEN "
            "make_timestamp($lo * 3600000000) AND make_timestamp($hi * 3600000000) LIMIT 1)",
            {"lo": int(lo), "hi": int(hi)},
        ).fetchall()[0][0]
        if taken:
            self.store._merge_cube(con, delta, presence)
            return
        # New hours: the file's share is all there is in them, so its rows go in as they
        # are, distinct couriers and vans counted from its own pairs (worked out in
        # another thread while the presence rows are inserted).
        hourly = pool.submit(_new_hour_rows, share)
        if presence is not None:
            # in slices: the rows as text (ids, kinds, timestamps) are much larger than
            # the packed pairs they come from
            for start in range(0, presence.height, _PRESENCE_SLICE):
                _insert_by_name(
                    con, "cube_presence", cube_tables(delta, presence.slice(start, _PRESENCE_SLICE))[1]
                )
        _insert_by_name(con, "cube_hourly", hourly.result())

    def abort(self) -> None:
        """Roll back whatever was added (safe to call more than once)."""
        if self._open:
            try:
                self.store._con.execute("ROLLBACK")
            finally:
                self._release()

    def _release(self) -> None:
        self._open = False
        self._hashes, self._shares, self._kept = [], [], 0
        self.store._write_lock.release()
