"""The ingest-to-cube pipeline on Apache Spark, over the lake (see docs/lake.md).

For each day: read the raw partitions of pings and parcel events, validate them with the
import rules (:mod:`data.ingest.validate`), index them into res-9 cells with the import's cell
code (:mod:`geo.cells`), both inside ``mapInArrow`` so that the work is vectorised per
Arrow batch; locate each distinct cell's branch with the store's spatial join; refuse
unknown devices and positions outside the network as the store does; drop re-sent
records; then build the clean records, the quarantine, the fine (res 9) and coarse
(res 6) hourly cubes with their presence tables, and publish the day, replacing it.

Run it with ``python app.py lake spark --master URL`` or ``spark-submit
lake/spark_job.py``; the job ships its own Python packages to the executors.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script by spark-submit: the project is the parent
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data.store.database import EVENT_FIELDS, PING_FIELDS  # noqa: E402
from data.store.schema import CUBE_COUNTS  # noqa: E402
from lake import layout  # noqa: E402

PROJECT = Path(__file__).resolve().parent.parent
#: Packages the executors import (the validation, cell and tree code).
SHIPPED = ("data", "geo", "ops", "lake", "config")
_HOUR_US = 3_600_000_000
#: Times travel between Python and the JVM as Unix microseconds (unambiguous; converted
#: to the lake's zone-less UTC timestamps only when written).
_TIME_FIELDS = {"pings": ("ts",), "parcel_events": ("ts", "promised_at", "expected_at")}
_KEYS = {"pings": ("device_id", "ts"), "parcel_events": ("event_id",)}
_SPARK_TYPES = {
    "VARCHAR": "string",
    "DOUBLE": "double",
    "FLOAT": "float",
    "UBIGINT": "long",
    "TIMESTAMP": "long",
    "BIGINT": "long",
    "INTEGER": "int",
}


# -- session and code shipping ---------------------------------------------------------------
def session(
    master: str | None = None,
    shuffle_partitions: int = 8,
    extra: dict | None = None,
    driver_memory: str | None = None,
):
    """A Spark session set up for the job: UTC clock, zone-less timestamps in Parquet,
    partition values kept as text. ``driver_memory`` sizes the driver's heap when this
    process starts it (local mode runs every task there); spark-submit sets its own."""
    from pyspark.sql import SparkSession

    # Local workers must run this interpreter (the one with the project's packages).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("emap-lake")
    if master:
        builder = builder.master(master)
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(shuffle_partitions),
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "200000",
        "spark.ui.showConsoleProgress": "false",
        **({"spark.driver.memory": driver_memory} if driver_memory else {}),
        **(extra or {}),
    }
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def ship_code(spark) -> Path:
    """Zip the project's packages and add them to every executor's Python path.

    The zip is named after its content and kept at one path: Spark refuses a second file
    of the same name with other content or from another path in one context, and the code
    may change between two runs of a session.
    """
    folder = Path(tempfile.gettempdir()) / "emap-spark"
    folder.mkdir(exist_ok=True)
    handle, draft = tempfile.mkstemp(dir=folder, suffix=".zip")
    os.close(handle)
    draft = Path(draft)
    with zipfile.ZipFile(draft, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in SHIPPED:
            src = PROJECT / name
            for f in [src] if src.is_file() else sorted(src.rglob("*.py")):
                # A fixed time stamp: the same code gives the same bytes, hence the same name.
                info = zipfile.ZipInfo(f.relative_to(PROJECT).as_posix(), date_time=(2020, 1, 1, 0, 0, 0))
                zf.writestr(info, f.read_bytes(), zipfile.ZIP_DEFLATED)
    target = folder / f"emap-{hashlib.sha256(draft.read_bytes()).hexdigest()[:16]}.zip"
    draft.replace(target)  # same content, same bytes: replacing a shipped zip changes nothing
    spark.sparkContext.addPyFile(str(target))
    return target


class HadoopFiles:
    """:class:`lake.layout.LocalFiles` over Hadoop's file systems (HDFS, S3A, local), so
    publishing works wherever the cluster writes."""

    def __init__(self, spark):
        self._jvm = spark.sparkContext._jvm
        self._conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _path(self, p: str):
        return self._jvm.org.apache.hadoop.fs.Path(p)

    def _fs(self, p: str):
        return self._path(p).getFileSystem(self._conf)

    def days(self, root: str) -> list[str]:
        if not self.exists(root):
            return []
        names = [s.getPath().getName() for s in self._fs(root).listStatus(self._path(root))]
        return sorted(n.split("=", 1)[1] for n in names if n.startswith("date="))

    def exists(self, path: str) -> bool:
        return bool(self._fs(path).exists(self._path(path)))

    def delete(self, path: str) -> None:
        self._fs(path).delete(self._path(path), True)

    def rename(self, src: str, dst: str) -> None:
        fs = self._fs(dst)
        fs.mkdirs(self._path(dst).getParent())
        if not fs.rename(self._path(src), self._path(dst)):
            raise OSError(f"could not move {src} to {dst}")


# -- Python side: runs on the executors, one Arrow batch at a time ------------------------------
def _validated_schema(kind: str) -> str:
    from lake.export import RAW_EVENT_COLUMNS, RAW_PING_COLUMNS

    raw = RAW_PING_COLUMNS if kind == "pings" else RAW_EVENT_COLUMNS
    types = dict(layout.table_columns(kind))
    cols = [f"{c} {_SPARK_TYPES[types[c]]}" for c in raw]
    return ", ".join(
        [*cols, "cell long", "_file string", "_row long", "_date string", "reason string", "raw string"]
    )


def validate_batches(kind: str, local_tz: str):
    """``mapInArrow`` function: validate and index raw records.

    Each output row is either a good record (``reason`` null) with its cell, or a refused
    one with its reason and the record as JSON; ``_file``/``_row`` say where it came from.
    """

    def run(batches):
        import polars as pl
        import pyarrow as pa

        from data.ingest import validate
        from geo import cells as h3cells
        from lake.export import RAW_EVENT_COLUMNS, RAW_PING_COLUMNS

        raw_cols = RAW_PING_COLUMNS if kind == "pings" else RAW_EVENT_COLUMNS
        times = _TIME_FIELDS[kind]
        out_cols = [*raw_cols, "cell", "_file", "_row", "_date", "reason", "raw"]
        for batch in batches:
            frame = pl.from_arrow(pa.Table.from_batches([batch]))
            where = frame.select("_file", "_row", "_date").with_row_index("_pos", offset=1)
            records = frame.drop("_file", "_row", "_date").with_row_index("_row", offset=1)
            good, bad = validate.CHECKS[kind](records, local_tz)
            good = good.with_columns(
                h3cells.cell_expr("lat", "lng").cast(pl.Int64).alias("cell"),
                *[pl.col(t).dt.epoch("us").alias(t) for t in times],
            )
            good = (
                good.join(where, left_on="_row", right_on="_pos", how="left")
                .drop("_row")
                .rename({"_row_right": "_row"})
            )
            good = good.with_columns(
                pl.lit(None, pl.String).alias("reason"), pl.lit(None, pl.String).alias("raw")
            )
            bad = (
                bad.join(where, left_on="_row", right_on="_pos", how="left")
                .drop("_row")
                .rename({"_row_right": "_row"})
            )
            bad = bad.with_columns(*[pl.lit(None).alias(c) for c in [*raw_cols, "cell"]])
            both = pl.concat(
                [
                    good.select(out_cols),
                    bad.select(out_cols).cast(good.select(out_cols).schema, strict=False),
                ],
                how="vertical",
            )
            yield from both.to_arrow().to_batches()

    return run


def locate_batches(branches: list[tuple[str, bytes]]):
    """``mapInArrow`` function: branch of each cell, by the store's spatial join of the
    cell's centre against the branch territories (same order, same first match)."""

    def run(batches):
        import geopandas as gpd
        import numpy as np
        import pyarrow as pa
        import shapely

        from geo import cells as h3cells
        from geo.hierarchy import BranchLocator

        ids = [b[0] for b in branches]
        gdf = gpd.GeoDataFrame(
            {"node_id": ids, "level": ["branch"] * len(ids)},
            geometry=shapely.from_wkb([b[1] for b in branches]),
        )
        locator = BranchLocator(gdf)
        for batch in batches:
            cells = batch.column("cell").to_numpy(zero_copy_only=False).astype(np.uint64)
            lat, lng = h3cells.centers(cells)
            found = locator.locate(lat, lng)
            yield pa.RecordBatch.from_arrays(
                [batch.column("cell"), pa.array(found.tolist(), type=pa.string())],
                names=["cell", "branch_id"],
            )

    return run


