"""Ingest benchmark: batches of pings and single OsmAnd requests against a real server.

The server (``python -m cli.ingest``: waitress on the main port, the phone listener on
its own port) runs in its own process on a fresh store with the real tree and
``--devices`` registered couriers; the load comes from other processes on 127.0.0.1 only.
Batches: client threads of this process with keep-alive connections, paced to a target
rate, bounded in count and time. Single OsmAnd requests go to the phone listener (or,
with ``--osmand-target route``, to ``/osmand`` on the main port, for comparison): from
``wrk`` (a C load generator, Debian package ``wrk``) when it is installed, each
connection sending its next fix as soon as the previous one is answered; without wrk,
an asyncio client in this process, paced, which on a 2-core machine takes CPU from the
server (its figure is then a lower bound). At the end the server is stopped and the
store is opened to check that every acknowledged record is stored (zero loss). The
machine's 1-minute load average is printed at the start and end of each phase: other
work on the machine moves the figures.

    python bench/bench_ingest.py                       # 60 s of batches + 20 s of OsmAnd
    python bench/bench_ingest.py --batch-seconds 10 --osmand-seconds 5   # quick look
    python bench/bench_ingest.py --batch-seconds 0 --osmand-target route  # main port's /osmand
    python bench/bench_ingest.py --batch-seconds 0 --osmand-client python  # no wrk
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data.ingest.tokens import create_token  # noqa: E402
from data.store.database import Store  # noqa: E402
from geo.hierarchy import load_tree  # noqa: E402

T0 = 1_763_856_000  # 2025-11-23 00:00 UTC
LAT, LNG = 22.5431, 114.0579  # Shenzhen Futian


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {platform.system()}"


def prepare(db: Path, devices: int) -> str:
    with Store(db) as store:
        store.save_tree(load_tree())
        ids = [f"bd-{i:05d}" for i in range(devices)] + [f"od-{i:05d}" for i in range(devices)]
        store.upsert(
            "devices",
            pl.DataFrame(
                {
                    "device_id": ids,
                    "courier_id": [f"c-{d}" for d in ids],
                    "vehicle_id": [None] * len(ids),
                    "registered_at": [datetime(2026, 1, 1)] * len(ids),
                },
                schema_overrides={"vehicle_id": pl.String},
            ),
            "device_id",
        )
        return create_token(store, "system", "bench")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: Path, port: int, osmand_port: int, threads: int, log: Path) -> subprocess.Popen:
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli.ingest",
                "--db",
                str(db),
                "--port",
                str(port),
                "--osmand-port",
                str(osmand_port),
                *os.environ.get("EMAP_BENCH_SERVER_ARGS", "").split(),
                "--threads",
                str(threads),
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/api/v1/health")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


class Load:
    """Paced client threads; each keeps one keep-alive connection."""

    def __init__(self, port: int, workers: int, rate: float, seconds: float, max_requests: int):
        self.port, self.workers, self.rate = port, workers, rate
        self.seconds, self.max_requests = seconds, max_requests
        self.lat: list[float] = []
        self.ok: list[int] = []
        self.failed = 0
        self.lock = threading.Lock()
        self.next_id = 0

    def take(self) -> int | None:
        with self.lock:
            if self.next_id >= self.max_requests:
                return None
            self.next_id += 1
            return self.next_id - 1

    def run(self, make_request) -> float:
        start = time.monotonic()
        stop_at = start + self.seconds

        def worker(w: int):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            interval = self.workers / self.rate
            due = start + w * interval / self.workers
            while True:
                now = time.monotonic()
                if now >= stop_at:
                    return
                if due > now:
                    time.sleep(due - now)
                due += interval
                k = self.take()
                if k is None:
                    return
                method, path, body, headers = make_request(k)
                t = time.perf_counter()
                try:
                    conn.request(method, path, body=body, headers=headers)
                    resp = conn.getresponse()
                    resp.read()
                    good = resp.status == 200
                except (OSError, http.client.HTTPException):
                    good = False
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                dt = time.perf_counter() - t
                with self.lock:
                    if good:
                        self.ok.append(k)
                        self.lat.append(dt)
                    else:
                        self.failed += 1

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(self.workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.monotonic() - start

    def percentiles(self) -> str:
        if not self.lat:
            return "no acknowledged request"
        ms = np.array(self.lat) * 1000
        return (
            f"p50 {np.percentile(ms, 50):.1f} ms, p90 {np.percentile(ms, 90):.1f} ms, "
            f"p99 {np.percentile(ms, 99):.1f} ms, max {ms.max():.1f} ms"
        )


class AsyncLoad(Load):
    """Many keep-alive connections driven from one asyncio loop: phones are many, mostly idle
    connections, and one thread per connection would spend this machine's CPU on the client."""

    def run(self, make_request) -> float:
        import asyncio

        async def conn_loop(w: int, start: float, stop_at: float):
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            interval = self.workers / self.rate
            due = start + w * interval / self.workers
            try:
                while True:
                    now = time.monotonic()
                    if now >= stop_at:
                        return
                    if due > now:
                        await asyncio.sleep(due - now)
                    due += interval
                    k = self.take()
                    if k is None:
                        return
                    method, path, body, headers = make_request(k)
                    head = "".join(f"{a}: {b}\r\n" for a, b in headers.items())
                    t = time.perf_counter()
                    good = False
                    try:
                        writer.write(
                            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
                            f"Content-Length: {len(body or b'')}\r\n\r\n".encode()
                            + (body or b"")
                        )
                        status_line = await reader.readline()
                        length = 0
                        while True:
                            line = await reader.readline()
                            if line in (b"\r\n", b""):
                                break
                            if line.lower().startswith(b"content-length:"):
                                length = int(line.split(b":", 1)[1])
                        await reader.readexactly(length)
                        good = status_line.split(b" ", 2)[1] == b"200"
                    except (OSError, asyncio.IncompleteReadError, IndexError):
                        writer.close()
                        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    dt = time.perf_counter() - t
                    if good:
                        self.ok.append(k)
                        self.lat.append(dt)
                    else:
                        self.failed += 1
            finally:
                writer.close()

        async def main():
            start = time.monotonic()
            await asyncio.gather(*(conn_loop(w, start, start + self.seconds) for w in range(self.workers)))
            return time.monotonic() - start

        return asyncio.run(main())


