import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from data.ingest.importer import ImportFileError, import_file
from data.store.database import Store

ROOT = Path(__file__).resolve().parents[1]

OUTLETS = """outlet_id,name,lat,lng,capacity_couriers,capacity_parcels_per_hour
o-1,南山1号,22.5330,113.9300,10,120
o-2,福田1号,22.5410,114.0550,8,96
o-bad,海上,0,0,3,30
o-sea,公海,10.0,130.0,3,30
"""
COURIERS = """courier_id,name,outlet_id,mode,device_id
c-1,王伟,o-1,walk,dev-1
c-2,李娜,o-2,ebike,dev-2
c-3,张三,o-9,ebike,dev-3
"""
PINGS = """device_id,timestamp,lat,lon,speed,bearing,accuracy
dev-1,2026-11-20T08:00:00+08:00,22.5331,113.9301,1.2,90,5
dev-1,2026-11-20T08:01:00+08:00,22.5335,113.9310,1.3,90,5
dev-2,1795132920,22.5412,114.0551,4.0,180,8
dev-2,2026-11-20 08:05:00,22.5420,114.0560,4.1,180,8
dev-1,not a time,22.5331,113.9301,1.2,90,5
dev-1,2026-11-20T08:02:00+08:00,91,113.9301,1.2,90,5
dev-9,2026-11-20T08:02:00+08:00,22.5331,113.9301,1.2,90,5
dev-2,2026-11-20T08:06:00+08:00,48.85,2.35,1.2,90,5
dev-1,2026-11-20T08:01:00+08:00,22.5335,113.9310,1.3,90,5
"""


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture
def network(empty_store, tmp_path):
    import_file(empty_store, _write(tmp_path, "outlets.csv", OUTLETS))
    import_file(empty_store, _write(tmp_path, "couriers.csv", COURIERS))
    return empty_store


def test_outlets_and_couriers(network):
    outlets = network.sql("SELECT outlet_id, branch_id FROM outlets ORDER BY 1")
    assert outlets.rows() == [("o-1", "b-440305"), ("o-2", "b-440304")]
    q = network.sql("SELECT row_number, reason FROM quarantine ORDER BY record_kind, row_number").rows()
    # a CSV row's number is its line in the file (1 is the header)
    assert (4, "position 0,0 (no GPS fix)") in q
    assert (5, "position outside every branch territory") in q
    assert (4, "unknown outlet 'o-9'") in q
    assert network.sql("SELECT device_id, courier_id FROM devices ORDER BY 1").rows() == [
        ("dev-1", "c-1"),
        ("dev-2", "c-2"),
    ]


def test_pings_conservation_quarantine_and_reimport(network, tmp_path):
    path = _write(tmp_path, "pings.csv", PINGS)
    first = import_file(network, path)
    assert first.kind == "pings"
    assert (first.rows, first.accepted, first.rejected, first.duplicates) == (9, 4, 4, 1)
    assert first.accepted + first.rejected + first.duplicates == first.rows
    reasons = dict(
        network.sql(
            "SELECT row_number, reason FROM quarantine WHERE record_kind = 'pings' AND source = ?",
            [str(path)],
        ).rows()
    )
    assert reasons == {
        6: "ts could not be read as a timestamp",
        7: "lat out of range [-90, 90]",
        8: "unknown device 'dev-9'",
        9: "position outside every branch territory",
    }
    stored = network.sql("SELECT device_id, ts, courier_id, branch_id FROM pings ORDER BY ts")
    assert stored["courier_id"].to_list() == ["c-1", "c-1", "c-2", "c-2"]
    assert stored["ts"][0].isoformat() == "2026-11-20T00:00:00"  # stored in UTC
    assert network.scalar("SELECT sum(pings) FROM cube_hourly") == 4
    assert network.scalar("SELECT sum(couriers) FROM cube_hourly") >= 2

    again = import_file(network, path)
    assert (again.accepted, again.duplicates) == (0, 5)
    assert network.scalar("SELECT count(*) FROM pings") == 4
    assert network.scalar("SELECT sum(pings) FROM cube_hourly") == 4  # the cube did not double