# -- the pipeline -------------------------------------------------------------------------------
def run(spark, lake: str, days: list[str], local_tz: str = "Asia/Shanghai", say=print) -> dict[str, int]:
    """Build and publish ``days`` of ``lake``; returns row counts per output."""
    lake = lake.rstrip("/")
    days = sorted({str(d) for d in days})
    files = HadoopFiles(spark)
    ship_code(spark)
    ref = _Reference.read(spark, f"{lake}/reference")
    received = datetime.now(UTC).replace(tzinfo=None)

    outputs, refused, cube_parts, presence_parts = {}, [], [], []
    for kind in ("pings", "parcel_events"):
        checked = _validated(spark, lake, kind, days, local_tz)
        if checked is None:
            continue
        clean, quarantined, cube, presence = _build_kind(kind, checked, ref, received, say)
        outputs[f"clean_{kind}"] = clean
        refused += quarantined
        cube_parts.append(cube)
        if presence is not None:
            presence_parts.append(presence)

    if not cube_parts:
        # Nothing to build from: leave the lake as it is rather than empty those days.
        say(f"no raw partitions for {', '.join(days)} under {lake}/raw: nothing changed")
        return {}
    outputs.update(_cubes(spark, cube_parts, presence_parts, ref.divisions))
    if refused:
        outputs["quarantine"] = _union(refused)
    counts = _write(files, lake, days, outputs, say)
    spark.catalog.clearCache()
    return counts


