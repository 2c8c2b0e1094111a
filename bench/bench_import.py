"""Import of a Parquet file of pings, end to end (read, validate, index, locate, store, cube).

Usage:
    python bench/bench_import.py --rows 10000000            # throughput at 10 M rows
    python bench/bench_import.py --rows 30000000 --memory-limit 1GB   # peak memory at 30 M rows
    python bench/bench_import.py --rows 10000000 --via-server  # also POSTed to /api/v1/import

With ``--via-server`` the same file is also sent to ``POST /api/v1/import`` of a real
server (``python -m cli.ingest`` on a copy of the network store, 127.0.0.1) and its rate
is printed beside the command line's.

The pings come from the demo generator (realistic tracks of the default network, day
after day until ``--rows`` is reached), written once to a Parquet file in --work. The
import runs in a child process so that its peak resident memory is its own. The plain
approach (the ``h3`` package in a Python loop plus pandas) runs on a sample of the
same rows in the same run, and the ratio is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_input(work: Path, rows: int, size: str) -> tuple[Path, Path]:
    """A store with the network (no pings) and a Parquet file of ``rows`` pings."""
    import polars as pl
    import pyarrow.parquet as pq

    from data.demo import generator as demo
    from data.store.database import Store
    from geo.hierarchy import load_tree

    net_db = work / f"network-{size}.duckdb"
    pings = work / f"pings-{size}-{rows}.parquet"
    if net_db.exists() and pings.exists():
        return net_db, pings
    net_db.unlink(missing_ok=True)
    spec = demo.SIZES[size]
    with Store(net_db) as store:
        store.save_tree(load_tree())
        net = demo.build_network(store, spec, seed=7)
        for name, key in (
            ("outlets", "outlet_id"),
            ("couriers", "courier_id"),
            ("vehicles", "vehicle_id"),
            ("devices", "device_id"),
        ):
            store.upsert(name, net[name], key)
    surges = pl.DataFrame(
        schema={
            "branch_id": pl.String,
            "start_hour": pl.Datetime("us"),
            "end_hour": pl.Datetime("us"),
            "factor": pl.Float64,
            "cause": pl.String,
        }
    )
    writer, written, day = None, 0, date(2026, 11, 1)
    while written < rows:
        frame, _ = demo.generate_day(net, day, spec, 7, surges)
        frame = frame.head(rows - written)
        table = frame.to_arrow()
        writer = writer or pq.ParquetWriter(pings, table.schema)
        writer.write_table(table, row_group_size=1_000_000)
        written += len(frame)
        day += timedelta(days=1)
        print(f"  prepared {written:,} / {rows:,} pings", file=sys.stderr)
    writer.close()
    return net_db, pings


def _cpu_seconds() -> float:
    """CPU time of this process, all threads (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_import(net_db: Path, pings: Path, work: Path, memory_limit: str) -> dict:
    """Copy the network store and import the file into it, in this process."""
    import shutil

    from data.ingest.importer import import_file
    from data.store.database import Store

    db = work / "import-target.duckdb"
    db.unlink(missing_ok=True)
    Path(f"{db}.wal").unlink(missing_ok=True)  # a crashed run's log would be replayed on the copy
    shutil.copy(net_db, db)
    with Store(db, memory_limit=memory_limit) as store:
        t0, c0 = time.perf_counter(), _cpu_seconds()
        report = import_file(store, pings, kind="pings")
        seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
        cube_rows = store.scalar("SELECT count(*) FROM cube_hourly")
    return {
        "stages": report.seconds,
        "rows": report.rows,
        "accepted": report.accepted,
        "rejected": report.rejected,
        "duplicates": report.duplicates,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "cube_rows": cube_rows,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


class LiveBatches:
    """Batches of live pings sent to the server while the import runs, with their
    acknowledgement latencies (does the import starve live ingest?)."""

    def __init__(
        self, url: str, token: str, device: str, lat: float, lng: float, size: int = 100, start: int = 0
    ):
        import threading

        self.url, self.token, self.size, self.start = url, token, size, start
        self.device, self.lat, self.lng = device, lat, lng
        self.latencies: list[float] = []
        self.failed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import urllib.request

        ts = 1_796_083_200 + self.start  # 2026-12-01, after the benchmark's days
        while not self.stop.is_set():
            batch = [
                {"device_id": self.device, "ts": ts + k, "lat": self.lat, "lng": self.lng}
                for k in range(self.size)
            ]
            ts += self.size
            request = urllib.request.Request(
                f"{self.url}/api/v1/pings",
                data=json.dumps(batch).encode(),
                method="POST",
                headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            )
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=120) as answer:
                    answer.read()
                self.latencies.append(time.perf_counter() - t0)
            except OSError:
                self.failed += 1
            self.stop.wait(0.1)

    def summary(self) -> str:
        lat = sorted(self.latencies)
        if not lat:
            return f"no live batch acknowledged ({self.failed} failed)"

        def q(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

        return (
            f"{len(lat)} live batches of {self.size} pings acknowledged during the import ({self.failed} failed): "
            f"latency p50 {q(0.5):.0f} ms, p90 {q(0.9):.0f} ms, p99 {q(0.99):.0f} ms, max {lat[-1] * 1000:.0f} ms"
        )


def via_server(net_db: Path, pings: Path, work: Path) -> dict:
    """POST the file to /api/v1/import of a server on a copy of the network store, with
    live batches of pings sent meanwhile."""
    import shutil
    import socket
    import urllib.request

    from data.ingest.tokens import create_token
    from data.store.database import Store

    db = work / "server-target.duckdb"
    db.unlink(missing_ok=True)
    Path(f"{db}.wal").unlink(missing_ok=True)
    shutil.copy(net_db, db)
    with Store(db) as store:
        token = create_token(store, "system", "bench-import")
        device = store.scalar("SELECT min(device_id) FROM devices WHERE courier_id IS NOT NULL")
        lat, lng = store.sql("SELECT lat, lng FROM outlets ORDER BY outlet_id LIMIT 1").row(0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EMAP_DATA_DIR": str(work), "EMAP_ACCESS_LOG": "false"}
    with open(work / "server.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.ingest", "--db", str(db), "--port", str(port), "--osmand-port", "0"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/v1/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start; see {work / 'server.log'}") from None
                time.sleep(0.2)
        # the same live batches for 10 s before the import: the idle figures to compare with
        idle = LiveBatches(url, token, device, lat, lng, start=20_000_000)
        idle.thread.start()
        time.sleep(10)
        idle.stop.set()
        idle.thread.join()
        live = LiveBatches(url, token, device, lat, lng)
        cpu0 = _cpu_of(proc.pid)
        size = pings.stat().st_size
        with open(pings, "rb") as body:
            request = urllib.request.Request(
                f"{url}/api/v1/import?kind=pings&name={pings.name}",
                data=body,
                method="POST",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Length": str(size),
                    "Content-Type": "application/octet-stream",
                },
            )
            t0 = time.perf_counter()
            live.thread.start()
            try:
                with urllib.request.urlopen(request, timeout=3600) as answer:
                    result = json.loads(answer.read())
            finally:
                live.stop.set()
            seconds = time.perf_counter() - t0
        cpu = _cpu_of(proc.pid) - cpu0  # the live batches' share included
        live.thread.join()
        peak_mb = _peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {
        **result,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "bytes": size,
        "live": live.summary(),
        "idle": idle.summary(),
        "peak_rss_mb": peak_mb,
    }


def _peak_rss_mb(pid: int) -> float:
    """Peak resident memory of process ``pid`` so far, in MB (Linux: VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def plain_approach(pings: Path, sample: int) -> dict:
    """The approach EMAP replaces: h3 in a Python loop, pandas group-by, on ``sample`` rows."""
    import h3
    import pandas as pd
    import pyarrow.parquet as pq

    table = pq.ParquetFile(pings).iter_batches(batch_size=sample)
    frame = next(table).to_pandas()
    t0 = time.perf_counter()
    frame = frame[frame["lat"].between(-90, 90) & frame["lng"].between(-180, 180)]
    frame["cell"] = [h3.str_to_int(h3.latlng_to_cell(a, b, 9)) for a, b in zip(frame["lat"], frame["lng"])]
    frame["hour"] = pd.to_datetime(frame["ts"]).dt.floor("h")
    frame.groupby(["hour", "cell"]).agg(pings=("ts", "size"), devices=("device_id", "nunique"))
    seconds = time.perf_counter() - t0
    return {"rows": len(frame), "seconds": seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--size", default="default", choices=["default", "large"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/emap-bench"))
    ap.add_argument("--plain-sample", type=int, default=1_000_000)
    ap.add_argument("--memory-limit", default="1GB", help="DuckDB buffer pool of the importing store")
    ap.add_argument(
        "--via-server", action="store_true", help="also POST the file to a server's /api/v1/import"
    )
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    net_db = args.work / f"network-{args.size}.duckdb"
    pings = args.work / f"pings-{args.size}-{args.rows}.parquet"
    if args.child:
        print(json.dumps(run_import(net_db, pings, args.work, args.memory_limit)))
        return 0
    make_input(args.work, args.rows, args.size)
    load_before = os.getloadavg()[0]
    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            "--rows",
            str(args.rows),
            "--size",
            args.size,
            "--work",
            str(args.work),
            "--memory-limit",
            args.memory_limit,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    emap = json.loads(child.stdout.strip().splitlines()[-1])
    load_after = os.getloadavg()[0]
    print("stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in emap["stages"].items()))
    plain = plain_approach(pings, args.plain_sample)
    emap_rate = emap["rows"] / emap["seconds"]
    plain_rate = plain["rows"] / plain["seconds"]
    print(
        f"EMAP import of {emap['rows']:,} pings: {emap['seconds']:.1f} s = {emap_rate / 1e6:.2f} M pings/s "
        f"(accepted {emap['accepted']:,}, rejected {emap['rejected']:,}, duplicates {emap['duplicates']:,}; "
        f"cube rows {emap['cube_rows']:,}); peak RSS {emap['peak_rss_mb']:,.0f} MB"
    )
    print(
        f"plain h3 loop + pandas on {plain['rows']:,} of the same rows (index + hourly group-by only, "
        f"no store): {plain['seconds']:.1f} s = {plain_rate / 1e6:.2f} M pings/s"
    )
    # CPU time does not depend on what else the machine runs; it bounds the rate that
    # all of the machine's cores could give (a floor of the wall time, not a promise).
    cores = os.cpu_count() or 1
    print(
        f"CPU: {emap['cpu_seconds']:.1f} core-s = {emap['cpu_seconds'] / emap['rows'] * 1e6:.2f} core-s per M pings; "
        f"with all {cores} cores busy that is {emap['rows'] / emap['cpu_seconds'] * cores / 1e6:.2f} M pings/s at most; "
        f"load average (1 min) {load_before:.2f} before, {load_after:.2f} after"
    )
    print(f"ratio: EMAP end to end is {emap_rate / plain_rate:.1f}x the plain approach's partial pipeline")
    if args.via_server:
        load_before = os.getloadavg()[0]
        served = via_server(net_db, pings, args.work)
        rate = served["rows"] / served["seconds"]
        print(
            f"through the server (POST /api/v1/import, {served['bytes'] / 1e6:,.0f} MB, batches committed one by "
            f"one): {served['rows']:,} pings in {served['seconds']:.1f} s = {rate / 1e6:.2f} M pings/s "
            f"(accepted {served['accepted']:,}, rejected {served['rejected']:,}, duplicates "
            f"{served['duplicates']:,}); server CPU {served['cpu_seconds']:.1f} core-s = "
            f"{served['cpu_seconds'] / served['rows'] * 1e6:.2f} core-s per M pings; "
            f"{100 * rate / emap_rate:.0f}% of the command line's rate; load average (1 min) "
            f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after"
        )
        print(f"server peak RSS {served['peak_rss_mb']:,.0f} MB (the whole server, file spooled to disk)")
        print(f"live ingest before the import (idle): {served['idle']}")
        print(f"live ingest meanwhile: {served['live']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