def test_parquet_events_in_small_batches(network, tmp_path):
    n = 2500
    frame = pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "parcel_id": [f"p{i // 2}" for i in range(n)],
            "kind": ["delivered" if i % 2 else "out_for_delivery" for i in range(n)],
            "ts": [datetime(2026, 11, 20, 1) + timedelta(seconds=i) for i in range(n)],
            "lat": [22.533] * n,
            "lng": [113.93] * n,
            "promised_at": [datetime(2026, 11, 20, 1, 30)] * n,
        }
    )
    frame = frame.with_columns(pl.col("ts", "promised_at").dt.replace_time_zone("UTC"))
    path = tmp_path / "scans.parquet"
    frame.write_parquet(path)
    seen = []
    report = import_file(
        network, path, batch_rows=1000, progress=lambda done, total: seen.append((done, total))
    )
    # the first batch is stored in quarters (the store starts early), the others whole
    assert report.accepted == n
    assert seen == [(250, n), (500, n), (750, n), (1000, n), (2000, n), (2500, n)]
    cube = network.sql(
        "SELECT sum(deliveries)::INT, sum(on_time)::INT, sum(late)::INT, sum(scans)::INT FROM cube_hourly"
    ).row(0)
    delivered = frame.filter(pl.col("kind") == "delivered")
    expected_on_time = delivered.filter(pl.col("ts") <= pl.col("promised_at")).height
    assert 0 < expected_on_time < n // 2
    assert cube == (n // 2, expected_on_time, n // 2 - expected_on_time, n)


def test_unreadable_files_change_nothing(network, tmp_path):
    before = network.counts()
    garbage = tmp_path / "pings.parquet"
    garbage.write_bytes(b"this is not parquet at all")
    with pytest.raises(ImportFileError, match="cannot be read"):
        import_file(network, garbage)
    with pytest.raises(ImportFileError, match="no such file"):
        import_file(network, tmp_path / "missing.csv")
    with pytest.raises(ImportFileError, match="header"):
        import_file(network, _write(tmp_path, "pings.csv", "a,a\n1,2\n"))
    with pytest.raises(ImportFileError, match="unsupported"):
        import_file(network, _write(tmp_path, "pings.xlsx", "x"))
    with pytest.raises(ImportFileError, match="cannot tell"):
        import_file(network, _write(tmp_path, "data.csv", "foo,bar\n1,2\n"))
    assert network.counts() == before


def test_command_line_import_prints_counts(tmp_path):
    env = {"EMAP_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for name, text in (("outlets.csv", OUTLETS), ("couriers.csv", COURIERS), ("pings.csv", PINGS)):
        _write(tmp_path, name, text)
    run = subprocess.run(
        [
            sys.executable,
            "app.py",
            "import",
            str(tmp_path / "outlets.csv"),
            str(tmp_path / "couriers.csv"),
            str(tmp_path / "pings.csv"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "pings: 9 rows read = 4 accepted + 4 rejected + 1 duplicates" in run.stdout
    with Store(tmp_path / "emap.duckdb", read_only=True) as store:  # the imports history
        done = store.sql("SELECT channel, file_name, rows, accepted, rejected, duplicates FROM imports")
    assert ("cli", "pings.csv", 9, 4, 4, 1) in done.rows()
    assert len(done) == 3
    bad = subprocess.run(
        [sys.executable, "app.py", "import", str(tmp_path / "nope.parquet")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "no such file" in bad.stderr


def _expected_cube(frame: pl.DataFrame) -> dict:
    """(hour, cell) -> (pings, couriers), computed with the h3 package from the raw rows."""
    import h3

    rows = frame.unique(["device_id", "ts"]).to_dicts()
    cube: dict = {}
    for r in rows:
        hour = r["ts"].replace(minute=0, second=0, microsecond=0)
        cell = h3.str_to_int(h3.latlng_to_cell(r["lat"], r["lng"], 9))
        n, devices = cube.setdefault((hour, cell), (0, set()))
        devices.add(r["device_id"])
        cube[(hour, cell)] = (n + 1, devices)
    return {k: (n, len(d)) for k, (n, d) in cube.items()}


def _stored_cube(store) -> dict:
    rows = store.sql("SELECT hour, cell, pings, couriers FROM cube_hourly").rows()
    return {(h, c): (p, n) for h, c, p, n in rows}


def _two_device_walk(n: int, start: datetime, seconds: int, steps: tuple[int, int]) -> pl.DataFrame:
    """``n`` fixes of two devices every ``seconds``, walking a grid of ``steps`` cells."""
    return pl.DataFrame(
        {
            "device_id": ["dev-1" if i % 3 else "dev-2" for i in range(n)],
            "ts": [start + timedelta(seconds=seconds * i) for i in range(n)],
            "lat": [22.5330 + 0.0004 * (i % steps[0]) for i in range(n)],
            "lng": [113.9300 + 0.0004 * (i % steps[1]) for i in range(n)],
        }
    )


def test_pings_in_many_batches_store_each_record_once_and_keep_the_cube_exact(network, tmp_path):
    n = 900
    walk = _two_device_walk(n, datetime(2026, 11, 20), 20, (40, 25)).sort("device_id", "ts")
    first = walk.head(400)
    p1 = tmp_path / "pings-sorted.parquet"
    first.with_columns(pl.col("ts").dt.replace_time_zone("UTC")).write_parquet(p1)
    report = import_file(network, p1, batch_rows=100)
    assert (report.accepted, report.duplicates) == (400, 0)
    assert _stored_cube(network) == _expected_cube(first)

    # A shuffled file: rows already stored, rows repeated in other batches, new rows.
    second = pl.concat([walk.slice(300, 600), walk.slice(350, 80), walk.slice(700, 30)]).sample(
        fraction=1.0, shuffle=True, seed=3
    )
    p2 = tmp_path / "pings-shuffled.parquet"
    second.with_columns(pl.col("ts").dt.replace_time_zone("UTC")).write_parquet(p2)
    report = import_file(network, p2, batch_rows=64)
    new = n - 400
    assert (report.rows, report.accepted, report.rejected) == (len(second), new, 0)
    assert report.duplicates == len(second) - new
    assert network.scalar("SELECT count(*) FROM pings") == n
    assert _stored_cube(network) == _expected_cube(walk)
    sorted_again = import_file(network, p1, batch_rows=100)  # batches clean in themselves
    assert (sorted_again.accepted, sorted_again.duplicates) == (0, 400)
    again = import_file(network, p2, batch_rows=500)
    assert (again.accepted, again.duplicates) == (0, len(second))
    assert _stored_cube(network) == _expected_cube(walk)
    # every stored row's cell is in cell_branch (other readers map cells through it)
    assert network.scalar("SELECT count(*) FROM pings ANTI JOIN cell_branch USING (cell)") == 0


def test_clean_files_are_stored_in_one_pass_and_repeats_in_a_second(network, tmp_path):
    """A file with no stored or repeated record id is written once (the bulk path),
    also into hours the cube already holds; one that repeats ids is read again and
    deduplicated row by row. Both leave the cube exact."""
    start = datetime(2026, 11, 21, 8, 0)
    walk = pl.DataFrame(
        {
            "device_id": [f"dev-{1 + i % 2}" for i in range(600)],
            "ts": [start + timedelta(seconds=15 * i) for i in range(600)],
            "lat": [22.5330 + 0.0003 * (i % 30) for i in range(600)],
            "lng": [113.9300 + 0.0003 * (i % 20) for i in range(600)],
        }
    )
    one, two = walk.filter(pl.col("device_id") == "dev-1"), walk.filter(pl.col("device_id") == "dev-2")
    paths = []
    for name, frame in (("pings-1.parquet", one), ("pings-2.parquet", two)):
        paths.append(tmp_path / name)
        frame.with_columns(pl.col("ts").dt.replace_time_zone("UTC")).write_parquet(paths[-1])
    first = import_file(network, paths[0], batch_rows=50)
    second = import_file(network, paths[1], batch_rows=70)  # same hours and cells, other courier
    for report, frame in ((first, one), (second, two)):
        assert (report.accepted, report.duplicates) == (len(frame), 0)
        assert not any(stage.startswith("first pass") for stage in report.seconds)
    assert _stored_cube(network) == _expected_cube(walk)  # couriers recounted where both were
    assert network.scalar("SELECT max(couriers) FROM cube_hourly") == 2

    mixed = tmp_path / "pings-mixed.parquet"
    pl.concat([two.head(10), walk.tail(5)]).with_columns(
        pl.col("ts").dt.replace_time_zone("UTC")
    ).write_parquet(mixed)
    again = import_file(network, mixed, batch_rows=4)
    assert (again.accepted, again.duplicates) == (0, 15)
    assert any(stage.startswith("first pass") for stage in again.seconds)
    assert network.scalar("SELECT count(*) FROM pings") == len(walk)
    assert _stored_cube(network) == _expected_cube(walk)


def test_a_file_that_breaks_half_way_stores_nothing(network, tmp_path):
    import pyarrow.parquet as pq

    n = 5000
    frame = pl.DataFrame(
        {
            "device_id": ["dev-1"] * n,
            "ts": [datetime(2026, 11, 20) + timedelta(seconds=i) for i in range(n)],
            "lat": [22.5331] * n,
            "lng": [113.9301] * n,
        }
    )
    path = tmp_path / "pings.parquet"
    frame.with_columns(pl.col("ts").dt.replace_time_zone("UTC")).write_parquet(
        path, row_group_size=1000, compression="zstd", statistics=False
    )
    good = path.read_bytes()
    # spoil the data of the fourth row group: the reader fails (reading ahead of the
    # store) once the first batch went into the INSERT
    chunk = pq.ParquetFile(path).metadata.row_group(3).column(1)
    raw = bytearray(good)
    start = chunk.data_page_offset + 20
    raw[start : start + 40] = b"\xff" * 40
    path.write_bytes(bytes(raw))
    before = network.counts()
    with pytest.raises(ImportFileError, match="after data row 3000.*nothing from this file"):
        import_file(network, path, batch_rows=1000)
    assert network.counts() == before
    path.write_bytes(good)  # the repaired file imports whole
    report = import_file(network, path, batch_rows=1000)
    assert (report.accepted, report.duplicates) == (n, 0)
    assert _stored_cube(network) == _expected_cube(frame)


def test_bad_rows_in_later_batches_keep_their_row_numbers(network, tmp_path):
    # batches are prepared two at a time, ahead of the store: each bad row must still be
    # quarantined under its own data row number, and the good rows stored once
    n, bad_rows = 2500, {7, 301, 777, 1501, 2499}  # 1-based, across several batches
    frame = pl.DataFrame(
        {
            "device_id": ["dev-1"] * n,
            "ts": [datetime(2026, 11, 20) + timedelta(seconds=10 * i) for i in range(n)],
            "lat": [95.0 if i + 1 in bad_rows else 22.5331 for i in range(n)],
            "lng": [113.9301] * n,
        }
    ).with_columns(pl.col("ts").dt.replace_time_zone("UTC"))
    path = tmp_path / "pings-bad-here-and-there.parquet"
    frame.write_parquet(path)
    report = import_file(network, path, batch_rows=300)
    assert (report.rows, report.accepted, report.rejected) == (n, n - len(bad_rows), len(bad_rows))
    quarantined = network.sql("SELECT row_number FROM quarantine WHERE source = ? ORDER BY 1", [str(path)])
    assert quarantined["row_number"].to_list() == sorted(bad_rows)
    assert network.scalar("SELECT count(*) FROM pings") == n - len(bad_rows)


@pytest.mark.parametrize("fold_rows", [1, 10**9])  # folded after every batch; once, at the end
def test_cube_shares_folded_during_a_file_keep_the_cube_exact(network, tmp_path, monkeypatch, fold_rows):
    from data.store import bulk_load

    monkeypatch.setattr(bulk_load, "_FOLD_ROWS", fold_rows)
    monkeypatch.setattr(bulk_load, "_PRESENCE_SLICE", 7)  # presence rows inserted in many slices
    n = 600
    # shuffled: an actor's fixes in one cell-hour fall in many batches
    walk = _two_device_walk(n, datetime(2026, 11, 21), 37, (30, 20)).sample(
        fraction=1.0, shuffle=True, seed=3
    )
    path = tmp_path / "pings-folded.parquet"
    walk.with_columns(pl.col("ts").dt.replace_time_zone("UTC")).write_parquet(path)
    report = import_file(network, path, batch_rows=50)
    assert (report.accepted, report.duplicates) == (n, 0)
    assert _stored_cube(network) == _expected_cube(walk)


RAGGED = (
    (
        b"device_id,timestamp,lat,lon\n"  # 1
        b"dev-1,2026-11-20T08:00:00+08:00,22.5331,113.9301\n"  # 2
        b"dev-1,2026-11-20T08:01:00+08:00\n"  # 3 short: cut off
        b"dev-1,2026-11-20T08:02:00+08:00,22.5332,113.9302\n"  # 4
        b"dev-2,2026-11-20T08:03:00+08:00,22.5412,114.0551,4.0,extra\n"  # 5 long
        b'dev-2,"2026-11-20T08:04:00+08:00,22.5413,114.0552\n'  # 6 quote never closed
        b"dev-2,2026-11-20T08:05:00+08:00,22.5414,114.0553\n"  # 7
        b'dev-2,2026-11-20T08:06:00+08:00,"22.5415"x,114.0554\n'  # 8 text after a quote
        b"\n"  # 9 blank: skipped
        b"dev-1,2026-11-20T08:07:00+08:00,95,113.9301\n"  # 10 lat out of range
    )
    + "dev-1,2026-11-20T08:08:00+08:00,22.53\xff,113.93\n".encode("latin-1")
    + (  # 11 not UTF-8
        b"dev-1,2026-11-20T08:09:00+08:00,22.5335,113.9305\r\n"  # 12
        b'dev-2,"2026-11-20T08:10:00+08:00",22.5416,114.0555\n'  # 13 quoted, fine
    )
)


def test_ragged_csv_keeps_its_good_rows_and_quarantines_each_bad_line(network, tmp_path):
    path = tmp_path / "pings-cut.csv"
    path.write_bytes(RAGGED)
    report = import_file(network, path)
    assert (report.rows, report.accepted, report.rejected, report.duplicates) == (11, 5, 6, 0)
    assert report.accepted + report.rejected + report.duplicates == report.rows
    stored = network.sql("SELECT ts FROM pings ORDER BY ts")["ts"].to_list()
    assert [t.minute for t in stored] == [0, 2, 5, 9, 10]  # UTC 00:mm
    quarantined = network.sql(
        "SELECT row_number, reason, raw FROM quarantine WHERE source = ? ORDER BY 1", [str(path)]
    ).rows()
    assert [(n, why) for n, why, _ in quarantined] == [
        (3, "2 fields where the header has 4"),
        (5, "6 fields where the header has 4"),
        (6, "broken quotes: unexpected end of data"),
        (8, "broken quotes: ',' expected after '\"'"),
        (10, "lat out of range [-90, 90]"),
        (11, "not UTF-8 text: byte 0xff at column 38"),
    ]
    raws = {n: raw for n, _, raw in quarantined}
    assert raws[3] == '"dev-1,2026-11-20T08:01:00+08:00"'  # the line as read, as JSON text
    assert raws[11] == '"dev-1,2026-11-20T08:08:00+08:00,22.53\\\\xff,113.93"'  # the byte escaped
    assert report.samples[:2] == [
        (3, "2 fields where the header has 4"),
        (5, "6 fields where the header has 4"),
    ]

    again = import_file(network, path)
    assert (again.rows, again.accepted, again.rejected, again.duplicates) == (11, 0, 6, 5)
    assert network.scalar("SELECT count(*) FROM quarantine WHERE source = ?", [str(path)]) == 6
    assert network.scalar("SELECT count(*) FROM pings") == 5
    assert network.scalar("SELECT sum(pings) FROM cube_hourly") == 5


def test_a_clean_csv_keeps_line_numbers_on_the_fast_path(network, tmp_path):
    text = "device_id,timestamp,lat,lon\n" + "".join(
        f"dev-1,2026-11-20T08:{i:02d}:00+08:00,{95 if i in (3, 40) else 22.5331},113.9301\n"
        for i in range(50)
    )
    path = _write(tmp_path, "pings.csv", text)
    report = import_file(network, path, batch_rows=16)
    assert (report.rows, report.accepted, report.rejected) == (50, 48, 2)
    rows = network.sql("SELECT row_number FROM quarantine WHERE source = ? ORDER BY 1", [str(path)])
    assert rows["row_number"].to_list() == [5, 42]  # lines of the file, the header is line 1


def test_files_that_are_not_csv_at_all_change_nothing(network, tmp_path):
    before = network.counts()
    binary = tmp_path / "pings.csv"
    binary.write_bytes(b"PK\x03\x04\x00\x00binary zip\n\x00\x01")
    with pytest.raises(ImportFileError, match="binary data"):
        import_file(network, binary)
    empty = tmp_path / "pings-empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ImportFileError, match="header"):
        import_file(network, empty)
    assert network.counts() == before


def test_a_bad_line_far_into_a_file_imported_batch_by_batch(network, tmp_path, monkeypatch):
    # pyarrow stops at the bad line after batches before it were committed (as in the
    # server's imports): read again line by line, those rows are not counted twice
    from data.ingest import importer

    monkeypatch.setattr(importer, "_CSV_BLOCK_BYTES", 4096)
    lines = [
        f"dev-1,2026-11-20T08:{i // 60:02d}:{i % 60:02d}+08:00,{22.5331 + i // 60 * 1e-4:.4f},113.9301"
        for i in range(600)
    ]
    lines[550] = "dev-1,2026-11-20T09:00:00+08:00"
    path = _write(tmp_path, "pings.csv", "device_id,timestamp,lat,lon\n" + "\n".join(lines) + "\n")
    seen = []
    report = import_file(
        network, path, batch_rows=50, each_batch=True, progress=lambda done, total: seen.append(done)
    )
    assert 0 in seen[1:]  # read again from the top
    assert (report.rows, report.accepted, report.rejected, report.duplicates) == (600, 599, 1, 0)
    assert report.samples == [(552, "2 fields where the header has 4")]
    assert network.scalar("SELECT count(*) FROM pings") == 599
    assert network.scalar("SELECT sum(pings) FROM cube_hourly") == 599
