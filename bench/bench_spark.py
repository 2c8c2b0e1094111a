"""The lake's Spark job in local mode against the embedded import, on the same pings.

Usage:
    python bench/bench_spark.py --rows 30000000             # Spark local[2] vs embedded
    python bench/bench_spark.py --rows 10000000 --skip-embedded

The pings are the demo tracks that bench/bench_import.py writes (made once in --work and
reused). They are laid out as a raw lake partition per UTC day; the job validates,
indexes, locates, dedupes and builds the fine and coarse cubes of every day. The
embedded figure is a fresh run of the file import into a copy of the network store, in
its own process. From the job's time the script derives a throughput per core and an
estimate for a national day of 3.5 B pings, with its assumptions printed beside it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NATIONAL_PINGS_PER_DAY = 3.5e9


def raw_lake(net_db: Path, pings: Path, lake: Path) -> list[str]:
    """Reference tables and one raw partition per UTC day of the pings file."""
    import duckdb

    from lake.export import write_reference

    marker = lake / f".made-from-{pings.name}"
    con = duckdb.connect(str(net_db), read_only=True)
    try:
        if not marker.exists():
            import shutil

            shutil.rmtree(lake, ignore_errors=True)
            write_reference(con, lake)
            (lake / "raw").mkdir()
            # Times become UTC instants so that no reader takes them for local time.
            con.execute(f"""
                COPY (SELECT device_id, timezone('UTC', ts) AS ts, lat, lng, speed, heading, accuracy,
                             strftime(ts, '%Y-%m-%d') AS date, 'all' AS division_id
                      FROM read_parquet('{pings}'))
                TO '{lake}/raw/pings' (FORMAT parquet, PARTITION_BY (date, division_id),
                                       ROW_GROUP_SIZE 1000000)""")
            marker.touch()
        days = con.execute(
            f"SELECT DISTINCT strftime(ts, '%Y-%m-%d') FROM read_parquet('{pings}') ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    return [d[0] for d in days]


def run_spark(lake: Path, days: list[str], master: str, memory: str) -> dict:
    cmd = [
        sys.executable,
        str(ROOT / "app.py"),
        "lake",
        "spark",
        "--lake",
        str(lake),
        "--master",
        master,
        "--shuffle-partitions",
        "8",
        "--driver-memory",
        memory,
    ]
    for d in days:
        cmd += ["--date", d]
    import os

    env = dict(os.environ)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode:
        sys.exit(f"spark job failed:\n{out.stderr[-3000:]}")
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("[") or ln.startswith("built")]
    built = float(lines[-1].split(" in ")[1].split("s:")[0])
    return {"wall_seconds": seconds, "job_seconds": built, "log": lines}


def run_embedded(rows: int, size: str, work: Path, memory_limit: str) -> dict:
    child = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_import.py"),
            "--child",
            "--rows",
            str(rows),
            "--size",
            size,
            "--work",
            str(work),
            "--memory-limit",
            memory_limit,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=30_000_000)
    ap.add_argument("--size", default="default", choices=["default", "large"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/emap-bench"))
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--driver-memory", default="6g", help="Spark driver heap (local mode runs there)")
    ap.add_argument("--memory-limit", default="1GB", help="DuckDB buffer pool of the embedded import")
    ap.add_argument("--skip-embedded", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    from bench.bench_import import make_input

    net_db, pings = make_input(args.work, args.rows, args.size)
    lake = args.work / f"spark-lake-{args.size}-{args.rows}"
    days = raw_lake(net_db, pings, lake)
    cores = int(args.master.split("[")[1].rstrip("]")) if args.master.startswith("local[") else None
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"{args.rows:,} pings over {len(days)} UTC days; load average before: {' '.join(load)}")

    spark = run_spark(lake, days, args.master, args.driver_memory)
    for line in spark["log"]:
        print("  spark " + line)
    rate = args.rows / spark["job_seconds"]
    print(
        f"Spark {args.master}: job {spark['job_seconds']:.1f} s ({spark['wall_seconds']:.1f} s with JVM "
        f"start) = {rate / 1e6:.2f} M pings/s"
    )
    if not args.skip_embedded:
        emb = run_embedded(args.rows, args.size, args.work, args.memory_limit)
        emb_rate = emb["rows"] / emb["seconds"]
        print(
            f"embedded import: {emb['seconds']:.1f} s = {emb_rate / 1e6:.2f} M pings/s "
            f"(peak RSS {emb['peak_rss_mb']:,.0f} MB)"
        )
        print(
            f"ratio: Spark {args.master} takes {spark['job_seconds'] / emb['seconds']:.1f}x the "
            f"embedded import's time on the same machine"
        )
    if cores:
        per_core = rate / cores
        core_hours = NATIONAL_PINGS_PER_DAY / per_core / 3600
        print(
            f"per core: {per_core / 1e3:,.0f} k pings/s -> 3.5 B pings/day = {core_hours:,.0f} "
            f"core-hours a day; on 64 cores {core_hours / 64 * 60:,.0f} min, "
            f"on 256 cores {core_hours / 256 * 60:,.0f} min per day"
        )
        print(
            "assumptions: throughput scales linearly with cores (validation, indexing and "
            "location are per batch; the shuffles for dedupe and the cube grow with rows, "
            "not with cores); cluster cores as fast as these; input already in the lake "
            "(no transfer); the reference tables broadcast once per executor."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