@dataclass(frozen=True)
class _Reference:
    """The reference tables the job joins with: branch -> division (broadcast), branch
    territories (WKB, for :func:`locate_batches`) and device owners (broadcast)."""

    divisions: Any
    branches: list[tuple[str, bytes]]
    devices: Any

    @classmethod
    def read(cls, spark, ref: str) -> _Reference:
        from pyspark.sql import functions as F

        nodes = spark.read.parquet(f"{ref}/nodes.parquet")
        divisions = F.broadcast(
            nodes.filter("level = 'branch'").select(F.col("node_id").alias("branch_id"), "division_id")
        )
        branches = [
            (r.node_id, bytes(r.territory))
            for r in nodes.filter("level = 'branch'").select("node_id", "territory").collect()
        ]
        devices = F.broadcast(
            spark.read.parquet(f"{ref}/devices.parquet").select("device_id", "courier_id", "vehicle_id")
        )
        return cls(divisions, branches, devices)


def _build_kind(kind: str, checked, ref: _Reference, received: datetime, say):
    """Of one kind's validated records: (clean records, quarantine parts, cube part,
    presence part or None)."""
    from pyspark import StorageLevel

    t0 = time.perf_counter()
    checked = checked.persist(StorageLevel.MEMORY_AND_DISK)
    rows = checked.count()
    say(f"{kind}: {rows:,} raw records read, validated and indexed ({time.perf_counter() - t0:.1f}s)")
    good = checked.filter("reason IS NULL")
    located = _located(good, ref.branches, kind, say)
    good = good.join(located, "cell", "left")
    if kind == "pings":
        good = good.join(ref.devices, "device_id", "left")
    # Not cached: two broadcast joins over the cached validation are cheaper to redo.
    good = good.withColumn("reason", _refusal(kind))
    refused = [
        _quarantine(checked.filter("reason IS NOT NULL"), kind, received),
        _quarantine(_with_raw(good.filter("reason IS NOT NULL"), kind), kind, received),
    ]
    fresh = _fresh(good, located, ref, kind, say)
    presence = _presence_part(fresh) if kind == "pings" else None
    return _clean(fresh, kind), refused, _cube_part(fresh, kind), presence


def _located(good, branches: list[tuple[str, bytes]], kind: str, say):
    """Branch of each distinct cell of ``good`` (cached, broadcast)."""
    from pyspark.sql import functions as F

    t0 = time.perf_counter()
    cells = good.select("cell").distinct().repartition(2)
    located = cells.mapInArrow(locate_batches(branches), "cell long, branch_id string").persist()
    say(f"{kind}: {located.count():,} distinct cells located ({time.perf_counter() - t0:.1f}s)")
    return F.broadcast(located)


