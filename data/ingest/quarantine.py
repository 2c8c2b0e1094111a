"""Quarantine with a ceiling: refused records are kept, but never without bound.

A phone's fix refused for good is answered 200 and quarantined (the phone would resend
it for ever otherwise), and a client may send refused records as fast as good ones, so
the quarantine table must not grow with them. :class:`Quarantine` keeps, per source (a
file, an API client, the phone endpoint) and in total, at most a set number of rows,
letting the oldest go first; rows older than the retention are deleted; each raw copy is
cut to a set size. What is let go is counted (:attr:`Quarantine.dropped`) and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import polars as pl

from data.store.database import Store

log = logging.getLogger(__name__)

#: Seconds between two passes of the retention and of the count from the table.
_REFRESH_SECONDS = 3600.0
#: After trimming, a source (or the whole table) is left this far below its ceiling, so
#: that a steady stream of refusals trims once in a while, not at every commit.
_SLACK = 0.9


class Quarantine:
    """Writes refused records to the store's ``quarantine`` table within the caps.

    Parameters
    ----------
    store : Store
        Where the table is.
    per_source : int
        Rows kept per source at most.
    total : int
        Rows kept in all at most.
    retention_days : float
        Rows older than this are deleted.
    raw_bytes : int
        Characters of each raw copy kept.

    Examples
    --------
    >>> q = Quarantine(store, per_source=1000, total=10_000)      # doctest: +SKIP
    >>> q.keep(bad, "osmand", "pings")                             # doctest: +SKIP
    3
    """

    def __init__(
        self,
        store: Store,
        per_source: int = 100_000,
        total: int = 1_000_000,
        retention_days: float = 30.0,
        raw_bytes: int = 4096,
    ):
        self.store = store
        self.per_source = max(1, per_source)
        self.total = max(1, total)
        self.retention = timedelta(days=retention_days)
        self.raw_bytes = raw_bytes
        #: Refused records not kept (over a ceiling, or let go to make room), since start.
        self.dropped = 0
        self._counts: dict[str, int] | None = None
        self._refreshed = 0.0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, store: Store, settings) -> Quarantine:
        """Caps from ``quarantine_max_rows_per_source``, ``quarantine_max_rows``,
        ``quarantine_retention_days`` and ``quarantine_max_raw_bytes``."""
        return cls(
            store,
            settings.quarantine_max_rows_per_source,
            settings.quarantine_max_rows,
            settings.quarantine_retention_days,
            settings.quarantine_max_raw_bytes,
        )

    def keep(self, bad: pl.DataFrame, source: str, kind: str, once: bool = False) -> int:
        """Quarantine ``bad`` (``_row, reason, raw``) from ``source``; returns the rows kept.

        When one call brings more than a source may keep, its first rows are kept (the
        first faults of a file are the ones to fix first); older rows of the source, then
        of the whole table, are let go to make room for the new ones. With ``once``, rows
        the source already has in quarantine (same row number and raw text) are not kept
        again: a file imported twice is quarantined once.
        """
        if bad.is_empty():
            return 0
        with self._lock:
            if once:
                bad = self._new_only(self._cut(bad), source)
                if bad.is_empty():
                    return 0
            counts = self._refresh()
            if len(bad) > self.per_source:
                self._drop(len(bad) - self.per_source, source, "over the per-source ceiling")
                bad = bad.head(self.per_source)
            n = len(bad)
            have = counts.get(source, 0)
            if have + n > self.per_source:
                let_go = have - max(0, int(self.per_source * _SLACK) - n)
                counts[source] = have - self._trim(let_go, source)
            if sum(counts.values()) + n > self.total:
                self._trim(sum(counts.values()) - max(0, int(self.total * _SLACK) - n), None)
                self._counts = None  # sources lost rows: count again from the table
                self._refreshed = 0.0
            kept = self.store.quarantine(bad if once else self._cut(bad), source, kind)
            if self._counts is not None:
                self._counts[source] = self._counts.get(source, 0) + kept
            return kept

    def _cut(self, bad: pl.DataFrame) -> pl.DataFrame:
        """Raw copies cut to :attr:`raw_bytes` characters."""
        raw = pl.col("raw").cast(pl.String)
        return bad.with_columns(
            pl.when(raw.str.len_chars() > self.raw_bytes)
            .then(pl.concat_str(raw.str.slice(0, self.raw_bytes), pl.lit("... (cut)")))
            .otherwise(raw)
            .alias("raw")
        )

    def _new_only(self, bad: pl.DataFrame, source: str) -> pl.DataFrame:
        """Rows of ``bad`` that ``source`` does not have in quarantine yet."""
        rows = bad["_row"].cast(pl.Int64)
        held = (
            self.store.cursor()
            .sql(
                "SELECT row_number AS _row, raw FROM quarantine WHERE source = $source "
                "AND row_number BETWEEN $lo AND $hi",
                params={"source": source, "lo": rows.min(), "hi": rows.max()},
            )
            .pl()
        )
        if held.is_empty():
            return bad
        probe = bad.with_columns(pl.col("_row").cast(pl.Int64), pl.col("raw").cast(pl.String))
        fresh = probe.join(held, on=["_row", "raw"], how="anti", nulls_equal=True)
        return fresh.cast(bad.schema)

    def _refresh(self) -> dict[str, int]:
        """Counts per source, read again (after the retention pass) once an hour."""
        now = time.monotonic()
        if self._counts is None or now - self._refreshed > _REFRESH_SECONDS:
            cur = self.store.cursor()
            cutoff = datetime.now(UTC).replace(tzinfo=None) - self.retention
            old = cur.execute("SELECT count(*) FROM quarantine WHERE received_at < ?", [cutoff]).fetchone()[0]
            if old:
                cur.execute("DELETE FROM quarantine WHERE received_at < ?", [cutoff])
                log.info("quarantine: %d rows older than %s deleted", old, self.retention)
            self._counts = dict(
                cur.execute("SELECT source, count(*) FROM quarantine GROUP BY source").fetchall()
            )
            self._refreshed = now
        return self._counts

    def _trim(self, rows: int, source: str | None) -> int:
        """Delete the ``rows`` oldest rows of ``source`` (of the table when ``None``)."""
        if rows <= 0:
            return 0
        where, args = ("WHERE source = ?", [source]) if source is not None else ("", [])
        self.store.cursor().execute(
            f"DELETE FROM quarantine WHERE rowid IN (SELECT rowid FROM quarantine {where} "
            f"ORDER BY received_at, rowid LIMIT ?)",
            [*args, rows],
        )
        self._drop(rows, source or "all sources", "let go to make room")
        return rows

    def _drop(self, rows: int, source: str, why: str) -> None:
        self.dropped += rows
        log.warning(
            "quarantine: %d rows of %s %s (caps: %d per source, %d in all)",
            rows,
            source,
            why,
            self.per_source,
            self.total,
        )
