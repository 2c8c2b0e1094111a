"""Layout of the lake: raw records, clean records and the hourly cube as partitioned Parquet.

::

    <lake>/reference/<table>.parquet         nodes, node_branches, outlets, couriers, vehicles,
                                             devices, demo_surges (the tree and who is who)
    <lake>/raw/pings/date=D/division_id=X/*.parquet          records as received
    <lake>/raw/parcel_events/date=D/division_id=X/*.parquet
    <lake>/clean/pings/date=D/division_id=X/*.parquet        validated and indexed: the
    <lake>/clean/parcel_events/date=D/division_id=X/*.parquet    store's own columns
    <lake>/quarantine/date=D/record_kind=K/*.parquet         refused records, with reasons
    <lake>/cube/fine/hourly/date=D/division_id=X/branch_id=B/*.parquet    res 9
    <lake>/cube/fine/presence/date=D/division_id=X/branch_id=B/*.parquet
    <lake>/cube/coarse/hourly/date=D/division_id=X/*.parquet              res 6
    <lake>/cube/coarse/presence/date=D/division_id=X/*.parquet

``D`` is the UTC date of the record's time (of the cube's hour); ``X`` the division of the
branch the record lies in. A day is the unit of work: writing a day replaces every
partition of that day in a dataset, so re-running a day is idempotent. Fine cubes are
partitioned down to the branch so that a branch's cubes can be moved on their own
(:mod:`lake.tiering`); the coarse tier holds every branch of a division in one partition,
which is all headquarters and division views read.

Column types are the store's (:mod:`data.store.schema`); files may hold them in a wider or
signed form (Spark has no unsigned integers), and the views cast them back.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb

from data.store.schema import ddl

#: Resolution of the coarse cube tier (headquarters and division views roll up from it).
COARSE_RES = 6
#: Reference tables copied whole (small: the tree and the rosters).
REFERENCE_TABLES = ("nodes", "node_branches", "outlets", "couriers", "vehicles", "devices", "demo_surges")


@dataclass(frozen=True)
class Dataset:
    """One partitioned dataset of the lake."""

    path: str  # relative to the lake root
    partitions: tuple[str, ...]  # hive partition columns, outermost first
    table: str | None  # the store table whose columns it holds (None: as received)

    def root(self, lake: Path | str) -> str:
        return f"{str(lake).rstrip('/')}/{self.path}"

    def glob(self, lake: Path | str) -> str:
        return self.root(lake) + "/" + "/".join("*" for _ in self.partitions) + "/*.parquet"


DATASETS = {
    "raw_pings": Dataset("raw/pings", ("date", "division_id"), None),
    "raw_parcel_events": Dataset("raw/parcel_events", ("date", "division_id"), None),
    "clean_pings": Dataset("clean/pings", ("date", "division_id"), "pings"),
    "clean_parcel_events": Dataset("clean/parcel_events", ("date", "division_id"), "parcel_events"),
    "quarantine": Dataset("quarantine", ("date", "record_kind"), "quarantine"),
    "fine_hourly": Dataset("cube/fine/hourly", ("date", "division_id", "branch_id"), "cube_hourly"),
    "fine_presence": Dataset("cube/fine/presence", ("date", "division_id", "branch_id"), "cube_presence"),
    "coarse_hourly": Dataset("cube/coarse/hourly", ("date", "division_id"), "cube_hourly"),
    "coarse_presence": Dataset("cube/coarse/presence", ("date", "division_id"), "cube_presence"),
}
#: What the job and the export write for each day, by dataset name.
DAY_OUTPUTS = (
    "clean_pings",
    "clean_parcel_events",
    "quarantine",
    "fine_hourly",
    "fine_presence",
    "coarse_hourly",
    "coarse_presence",
)


@cache
def table_columns(table: str) -> tuple[tuple[str, str], ...]:
    """``(name, DuckDB type)`` of each column of a store table, read from the schema."""
    con = duckdb.connect()
    try:
        for stmt in ddl():
            con.execute(stmt)
        return tuple((r[0], r[1]) for r in con.execute(f"DESCRIBE {table}").fetchall())
    finally:
        con.close()


def days_in(lake: Path | str, dataset: str) -> list[str]:
    """Dates that have a partition in ``dataset``, oldest first."""
    root = Path(DATASETS[dataset].root(lake))
    if not root.is_dir():
        return []
    return sorted(p.name.split("=", 1)[1] for p in root.glob("date=*") if p.is_dir())


def has_files(lake: Path | str, dataset: str) -> bool:
    root = Path(DATASETS[dataset].root(lake))
    return root.is_dir() and next(root.rglob("*.parquet"), None) is not None


def read_sql(lake: Path | str, dataset: str) -> str:
    """A SELECT over every partition of ``dataset`` with the store table's columns and
    types (partition columns come back from the folder names)."""
    ds = DATASETS[dataset]
    hive_types = ", ".join(f"'{p}': {'DATE' if p == 'date' else 'VARCHAR'}" for p in ds.partitions)
    source = (
        f"read_parquet('{ds.glob(lake)}', hive_partitioning = true, "
        f"hive_types = {{{hive_types}}}, union_by_name = true)"
    )
    if ds.table is None:
        return f"SELECT * FROM {source}"
    cols = ", ".join(f"{name}::{kind} AS {name}" for name, kind in table_columns(ds.table))
    return f"SELECT {cols} FROM {source}"


class LocalFiles:
    """The few file operations publishing needs, on this machine's file system. The
    Spark job passes an object with the same methods over Hadoop's file systems."""

    def days(self, root: str) -> list[str]:
        p = Path(root)
        return sorted(c.name.split("=", 1)[1] for c in p.glob("date=*")) if p.is_dir() else []

    def exists(self, path: str) -> bool:
        return Path(path).exists()

    def delete(self, path: str) -> None:
        shutil.rmtree(path, ignore_errors=True)

    def rename(self, src: str, dst: str) -> None:
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        Path(src).rename(dst)


def swap_in_days(staging_root: str, final_root: str, files=None) -> list[str]:
    """Replace each ``date=D`` folder of ``final_root`` by the one in ``staging_root``.

    The old day is moved aside before the new one is renamed in and deleted after, so a
    reader sees either day whole except in the instant between two renames. Returns the
    days replaced.
    """
    files = files or LocalFiles()
    replaced = []
    for day in files.days(staging_root):
        target = f"{final_root}/date={day}"
        old = f"{final_root}/.old-date={day}-{uuid.uuid4().hex[:8]}"
        if files.exists(target):
            files.rename(target, old)
        files.rename(f"{staging_root}/date={day}", target)
        files.delete(old)
        replaced.append(day)
    return replaced


def publish_days(staging: str, lake: str, days: list[str], files=None) -> None:
    """Make the days written under ``staging`` (a lake of its own) the lake's days.

    Every day output of a run is replaced whole: a dataset with nothing for a day in the
    new run loses that day, so re-running a day never leaves stale partitions.
    """
    files = files or LocalFiles()
    for name in DAY_OUTPUTS:
        staged, final = DATASETS[name].root(staging), DATASETS[name].root(lake)
        fresh = set(files.days(staged))
        for day in days:
            if day not in fresh:
                files.delete(f"{final}/date={day}")
        swap_in_days(staged, final, files)