def _day_of_ts():
    """The UTC day of ``ts`` (Unix microseconds), as the lake's ``date`` partition."""
    from pyspark.sql import functions as F

    return F.date_format(F.timestamp_micros("ts"), "yyyy-MM-dd")


def _refusal(kind: str):
    """Why the store would refuse a valid record with its cell located (and, for pings,
    its device's owner joined), or null: an unknown device, a position outside every
    branch territory, a time outside the record's partition day."""
    from pyspark.sql import functions as F

    outside = F.lit("position outside every branch territory")
    if kind == "pings":
        reason = F.when(
            F.col("courier_id").isNull() & F.col("vehicle_id").isNull(),
            F.concat(F.lit("unknown device '"), F.col("device_id"), F.lit("'")),
        ).when(F.col("branch_id").isNull(), outside)
    else:
        reason = F.when(F.col("branch_id").isNull(), outside)
    day_of_ts = _day_of_ts()
    return F.when(
        day_of_ts != F.col("_date"),
        F.concat(F.lit("ts on "), day_of_ts, F.lit(" is outside partition date="), F.col("_date")),
    ).otherwise(reason)


def _record_columns(kind: str, leave_out: tuple[str, ...] = ()) -> list:
    """The record's fields as the lake writes them (times as timestamps), but ``leave_out``."""
    from pyspark.sql import functions as F

    fields = PING_FIELDS if kind == "pings" else EVENT_FIELDS
    return [_to_timestamp(c) if c in _TIME_FIELDS[kind] else F.col(c) for c in fields if c not in leave_out]


def _with_raw(refused, kind: str):
    """``raw`` as the store's quarantine has it: the normalised record without what was
    derived."""
    from pyspark.sql import functions as F

    derived = ("cell", "branch_id", "courier_id", "vehicle_id") if kind == "pings" else ("cell", "branch_id")
    return refused.withColumn("raw", F.to_json(F.struct(*_record_columns(kind, derived))))


def _fresh(good, located, ref: _Reference, kind: str, say):
    """The accepted records, each record id once, with branch, owner and division (cached).

    Re-sent records are stored once. As in the store, which copy of a record id is kept
    is not defined (re-sent copies are the same record). The shuffle carries only what
    the record itself holds: what was derived from its device and cell (owner, branch,
    division, day) is joined back after it from broadcast tables.
    """
    from pyspark import StorageLevel

    fields = PING_FIELDS if kind == "pings" else EVENT_FIELDS
    looked_up = ("branch_id", "courier_id", "vehicle_id") if kind == "pings" else ("branch_id",)
    accepted = good.filter("reason IS NULL").select(*[c for c in fields if c not in looked_up])
    fresh = accepted.dropDuplicates(list(_KEYS[kind])).join(located, "cell", "left")
    if kind == "pings":
        fresh = fresh.join(ref.devices, "device_id", "left")
    t0 = time.perf_counter()
    fresh = fresh.join(ref.divisions, "branch_id", "left").persist(StorageLevel.MEMORY_AND_DISK)
    say(f"{kind}: {fresh.count():,} records kept after re-sent copies ({time.perf_counter() - t0:.1f}s)")
    return fresh


def _clean(fresh, kind: str):
    """The clean records as the lake keeps them."""
    return fresh.select(*_record_columns(kind), _day_of_ts().alias("date"), "division_id")


def _hour_of_ts():
    from pyspark.sql import functions as F

    return F.expr(f"ts div {_HOUR_US} * {_HOUR_US}").alias("hour")


def _cube_part(fresh, kind: str):
    """One kind's counts per (hour, cell, branch)."""
    from pyspark.sql import functions as F

    by = fresh.groupBy(_hour_of_ts(), "cell", "branch_id")
    if kind == "pings":
        return by.agg(F.count("*").alias("pings"))
    delivered = F.col("kind") == "delivered"
    return by.agg(
        _count_if(F.col("kind") == "pickup").alias("pickups"),
        _count_if(delivered).alias("deliveries"),
        _count_if(delivered & (F.col("ts") <= F.col("promised_at"))).alias("on_time"),
        _count_if(delivered & (F.col("ts") > F.col("promised_at"))).alias("late"),
        F.count("*").alias("scans"),
    )


