"""The Spark job in local mode against the embedded import, on the same raw files.

The raw files are real demo records written as a collector would receive them (text
columns, three timestamp forms), with bad rows and re-sent records among them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from data.ingest.importer import import_file
from data.store.database import Store
from lake import layout
from lake.export import RAW_EVENT_COLUMNS, RAW_PING_COLUMNS, write_reference
from lake.serve import LakeStore

DAY = "2026-11-20"
START, END = datetime(2026, 11, 20), datetime(2026, 11, 21)
SAMPLE = (datetime(2026, 11, 20, 2), datetime(2026, 11, 20, 3, 30))  # UTC: the morning peak
ROOT = Path(__file__).resolve().parent.parent


def _as_received(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """Every column as text; times as ISO with Z, Unix milliseconds or local wall time."""
    out = []
    for c in columns:
        col = pl.col(c)
        if frame.schema[c] == pl.Datetime("us"):
            iso = col.dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
            millis = (col.dt.epoch("ms")).cast(pl.String)
            local = (
                col.dt.replace_time_zone("UTC")
                .dt.convert_time_zone("Asia/Shanghai")
                .dt.strftime("%Y-%m-%d %H:%M:%S%.6f")
            )
            form = pl.int_range(pl.len()) % 3
            # Milliseconds drop the microseconds: keep them for ISO and local forms only.
            text = (
                pl.when(form == 0)
                .then(iso)
                .when(form == 1)
                .then(local)
                .otherwise(pl.when(col.dt.microsecond() % 1000 == 0).then(millis).otherwise(iso))
            )
            out.append(text.alias(c))
        else:
            out.append(col.cast(pl.String).alias(c))
    return frame.select(out)


def _bad_pings(good: pl.DataFrame) -> pl.DataFrame:
    device = good["device_id"][0]
    rows = [
        (device, "2026-11-20T02:10:00Z", "abc", "114.05"),  # unreadable lat
        (device, "2026-11-20T02:11:00Z", "95", "114.05"),  # lat out of range
        (device, "yesterday", "22.55", "114.05"),  # unreadable ts
        (device, "2026-11-20T02:12:00Z", "0", "0"),  # no fix
        ("dev-ghost", "2026-11-20T02:13:00Z", "22.55", "114.05"),  # unknown device
        (device, "2026-11-20T02:14:00Z", "10.0", "150.0"),  # outside the network
        (device, "2026-11-19T23:30:00Z", "22.55", "114.05"),  # not this partition's day
    ]
    return pl.DataFrame(
        [dict(zip(["device_id", "ts", "lat", "lng"], r, strict=True)) for r in rows]
    ).with_columns(speed=pl.lit("1.5"), heading=pl.lit("90"), accuracy=pl.lit("5"))


@pytest.fixture(scope="module")
def setup(small_demo_path, tmp_path_factory):
    """(store after importing the raw files, lake with the same raw files and reference)."""
    tmp = tmp_path_factory.mktemp("spark")
    shutil.copy(small_demo_path, tmp / "emap.duckdb")
    store = Store(tmp / "emap.duckdb")
    pings = store.sql(
        f"SELECT {', '.join(RAW_PING_COLUMNS)} FROM pings WHERE ts >= ? AND ts < ? ORDER BY device_id, ts",
        list(SAMPLE),
    )
    events = store.sql(
        f"SELECT {', '.join(RAW_EVENT_COLUMNS)} FROM parcel_events "
        "WHERE ts >= ? AND ts < ? ORDER BY event_id",
        list(SAMPLE),
    )
    for table in ("ping_rows", "parcel_events", "cube_hourly", "cube_presence", "quarantine"):
        store.cursor().execute(f"DELETE FROM {table}")
    lake = tmp / "lake"
    write_reference(store.cursor(), lake)

    raw_pings = _as_received(pings, RAW_PING_COLUMNS)
    half = len(raw_pings) // 2
    resent = raw_pings.slice(half - 40, 40)
    ping_files = [raw_pings.slice(0, half), pl.concat([_bad_pings(pings), raw_pings.slice(half), resent])]
    raw_events = _as_received(events, RAW_EVENT_COLUMNS)
    bad_events = raw_events.head(3).with_columns(
        pl.Series("kind", ["teleported", "pickup", "delivered"]),
        pl.Series("lat", ["22.5", "10.0", "22.5"]),
        pl.Series("lng", ["114.0", "150.0", "114.0"]),
        pl.Series("event_id", ["e-bad-1", "e-bad-2", None]),
        pl.Series("parcel_id", ["p-x", "p-y", None]),
    )
    event_files = [pl.concat([raw_events, bad_events, raw_events.slice(10, 25)])]
    files = {}
    for kind, frames in (("pings", ping_files), ("parcel_events", event_files)):
        folder = lake / "raw" / kind / f"date={DAY}" / "division_id=div-south"
        folder.mkdir(parents=True)
        for i, frame in enumerate(frames):
            path = folder / f"part-{i}.parquet"
            frame.write_parquet(path)
            files.setdefault(kind, []).append(path)
            import_file(store, path, kind)
    assert len(pings) > 10_000 and len(events) > 3_000
    yield store, lake
    store.close()


@pytest.fixture(scope="module")
def built(setup):
    """The lake after the Spark job built the day (run twice: the second replaces the first)."""
    from lake.spark_job import run, session

    store, lake = setup
    # A short run on little data: the driver's JIT compiles with C1 only (C2's optimising
    # compiles would cost more than they save here) and one GC thread; about a third less
    # CPU time than a default JVM, same results.
    spark = session(
        "local[2]",
        shuffle_partitions=4,
        extra={
            "spark.ui.enabled": "false",
            "spark.driver.memory": "1g",
            "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",
        },
    )
    try:
        first = run(spark, str(lake), [DAY], say=lambda m: None)
        files = sorted(p.relative_to(lake) for p in (lake / "cube").rglob("*.parquet"))
        second = run(spark, str(lake), [DAY], say=lambda m: None)
        # A day with no raw partition changes nothing (it does not empty that day).
        nothing = run(spark, str(lake), ["2026-11-18"], say=lambda m: None)
    finally:
        spark.stop()
    assert nothing == {}
    return store, lake, first, second, files


def _scopes(store) -> list[str]:
    busiest = store.node_figures("hq", START, END, level="branch").sort("pings", descending=True)
    branch = busiest["node_id"][0]
    region, division = store.sql("SELECT region_id, division_id FROM nodes WHERE node_id = ?", [branch]).row(
        0
    )
    return ["hq", division, region, branch]


def test_spark_cube_equals_the_embedded_cube_at_every_level(built, tmp_path):
    store, lake, *_ = built
    with LakeStore(tmp_path / "lake.duckdb", lake) as on_lake:
        for res in (9, 8, 7, 6, 5, 4):
            for scope in _scopes(store):
                want = store.cube(scope, START, END, res=res)
                assert len(want) > 0 and want["couriers"].sum() > 0
                assert on_lake.cube(scope, START, END, res=res).equals(want), (scope, res)
                assert on_lake.cube(scope, START, END, res=res, per_hour=False).equals(
                    store.cube(scope, START, END, res=res, per_hour=False)
                ), (scope, res)
        for level in ("division", "region", "branch"):
            want = store.node_figures("hq", START, END, level=level)
            assert on_lake.node_figures("hq", START, END, level=level).equals(want), level


def test_spark_fine_tables_equal_the_store_row_for_row(built):
    store, lake, *_ = built
    con = store.cursor()
    pairs = {
        "fine_hourly": "cube_hourly",
        "fine_presence": "cube_presence",
        "clean_pings": "pings",
        "clean_parcel_events": "parcel_events",
    }
    for dataset, table in pairs.items():
        t = "hour" if table.startswith("cube") else "ts"
        ours = f"SELECT * FROM {table} WHERE {t} >= TIMESTAMP '{START}' AND {t} < TIMESTAMP '{END}'"
        theirs = layout.read_sql(lake, dataset)
        n = con.execute(f"SELECT count(*) FROM ({ours})").fetchone()[0]
        assert n > 0
        assert con.execute(f"SELECT count(*) FROM ({theirs})").fetchone()[0] == n, dataset
        assert con.execute(f"SELECT count(*) FROM ({ours} EXCEPT ALL {theirs})").fetchone()[0] == 0, dataset


def test_spark_refuses_what_import_refuses_with_the_same_reasons(built):
    store, lake, *_ = built
    ours = store.sql("SELECT source, row_number, reason FROM quarantine")
    ours = {(Path(s).name, r, why) for s, r, why in ours.iter_rows()}
    theirs = duckdb.sql(
        f"SELECT source, row_number, reason FROM ({layout.read_sql(lake, 'quarantine')})"
    ).fetchall()
    theirs = {(Path(s.removeprefix("file:")).name, r, why) for s, r, why in theirs}
    # The only difference: the raw lake's partition rule (a record belongs to its day).
    extra = theirs - ours
    assert extra == {("part-1.parquet", 7, "ts on 2026-11-19 is outside partition date=2026-11-20")}
    assert ours - theirs == set() and len(ours) >= 8
    reasons = {why for *_, why in ours}
    assert "unknown device 'dev-ghost'" in reasons
    assert "position outside every branch territory" in reasons
    assert any(why.startswith("kind must be one of") for why in reasons)


def test_rerunning_a_day_replaces_it(built):
    _store, lake, first, second, files = built
    assert first == second
    assert files, "the first run wrote cube files"
    after = duckdb.sql(f"SELECT count(*) FROM ({layout.read_sql(lake, 'fine_hourly')})").fetchall()[0][0]
    assert after == first["fine_hourly"]
    assert not (lake / "_staging").exists() or not any((lake / "_staging").iterdir())
    assert len(files) == len(list((lake / "cube").rglob("*.parquet")))


def test_spark_command_refuses_bad_input_before_starting(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "EMAP_DATA_DIR": str(tmp_path)}
    bad_day = subprocess.run(
        [sys.executable, "app.py", "lake", "spark", "--lake", str(tmp_path), "--date", "2026-13-01"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad_day.returncode == 2 and "'2026-13-01': not a date" in bad_day.stderr
    no_lake = subprocess.run(
        [sys.executable, "app.py", "lake", "spark", "--lake", str(tmp_path / "none"), "--date", DAY],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert no_lake.returncode == 2 and "reference/nodes.parquet" in no_lake.stderr


def test_the_sample_spans_couriers_and_vehicles(setup):
    store, _lake = setup
    kinds = store.sql("SELECT actor_kind, count(*) AS n FROM cube_presence GROUP BY ALL")
    assert set(kinds["actor_kind"]) == {"courier", "vehicle"}
    assert store.scalar("SELECT count(*) FROM pings WHERE ts < ?", [START]) == 1  # the other day's row
    assert START + timedelta(hours=2) <= store.scalar("SELECT min(ts) FROM pings WHERE ts >= ?", [START])