# One fix per request, request k of wrk thread t numbered k * threads + t: every fix has
# its own (device, timestamp), so the store must end with one row per acknowledged fix.
WRK_SCRIPT = """
tid = 0
nthreads = 1
ndev = 2000
t0 = 0
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  nthreads = tonumber(args[1]); ndev = tonumber(args[2]); t0 = tonumber(args[3])
  lat0 = tonumber(args[4]); lng0 = tonumber(args[5])
end
function request()
  local k = counter * nthreads + tid
  counter = counter + 1
  local d = k % ndev
  return wrk.format("GET", string.format(
    "/osmand?id=od-%05d&lat=%.6f&lon=%.6f&timestamp=%d&speed=8.1&bearing=90&accuracy=5",
    d, lat0 + (d % 97) * 4e-4, lng0 + math.floor(d / 97) * 4e-4, t0 + math.floor(k / ndev)))
end
function done(summary, latency, requests)
  io.write(string.format("EMAP requests=%d non2xx=%d timeouts=%d errors=%d duration_us=%d " ..
    "p50=%d p90=%d p99=%d max=%d\\n", summary.requests, summary.errors.status, summary.errors.timeout,
    summary.errors.connect + summary.errors.read + summary.errors.write, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def run_wrk(port: int, connections: int, seconds: float, devices: int, work: Path) -> dict:
    """Closed-loop single OsmAnd GETs with wrk; returns its counts and latency (microseconds)."""
    script = work / "osmand.lua"
    script.write_text(WRK_SCRIPT)
    threads = 2
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds:.0f}s",
            "--timeout",
            "60s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
            "--",
            str(threads),
            str(devices),
            str(T0),
            str(LAT),
            str(LNG),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("EMAP "))
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def loadavg() -> str:
    """The machine's 1-, 5- and 15-minute load averages (other work moves the figures)."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far (Linux), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def server_stats(port: int) -> str:
    import json

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/api/v1/health")
    st = json.loads(c.getresponse().read())
    groups = max(st["groups"], 1)
    return (
        f"server: {st['groups']:,} commits, {st['requests'] / groups:.1f} requests and "
        f"{st['received'] / groups:,.0f} records per commit, {st['commit_ms'] / groups:.1f} ms per commit, "
        f"writer busy {st['commit_ms'] / 1000:.1f} s"
    )


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-seconds", type=float, default=60.0)
    ap.add_argument("--batch-rate", type=float, default=22_000.0, help="target pings/s in batches")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--batch-workers", type=int, default=8)
    ap.add_argument("--osmand-seconds", type=float, default=20.0)
    ap.add_argument("--osmand-rate", type=float, default=2_200.0, help="target single requests/s")
    ap.add_argument("--osmand-workers", type=int, default=800, help="phone connections")
    ap.add_argument(
        "--osmand-client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator of the OsmAnd phase (auto: wrk when installed)",
    )
    ap.add_argument(
        "--osmand-target",
        choices=("phone", "route"),
        default="phone",
        help="phone: the phone listener's port; route: /osmand on the main port",
    )
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument(
        "--server-threads",
        type=int,
        default=512,
        help="request threads: each unanswered phone request holds one",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary store")
    return ap.parse_args()


class Requests:
    """The k-th request of each phase: batch k holds ``n`` records of distinct devices
    ``bd-*``, all at second ``T0 + k * n // ndev``; single fix k is of device ``od-*``."""

    def __init__(self, token: str, n: int, ndev: int):
        self.auth = {"Authorization": f"Bearer {token}"}
        self.n, self.ndev = n, ndev
        self.lat = LAT + (np.arange(ndev) % 97) * 4e-4
        self.lng = LNG + (np.arange(ndev) // 97) * 4e-4
        # per-device JSON prefixes
        self.prefix = [
            f'{{"device_id":"bd-{i:05d}","lat":{self.lat[i]:.6f},"lng":{self.lng[i]:.6f},"speed":4.2,"ts":'.encode()
            for i in range(ndev)
        ]

    def batch(self, k):
        n, ndev, prefix = self.n, self.ndev, self.prefix
        first = (k * n) % ndev
        parts = [prefix[(first + i) % ndev] + str(T0 + (k * n + i) // ndev).encode() + b"}" for i in range(n)]
        return (
            "POST",
            "/api/v1/pings",
            b"[" + b",".join(parts) + b"]",
            {**self.auth, "Content-Type": "application/json"},
        )

    def osmand(self, k):
        d = k % self.ndev
        q = urlencode(
            {
                "id": f"od-{d:05d}",
                "lat": f"{self.lat[d]:.6f}",
                "lon": f"{self.lng[d]:.6f}",
                "timestamp": T0 + k // self.ndev,
                "speed": 8.1,
                "bearing": 90,
                "accuracy": 5,
            }
        )
        return "GET", f"/osmand?{q}", None, {}


def batch_phase(args, port: int, requests: Requests) -> Load:
    """Paced batches for ``--batch-seconds``; the load with its acknowledged batches."""
    n = args.batch_size
    rate = args.batch_rate / n
    load = Load(
        port,
        args.batch_workers,
        rate,
        args.batch_seconds,
        max_requests=int(rate * args.batch_seconds) + 1,
    )
    print(
        f"batches: {n} pings per request, target {args.batch_rate:,.0f} pings/s for "
        f"{args.batch_seconds:.0f} s, {args.batch_workers} connections "
        f"(load average at start {loadavg()}) ...",
        flush=True,
    )
    elapsed = load.run(requests.batch)
    acked = len(load.ok) * n
    print(
        f"  acknowledged {acked:,} pings in {len(load.ok):,} requests over {elapsed:.1f} s = "
        f"{acked / elapsed:,.0f} pings/s; failed requests {load.failed}"
    )
    print(f"  ack latency per batch: {load.percentiles()}")
    print(f"  load average at end {loadavg()}")
    print(f"  {server_stats(port)}", flush=True)
    return load


def osmand_phase(
    args, server: subprocess.Popen, main_port: int, port: int, requests: Requests, tmp: Path
) -> int:
    """Single OsmAnd requests to ``port`` for ``--osmand-seconds``; how many were
    acknowledged. The server's counters come from ``main_port``."""
    client = args.osmand_client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
        if client == "python":
            print(
                "OsmAnd: wrk is not installed (apt-get install -y wrk): using the Python client, "
                "which shares the CPU with the server; the figure is a lower bound",
                flush=True,
            )
    target = (
        f"the phone listener (port {port})"
        if args.osmand_target == "phone"
        else f"/osmand on the main port ({port})"
    )
    print(f"OsmAnd target: {target}; load average at start {loadavg()}", flush=True)
    cpu0 = cpu_seconds(server.pid)
    if client == "wrk":
        acked = osmand_wrk(args, port, tmp)
    else:
        acked = osmand_python(args, port, requests)
    cpu1 = cpu_seconds(server.pid)
    if cpu0 is not None and cpu1 is not None and acked:
        print(
            f"  server CPU {cpu1 - cpu0:.1f} s = {1000 * (cpu1 - cpu0) / acked:.3f} ms per acknowledged request"
        )
    print(f"  load average at end {loadavg()}")
    print(f"  {server_stats(main_port)}", flush=True)
    return acked


def osmand_wrk(args, port: int, tmp: Path) -> int:
    print(
        f"OsmAnd: single-position GET requests from wrk, {args.osmand_workers} connections, "
        f"each sending its next fix once the last is answered, {args.osmand_seconds:.0f} s ...",
        flush=True,
    )
    w = run_wrk(port, args.osmand_workers, args.osmand_seconds, args.devices, tmp)
    acked, elapsed = w["requests"] - w["non2xx"], w["duration_us"] / 1e6
    print(
        f"  acknowledged {acked:,} requests over {elapsed:.1f} s = {acked / elapsed:,.0f} requests/s; "
        f"failed {w['non2xx'] + w['timeouts'] + w['errors']} (non-2xx {w['non2xx']}, "
        f"timeouts {w['timeouts']}, socket errors {w['errors']})"
    )
    print(
        f"  ack latency: p50 {w['p50'] / 1000:.1f} ms, p90 {w['p90'] / 1000:.1f} ms, "
        f"p99 {w['p99'] / 1000:.1f} ms, max {w['max'] / 1000:.1f} ms"
    )
    return acked


def osmand_python(args, port: int, requests: Requests) -> int:
    load = AsyncLoad(
        port,
        args.osmand_workers,
        args.osmand_rate,
        args.osmand_seconds,
        max_requests=int(args.osmand_rate * args.osmand_seconds) + 1,
    )
    print(
        f"OsmAnd: single-position GET requests, target {args.osmand_rate:,.0f}/s for "
        f"{args.osmand_seconds:.0f} s, {args.osmand_workers} connections ...",
        flush=True,
    )
    elapsed = load.run(requests.osmand)
    print(
        f"  acknowledged {len(load.ok):,} requests over {elapsed:.1f} s = "
        f"{len(load.ok) / elapsed:,.0f} requests/s; failed {load.failed}"
    )
    print(f"  ack latency: {load.percentiles()}")
    return len(load.ok)


def stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()


def count_lost(db: Path, results: dict, n: int, ndev: int) -> int:
    """Acknowledged records that the stopped server's store does not hold."""
    with Store(db, read_only=True) as store:
        lost = 0
        if "batch" in results:
            lost += lost_batch_pings(store, results["batch"].ok, n, ndev)
        if "osmand" in results:
            n_os = store.scalar("SELECT count(*) FROM pings WHERE starts_with(device_id, 'od-')")
            print(f"check: {n_os:,} OsmAnd pings stored for {results['osmand']:,} acknowledged")
            lost += max(0, results["osmand"] - n_os)
        cube = store.scalar("SELECT sum(pings) FROM cube_hourly")
        total = store.scalar("SELECT count(*) FROM pings")
        print(f"check: cube total {cube:,} = pings table {total:,}: {cube == total}")
    return lost


def lost_batch_pings(store: Store, ok: list[int], n: int, ndev: int) -> int:
    """Pings of the acknowledged batches ``ok`` missing from the store, by second."""
    stored = store.sql(
        "SELECT epoch(ts)::BIGINT - $t0 AS s, count(*) AS n FROM pings "
        "WHERE starts_with(device_id, 'bd-') GROUP BY ALL",
        {"t0": T0},
    )
    acked = pl.DataFrame({"k": ok}, schema={"k": pl.Int64})
    # batch k covers keys k*n .. k*n+n-1; key j is at second j // ndev
    keys = pl.DataFrame(
        {
            "j": np.concatenate([np.arange(k * n, k * n + n) for k in acked["k"]])
            if len(acked)
            else np.array([], dtype=np.int64)
        }
    )
    need = keys.group_by((pl.col("j") // ndev).alias("s")).len("need")
    check = need.join(stored, on="s", how="left").with_columns(pl.col("n").fill_null(0))
    print(f"check: {int(stored['n'].sum() or 0):,} batch pings stored for {len(keys):,} acknowledged")
    return int((check["need"] - check["n"]).clip(0, None).sum() or 0)


def main() -> int:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="emap-bench-"))
    db = tmp / "bench.duckdb"
    print(f"machine: {machine()}")
    print(f"preparing a store with the tree and {2 * args.devices:,} devices in {tmp} ...", flush=True)
    token = prepare(db, args.devices)
    port, phone_port = free_port(), free_port()
    # every unanswered phone request on the main port holds a server thread: at least one
    # per connection when the route is measured
    threads = args.server_threads
    if args.osmand_target == "route":
        threads = max(threads, args.osmand_workers + 64)
    server = start_server(db, port, phone_port, threads, tmp / "server.log")
    osmand_port = phone_port if args.osmand_target == "phone" else port
    requests = Requests(token, args.batch_size, args.devices)
    results = {}
    try:
        if args.batch_seconds > 0:
            results["batch"] = batch_phase(args, port, requests)
        if args.osmand_seconds > 0:
            results["osmand"] = osmand_phase(args, server, port, osmand_port, requests, tmp)
    finally:
        stop(server)
    lost = count_lost(db, results, args.batch_size, args.devices)
    print(f"LOST acknowledged records: {lost}")
    if not args.keep:
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
