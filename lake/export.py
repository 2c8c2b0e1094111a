"""Embedded store -> lake: the same datasets the Spark job writes, produced by DuckDB.

A single-machine install can hand its days to a headquarters lake this way, and the
tests use it as the reference the Spark job must equal.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import date, timedelta
from pathlib import Path

from data.store.database import EVENT_FIELDS, PING_FIELDS, Store
from data.store.schema import CUBE_COUNTS
from geo import cells as h3cells
from lake import layout

#: Raw columns: what a collector receives (the store's columns before indexing).
RAW_PING_COLUMNS = ["device_id", "ts", "lat", "lng", "speed", "heading", "accuracy"]
RAW_EVENT_COLUMNS = [
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
]
_TIMES = ("ts", "promised_at", "expected_at")


def store_days(store: Store) -> list[str]:
    """UTC dates holding cube data, oldest first."""
    rows = (
        store.cursor()
        .execute("SELECT DISTINCT strftime(hour, '%Y-%m-%d') FROM cube_hourly ORDER BY 1")
        .fetchall()
    )
    return [r[0] for r in rows]


def coarse_sql(hourly: str, presence: str, res: int = layout.COARSE_RES) -> tuple[str, str]:
    """SELECTs rolling a res-9 hourly cube and its presence up to ``res``: counts are
    summed, distinct couriers and vehicles recounted from presence."""
    cell = h3cells.parent_sql("cell", res)
    sums = ", ".join(f"sum({c})::BIGINT AS {c}" for c in CUBE_COUNTS)
    coarse_presence = f"SELECT DISTINCT hour, {cell} AS cell, branch_id, actor_id, actor_kind FROM {presence}"
    coarse_hourly = f"""
        WITH c AS (SELECT hour, {cell} AS cell, branch_id, {sums} FROM {hourly} GROUP BY ALL),
        p AS (SELECT hour, cell, branch_id,
                     count(*) FILTER (WHERE actor_kind = 'courier') AS couriers,
                     count(*) FILTER (WHERE actor_kind = 'vehicle') AS vehicles
              FROM ({coarse_presence}) GROUP BY ALL)
        SELECT c.hour, c.cell, c.branch_id, c.pings, coalesce(p.couriers, 0) AS couriers,
               coalesce(p.vehicles, 0) AS vehicles, c.pickups, c.deliveries, c.on_time, c.late,
               c.scans
        FROM c LEFT JOIN p USING (hour, cell, branch_id)"""
    return coarse_hourly, coarse_presence


def export_store(
    store: Store, lake: Path | str, days: list[str] | None = None, raw: bool = True
) -> dict[str, int]:
    """Write the reference tables and, for each day, every day dataset (and the raw
    records unless ``raw`` is false) from ``store`` into ``lake``. Re-exporting a day
    replaces it. Returns rows written per dataset."""
    lake = Path(lake)
    lake.mkdir(parents=True, exist_ok=True)
    days = store_days(store) if days is None else [str(d) for d in days]
    con = store.cursor()
    written: dict[str, int] = {}
    write_reference(con, lake)
    with tempfile.TemporaryDirectory(dir=lake, prefix=".staging-") as tmp:
        staging = Path(tmp)
        for day in days:
            lo = date.fromisoformat(day)
            window = (
                f"BETWEEN TIMESTAMP '{lo}' AND TIMESTAMP '{lo + timedelta(days=1)}' - INTERVAL 1 MICROSECOND"
            )
            for name, select in _day_selects(window).items():
                written[name] = written.get(name, 0) + _copy(con, select, staging, name)
        layout.publish_days(str(staging), str(lake), days)
        if raw:
            for name, select in _raw_selects(days).items():
                written[name] = _copy(con, select, staging, name)
                layout.swap_in_days(layout.DATASETS[name].root(staging), layout.DATASETS[name].root(lake))
    return written


def write_reference(con, lake: Path) -> None:
    ref = lake / "reference"
    ref.mkdir(parents=True, exist_ok=True)
    for table in layout.REFERENCE_TABLES:
        tmp = ref / f".{table}.parquet.tmp"
        con.execute(f"COPY (SELECT * FROM {table}) TO '{tmp}' (FORMAT parquet)")
        tmp.replace(ref / f"{table}.parquet")


def _division(branch: str) -> str:
    return f"(SELECT division_id FROM nodes n WHERE n.node_id = {branch})"


def _stored(fields: list[str]) -> str:
    # Cells are written signed: every H3 index fits, and Spark has no unsigned integers.
    return ", ".join(f"{f}::BIGINT AS {f}" if f == "cell" else f for f in fields)


def _day_selects(window: str) -> dict[str, str]:
    hourly_cols = ", ".join(
        f"{c}::BIGINT AS {c}" if c == "cell" else c for c, _ in layout.table_columns("cube_hourly")
    )
    fine_h = f"SELECT * FROM cube_hourly WHERE hour {window}"
    fine_p = f"SELECT * FROM cube_presence WHERE hour {window}"
    coarse_h, coarse_p = coarse_sql(f"({fine_h})", f"({fine_p})")
    day = "strftime({t}, '%Y-%m-%d') AS date"
    return {
        "clean_pings": f"SELECT {_stored(PING_FIELDS)}, {day.format(t='ts')}, "
        f"{_division('branch_id')} AS division_id FROM pings WHERE ts {window}",
        "clean_parcel_events": f"SELECT {_stored(EVENT_FIELDS)}, {day.format(t='ts')}, "
        f"{_division('branch_id')} AS division_id FROM parcel_events "
        f"WHERE ts {window}",
        "quarantine": f"SELECT *, {day.format(t='received_at')} FROM quarantine WHERE received_at {window}",
        "fine_hourly": f"SELECT {hourly_cols}, {day.format(t='hour')}, "
        f"{_division('branch_id')} AS division_id FROM ({fine_h})",
        "fine_presence": f"SELECT hour, cell::BIGINT AS cell, branch_id, actor_id, actor_kind, "
        f"{day.format(t='hour')}, {_division('branch_id')} AS division_id "
        f"FROM ({fine_p})",
        "coarse_hourly": f"SELECT * REPLACE (cell::BIGINT AS cell), {day.format(t='hour')}, "
        f"{_division('branch_id')} AS division_id FROM ({coarse_h})",
        "coarse_presence": f"SELECT * REPLACE (cell::BIGINT AS cell), {day.format(t='hour')}, "
        f"{_division('branch_id')} AS division_id FROM ({coarse_p})",
    }


def _raw_selects(days: list[str]) -> dict[str, str]:
    """Stored records as a collector would have received them: no cell, no branch, times
    as UTC instants (so no reader mistakes them for local time)."""

    def cols(names):
        return ", ".join(f"timezone('UTC', {c}) AS {c}" if c in _TIMES else c for c in names)

    picked = ", ".join(f"'{d}'" for d in days)
    return {
        "raw_pings": f"SELECT {cols(RAW_PING_COLUMNS)}, strftime(ts, '%Y-%m-%d') AS date, "
        f"{_division('branch_id')} AS division_id FROM pings "
        f"WHERE strftime(ts, '%Y-%m-%d') IN ({picked})",
        "raw_parcel_events": f"SELECT {cols(RAW_EVENT_COLUMNS)}, strftime(ts, '%Y-%m-%d') AS date, "
        f"{_division('branch_id')} AS division_id FROM parcel_events "
        f"WHERE strftime(ts, '%Y-%m-%d') IN ({picked})",
    }


def _copy(con, select: str, staging: Path, dataset: str) -> int:
    ds = layout.DATASETS[dataset]
    target = Path(ds.root(staging))
    target.mkdir(parents=True, exist_ok=True)
    count = con.execute(f"SELECT count(*) FROM ({select})").fetchone()[0]
    if count:
        con.execute(
            f"COPY ({select}) TO '{target}' (FORMAT parquet, "
            f"PARTITION_BY ({', '.join(ds.partitions)}), OVERWRITE_OR_IGNORE, "
            f"FILENAME_PATTERN 'part-{{uuid}}')"
        )
    else:
        shutil.rmtree(target, ignore_errors=True)
    return count
