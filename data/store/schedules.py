"""Scheduled reports: the schedules and the files each one produced, kept in the store.

A schedule names a node, a metric, a period kind (``hour``, ``day``, ``week``), a format,
a local time of day and how many outputs to keep; it belongs to the user who created it
and runs under that user's rights of the moment (``views/schedules.py``). This module
only reads and writes the two tables; who may see or change what is decided above it.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

SCHEDULES_DDL = """CREATE TABLE IF NOT EXISTS report_schedules (
    schedule_id VARCHAR PRIMARY KEY,   -- short random id, also the folder of its outputs
    created_by VARCHAR NOT NULL,       -- the user it runs as (their rights at run time)
    created_at TIMESTAMP NOT NULL,     -- UTC
    node_id VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    period VARCHAR NOT NULL,           -- hour | day | week
    format VARCHAR NOT NULL,           -- html | png | pdf | csv | geojson | parquet
    at_time VARCHAR NOT NULL,          -- local HH:MM (for hour: the minute past each hour)
    keep INTEGER NOT NULL,             -- outputs kept; older ones are deleted
    lang VARCHAR NOT NULL,             -- zh | en
    paused BOOLEAN NOT NULL DEFAULT false,
    stopped VARCHAR,                   -- why it stopped (creator disabled, node lost); NULL: runs
    last_period VARCHAR,               -- slug of the newest period produced
    last_run_at TIMESTAMP,             -- UTC, newest output
    last_attempt_at TIMESTAMP,         -- UTC, newest run tried (failed or not)
    last_error VARCHAR,                -- why the newest attempt failed; NULL after a success
    updated_at TIMESTAMP NOT NULL)"""

OUTPUTS_DDL = """CREATE TABLE IF NOT EXISTS report_outputs (
    schedule_id VARCHAR NOT NULL,
    period VARCHAR NOT NULL,           -- slug of the period (2026-11-20, 2026-11-20T09, ...)
    file_name VARCHAR NOT NULL,        -- inside <data_dir>/reports/<schedule_id>/
    bytes BIGINT NOT NULL,
    made_at TIMESTAMP NOT NULL)        -- UTC"""

COLUMNS = (
    "schedule_id",
    "created_by",
    "created_at",
    "node_id",
    "metric",
    "period",
    "format",
    "at_time",
    "keep",
    "lang",
    "paused",
    "stopped",
    "last_period",
    "last_run_at",
    "last_attempt_at",
    "last_error",
    "updated_at",
)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def ensure_tables(store) -> None:
    """Create the two tables if missing (a read-only store is left as it is)."""
    if getattr(store, "read_only", False):
        return
    cur = store.cursor()
    cur.execute(SCHEDULES_DDL)
    cur.execute(OUTPUTS_DDL)


def _rows(cur) -> list[dict]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def insert(
    store,
    *,
    created_by: str,
    node_id: str,
    metric: str,
    period: str,
    fmt: str,
    at_time: str,
    keep: int,
    lang: str,
) -> str:
    """Add a schedule (values already checked); returns its id."""
    ensure_tables(store)
    sid = secrets.token_hex(6)
    now = _now()
    store.cursor().execute(
        "INSERT INTO report_schedules (schedule_id, created_by, created_at, node_id, metric, period, "
        "format, at_time, keep, lang, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [sid, created_by, now, node_id, metric, period, fmt, at_time, int(keep), lang, now],
    )
    return sid


def get(store, schedule_id) -> dict | None:
    """One schedule as a dict, or None."""
    if not isinstance(schedule_id, str):
        return None
    ensure_tables(store)
    cur = store.cursor().execute("SELECT * FROM report_schedules WHERE schedule_id = ?", [schedule_id])
    rows = _rows(cur)
    return rows[0] if rows else None


def listed(store, nodes: frozenset | None = None, user_id: str | None = None) -> list[dict]:
    """Schedules on ``nodes`` or created by ``user_id`` (``nodes`` None: every one),
    oldest first."""
    ensure_tables(store)
    if nodes is None:
        cur = store.cursor().execute("SELECT * FROM report_schedules ORDER BY created_at, schedule_id")
    else:
        cur = store.cursor().execute(
            "SELECT * FROM report_schedules WHERE list_contains(?, node_id) OR created_by = ? "
            "ORDER BY created_at, schedule_id",
            [sorted(nodes), user_id],
        )
    return _rows(cur)


def active(store) -> list[dict]:
    """Schedules neither paused nor stopped (the runner's candidates)."""
    ensure_tables(store)
    cur = store.cursor().execute(
        "SELECT * FROM report_schedules WHERE NOT paused AND stopped IS NULL ORDER BY created_at, schedule_id"
    )
    return _rows(cur)


def set_paused(store, schedule_id: str, paused: bool) -> None:
    """Pause or resume; resuming also clears a stop (the next run checks the rights again)."""
    store.cursor().execute(
        "UPDATE report_schedules SET paused = ?, stopped = CASE WHEN ? THEN stopped ELSE NULL END, "
        "updated_at = ? WHERE schedule_id = ?",
        [bool(paused), bool(paused), _now(), schedule_id],
    )


def stop(store, schedule_id: str, reason: str) -> None:
    """Stop a schedule for good (until resumed), with the reason shown on the page."""
    store.cursor().execute(
        "UPDATE report_schedules SET stopped = ?, last_attempt_at = ?, updated_at = ? WHERE schedule_id = ?",
        [reason[:500], _now(), _now(), schedule_id],
    )


def failed(store, schedule_id: str, error: str, at: datetime | None = None) -> None:
    """Record a failed attempt (tried again later)."""
    store.cursor().execute(
        "UPDATE report_schedules SET last_error = ?, last_attempt_at = ?, updated_at = ? WHERE schedule_id = ?",
        [error[:500], at or _now(), _now(), schedule_id],
    )


def produced(
    store, schedule_id: str, period: str, file_name: str, size: int, at: datetime | None = None
) -> None:
    """Record an output and the newest period produced."""
    at = at or _now()
    cur = store.cursor()
    cur.execute(
        "DELETE FROM report_outputs WHERE schedule_id = ? AND file_name = ?", [schedule_id, file_name]
    )
    cur.execute(
        "INSERT INTO report_outputs VALUES (?, ?, ?, ?, ?)", [schedule_id, period, file_name, int(size), at]
    )
    cur.execute(
        "UPDATE report_schedules SET last_period = ?, last_run_at = ?, last_attempt_at = ?, "
        "last_error = NULL, updated_at = ? WHERE schedule_id = ?",
        [period, at, at, _now(), schedule_id],
    )


def outputs(store, schedule_id: str) -> list[dict]:
    """The outputs of a schedule, newest first."""
    ensure_tables(store)
    cur = store.cursor().execute(
        "SELECT * FROM report_outputs WHERE schedule_id = ? ORDER BY period DESC, made_at DESC",
        [schedule_id],
    )
    return _rows(cur)


def output(store, schedule_id, file_name) -> dict | None:
    """One output row, or None (the download looks the name up here, never on disk first)."""
    if not isinstance(schedule_id, str) or not isinstance(file_name, str):
        return None
    ensure_tables(store)
    cur = store.cursor().execute(
        "SELECT * FROM report_outputs WHERE schedule_id = ? AND file_name = ?", [schedule_id, file_name]
    )
    rows = _rows(cur)
    return rows[0] if rows else None


def forget_outputs(store, schedule_id: str, file_names: list[str]) -> None:
    """Drop output rows (their files are deleted by the caller)."""
    if file_names:
        store.cursor().execute(
            "DELETE FROM report_outputs WHERE schedule_id = ? AND list_contains(?, file_name)",
            [schedule_id, list(file_names)],
        )


def delete(store, schedule_id: str) -> list[str]:
    """Delete a schedule and its output rows; returns the file names to delete."""
    names = [o["file_name"] for o in outputs(store, schedule_id)]
    cur = store.cursor()
    cur.execute("DELETE FROM report_outputs WHERE schedule_id = ?", [schedule_id])
    cur.execute("DELETE FROM report_schedules WHERE schedule_id = ?", [schedule_id])
    return names
