"""Benchmark of the reports: time and size of each format for a region-day and the HQ day.

    .venv/bin/python bench/bench_reports.py --db var/emap.duckdb
    .venv/bin/python bench/bench_reports.py --size default        # demo built once into var/

``build`` is the report model on a cold model cache (the command line's case: one
report per process); each format is then rendered from that model, so a format's
end-to-end time on the command line is ``build + format``. The branch with the most
cells of the day is added for the HTML size limit (1 MB). Figures are printed, with the
machine's load averages before and after (other work on the machine slows the renders).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import PROJECT_ROOT, Settings  # noqa: E402
from data.store.database import Store  # noqa: E402


def _demo(size: str) -> Path:
    from data.demo import generator as demo
    from geo.hierarchy import load_tree

    path = PROJECT_ROOT / "var" / f"bench-{size}.duckdb"
    if not path.exists():
        print(f"generating the '{size}' demo into {path} (once)", flush=True)
        end = date.today() - timedelta(days=1)
        with Store(path) as store:
            store.save_tree(load_tree())
            demo.generate(store, size=size, seed=7, days=2, end_date=end)
    return path


def busiest_region(store, day_window) -> str:
    """The region with the largest volume of the day (the heaviest region report)."""
    start, end = day_window
    f = store.node_figures("hq", start, end, level="region")
    return f.with_columns((f["pickups"] + f["deliveries"]).alias("v")).sort("v", descending=True)["node_id"][
        0
    ]


def largest_branch(store, day_window) -> str:
    """The branch with the most cells with data in the day (the largest branch report)."""
    start, end = day_window
    return store.sql(
        "SELECT branch_id, count(DISTINCT cell) AS n FROM cube_hourly WHERE hour >= ? AND hour < ? "
        "GROUP BY branch_id ORDER BY n DESC LIMIT 1",
        [start, end],
    )["branch_id"][0]


def main(argv=None) -> int:
    from reports import FORMATS, render
    from reports.build import Period, build
    from views.model import Model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db", help="DuckDB file (default: the demo of --size in var/)")
    p.add_argument("--size", default="default", choices=["small", "default", "large"])
    p.add_argument("--date", help="local day (default: the newest full day of the store)")
    p.add_argument("--region", help="region node id (default: the busiest region of the day)")
    p.add_argument("--metric", default="scans")
    p.add_argument("--formats", default=",".join(FORMATS))
    args = p.parse_args(argv)
    path = Path(args.db) if args.db else _demo(args.size)
    settings = Settings.from_env()
    store = Store(path, read_only=True, memory_limit=settings.duckdb_memory_limit)
    probe = Model(store, settings)
    days = probe.dates()
    day = args.date or (days[-1] if probe.newest()[1] == 23 or len(days) == 1 else days[-2])
    region = args.region or busiest_region(store, probe.day_window(day))
    branch = largest_branch(store, probe.day_window(day))
    counts = store.counts()
    print(
        f"store {path}: {counts.get('pings', 0):,} pings, {counts.get('parcel_events', 0):,} parcel events; "
        f"day {day}"
    )
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"{'view':28s} {'step':8s} {'seconds':>8s} {'bytes':>12s}  cells")
    for node in (region, "hq", branch):
        model = Model(store, settings)
        name = model.node(node)["name"]
        label = f"{node} {name} day"
        t = time.perf_counter()
        report = build(store, settings, node, Period(day), args.metric, model=model)
        print(
            f"{label:28s} {'build':8s} {time.perf_counter() - t:8.2f} {'':>12s}  {len(report.hexes):,}",
            flush=True,
        )
        for fmt in args.formats.split(",") if node != branch else ["html"]:
            t = time.perf_counter()
            blob = render(report, fmt)
            print(f"{label:28s} {fmt:8s} {time.perf_counter() - t:8.2f} {len(blob):12,d}", flush=True)
        t = time.perf_counter()
        build(store, settings, node, Period(day), args.metric, model=model)
        print(f"{label:28s} {'rebuild':8s} {time.perf_counter() - t:8.2f} {'':>12s}  (dashboard cache warm)")
    store.close()
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