def _presence_part(fresh):
    """Who was seen per (hour, cell, branch): a courier, else a vehicle, once."""
    from pyspark.sql import functions as F

    return fresh.select(
        _hour_of_ts(),
        "cell",
        "branch_id",
        F.coalesce("courier_id", "vehicle_id").alias("actor_id"),
        F.when(F.col("courier_id").isNotNull(), "courier").otherwise("vehicle").alias("actor_kind"),
    ).distinct()


def _cubes(spark, cube_parts: list, presence_parts: list, divisions) -> dict:
    """The fine (res 9) and coarse hourly cubes and presence tables, with division and day."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    presence = (
        presence_parts[0]
        if presence_parts
        else spark.createDataFrame(
            [], "hour long, cell long, branch_id string, actor_id string, actor_kind string"
        )
    )
    presence = presence.persist(StorageLevel.MEMORY_AND_DISK)
    fine_hourly = _hourly(cube_parts, presence).persist(StorageLevel.MEMORY_AND_DISK)
    coarse_cell = _parent(F.col("cell"), layout.COARSE_RES).alias("cell")
    coarse_presence = presence.select("hour", coarse_cell, "branch_id", "actor_id", "actor_kind").distinct()
    coarse_presence = coarse_presence.persist(StorageLevel.MEMORY_AND_DISK)
    coarse_hourly = _hourly(
        [
            fine_hourly.groupBy("hour", coarse_cell, "branch_id").agg(
                *[F.sum(c).alias(c) for c in CUBE_COUNTS]
            )
        ],
        coarse_presence,
    )
    return {
        name: _with_day(frame.join(divisions, "branch_id", "left"))
        for name, frame in (
            ("fine_hourly", fine_hourly),
            ("fine_presence", presence),
            ("coarse_hourly", coarse_hourly),
            ("coarse_presence", coarse_presence),
        )
    }


def _write(files: HadoopFiles, lake: str, days: list[str], outputs: dict, say) -> dict[str, int]:
    """Write every output to a staging folder, then publish ``days`` of them; row counts."""
    from pyspark.sql import Observation
    from pyspark.sql import functions as F

    staging = f"{lake}/_staging/{uuid.uuid4().hex}"
    counts = {}
    for name, frame in outputs.items():
        t0 = time.perf_counter()
        ds = layout.DATASETS[name]
        # Counted by the write itself (an observed metric): reading the files back, or
        # computing the frame again, would add jobs.
        written = Observation(f"written-{name}")
        frame = frame.observe(written, F.count(F.lit(1)).alias("rows"))
        frame.write.mode("overwrite").partitionBy(*ds.partitions).parquet(ds.root(staging))
        counts[name] = int(written.get["rows"])
        say(f"{name}: {counts[name]:,} rows ({time.perf_counter() - t0:.1f}s)")
    layout.publish_days(staging, lake, days, files)
    files.delete(staging)
    return counts


def _validated(spark, lake: str, kind: str, days: list[str], local_tz: str):
    """Raw records of ``days`` run through the validator, or None without raw data."""
    from pyspark.sql import functions as F

    root = layout.DATASETS[f"raw_{kind}"].root(lake)
    files = HadoopFiles(spark)
    present = [d for d in days if files.exists(f"{root}/date={d}")]
    if not present:
        return None
    raw = (
        spark.read.option("basePath", root)
        .parquet(*[f"{root}/date={d}" for d in present])
        .withColumn("_file", F.col("_metadata.file_path"))
        .withColumn("_row", F.col("_metadata.row_index") + 1)
        .withColumnRenamed("date", "_date")
        .drop("division_id")
    )
    return raw.mapInArrow(validate_batches(kind, local_tz), _validated_schema(kind))


def _quarantine(frame, kind: str, received: datetime):
    from pyspark.sql import functions as F

    return frame.select(
        F.lit(received).cast("timestamp_ntz").alias("received_at"),
        F.col("_file").alias("source"),
        F.col("_row").alias("row_number"),
        F.lit(kind).alias("record_kind"),
        "reason",
        "raw",
        F.col("_date").alias("date"),
    )


def _count_if(cond):
    from pyspark.sql import functions as F

    return F.sum(F.when(cond, 1).otherwise(0))


def _to_timestamp(column: str):
    from pyspark.sql import functions as F

    return F.timestamp_micros(column).cast("timestamp_ntz").alias(column)


def _parent(cell, res: int):
    """:func:`geo.cells.to_parent` as a Spark expression (cells are signed longs here;
    every H3 index is below 2**63, so the bit operations are the same)."""
    from pyspark.sql import functions as F

    clear = ~(0xF << 52) & ((1 << 63) - 1)
    unused = (1 << (3 * (15 - res))) - 1
    return cell.bitwiseAND(F.lit(clear)).bitwiseOR(F.lit((res << 52) | unused))


def _hourly(parts, presence):
    """One cube row per (hour, cell, branch): counts of all parts added, distinct couriers
    and vehicles counted from presence."""
    from pyspark.sql import functions as F

    keys = ["hour", "cell", "branch_id"]
    counts = presence.groupBy(*keys).agg(
        _count_if(F.col("actor_kind") == "courier").alias("couriers"),
        _count_if(F.col("actor_kind") == "vehicle").alias("vehicles"),
    )
    frame = parts[0]
    for part in parts[1:]:
        frame = frame.join(part, keys, "full")
    frame = frame.join(counts, keys, "left")
    cols = ["pings", "couriers", "vehicles", "pickups", "deliveries", "on_time", "late", "scans"]
    return frame.select(
        *keys,
        *[
            (F.coalesce(F.col(c), F.lit(0)) if c in frame.columns else F.lit(0)).cast("long").alias(c)
            for c in cols
        ],
    )


def _with_day(frame):
    from pyspark.sql import functions as F

    hour = F.timestamp_micros("hour")
    return frame.withColumn("date", F.date_format(hour, "yyyy-MM-dd")).withColumn(
        "hour", hour.cast("timestamp_ntz")
    )


def _union(frames):
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out


# -- command line -------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", required=True, help="lake root (a path or a URI: hdfs://, s3a://, file://)")
    p.add_argument(
        "--date",
        dest="dates",
        action="append",
        required=True,
        help="UTC day to build, YYYY-MM-DD (repeat for several)",
    )
    p.add_argument(
        "--master",
        help="Spark master URL, e.g. local[2], spark://host:7077, yarn "
        "(default: what spark-submit gives, else local[*])",
    )
    p.add_argument(
        "--shuffle-partitions",
        type=int,
        default=8,
        help="spark.sql.shuffle.partitions (default 8; raise on a cluster)",
    )
    p.add_argument(
        "--driver-memory",
        default="4g",
        help="driver heap when this command starts Spark (local mode: all tasks run there)",
    )
    p.add_argument(
        "--local-tz", default="Asia/Shanghai", help="zone of timestamps that carry none (the import rule)"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="lake/spark_job.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(p)
    args = p.parse_args(argv)
    return submit(args)


def submit(args) -> int:
    from datetime import date

    for d in args.dates:
        try:
            date.fromisoformat(d)
        except ValueError:
            print(f"--date {d!r}: not a date (YYYY-MM-DD)", file=sys.stderr)
            return 2
    lake = args.lake if "://" in args.lake else str(Path(args.lake).resolve())
    if "://" not in args.lake and not (Path(lake) / "reference" / "nodes.parquet").is_file():
        print(
            f"{lake}: no reference/nodes.parquet; write the reference tables first "
            "('python app.py lake export --reference-only')",
            file=sys.stderr,
        )
        return 2
    spark = session(
        args.master or os.environ.get("MASTER") or None,
        args.shuffle_partitions,
        driver_memory=args.driver_memory,
    )
    t0 = time.perf_counter()
    try:
        counts = run(
            spark,
            lake,
            args.dates,
            args.local_tz,
            say=lambda m: print(f"[{time.perf_counter() - t0:6.1f}s] {m}", flush=True),
        )
    finally:
        spark.stop()
    print(
        f"built {', '.join(sorted(args.dates))} in {time.perf_counter() - t0:.1f}s: "
        + ", ".join(f"{k} {v:,}" for k, v in counts.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
