"""The history of file imports: one row per file imported into the store.

An import through the dashboard's page, ``POST /api/v1/import`` or ``python app.py
import`` writes one row (who, which file, which node it was held to, its counts and the
quarantine ``source`` of its rejected rows), so that operators can see later what went
in and fetch the rejected rows of one import. This module only reads and writes the
table (``imports`` in :mod:`data.store.schema`); who may read which rows is decided in
``views/imports.py``.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import polars as pl

COLUMNS = (
    "import_id",
    "started_at",
    "user_id",
    "channel",
    "file_name",
    "kind",
    "scope_node",
    "rows",
    "accepted",
    "rejected",
    "duplicates",
    "bytes",
    "seconds",
    "quarantine_source",
)
#: Where an import came from.
CHANNELS = ("page", "api", "cli")


def record(
    store,
    *,
    user_id: str,
    channel: str,
    file_name: str,
    kind: str | None,
    scope_node: str | None,
    rows: int,
    accepted: int,
    rejected: int,
    duplicates: int,
    quarantine_source: str,
    bytes: int | None = None,  # noqa: A002  (the column's name)
    seconds: float | None = None,
) -> str:
    """Write one import; returns its new ``import_id``.

    Examples
    --------
    >>> record(store, user_id="admin", channel="page", file_name="p.csv", kind="pings",
    ...        scope_node=None, rows=3, accepted=2, rejected=1, duplicates=0,
    ...        quarantine_source="upload p.csv")                           # doctest: +SKIP
    '5f0c9a1e2b7d'
    """
    if channel not in CHANNELS:
        raise ValueError(f"channel is one of {', '.join(CHANNELS)}")
    import_id = secrets.token_hex(6)
    # the row says when the import began, not when it ended
    started = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=seconds or 0.0)
    store.cursor().execute(
        f"INSERT INTO imports ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
        [
            import_id,
            started,
            str(user_id)[:200],
            channel,
            str(file_name)[:300],
            kind,
            scope_node,
            int(rows),
            int(accepted),
            int(rejected),
            int(duplicates),
            None if bytes is None else int(bytes),
            None if seconds is None else round(float(seconds), 3),
            quarantine_source,
        ],
    )
    return import_id


def list_imports(store, limit: int = 1000) -> pl.DataFrame:
    """The newest ``limit`` imports, newest first (every column)."""
    return store.sql(
        f"SELECT {', '.join(COLUMNS)} FROM imports ORDER BY started_at DESC, import_id LIMIT ?",
        [max(1, int(limit))],
    )


def get_import(store, import_id: str) -> dict | None:
    """One import by its id (None: no such import)."""
    row = (
        store.cursor()
        .execute(f"SELECT {', '.join(COLUMNS)} FROM imports WHERE import_id = ?", [str(import_id)])
        .fetchone()
    )
    return dict(zip(COLUMNS, row, strict=True)) if row else None


def quarantined(store, source: str, limit: int = 100_000) -> pl.DataFrame:
    """``row_number, reason, raw`` of the rows ``source`` has in quarantine, in file order.

    The quarantine keeps one copy of a file's rejected row however often the file is
    imported (same source), so every import of the same file lists the same rows.
    """
    return store.sql(
        "SELECT row_number, reason, raw FROM quarantine WHERE source = ? "
        "ORDER BY row_number NULLS LAST, received_at LIMIT ?",
        [source, max(1, int(limit))],
    )
