"""Benchmark of the forecast and the dispatch suggestions for a whole region.

For the busiest region of the store, at a busy hour of the newest day: read the inputs
(history, pipeline, open pickup requests, who is based at each outlet and how many were
on the road), forecast every cell at the alert resolution, flag cells and zones, and
compute the dispatch suggestions (couriers and vans) of every predicted zone.
Prints the median and best of ``--repeat`` runs for the next hour (and the next six).

    .venv/bin/python bench/bench_forecast.py --size default
    .venv/bin/python bench/bench_forecast.py --db var/emap.duckdb --region r-440300

Without ``--db`` the demo of ``--size`` is generated once into
``var/bench-forecast-<size>.duckdb``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import PROJECT_ROOT, Settings  # noqa: E402
from data.store.database import Store  # noqa: E402
from ops import dispatch  # noqa: E402
from ops import forecast as fc  # noqa: E402
from views import backtest as bt  # noqa: E402
from views import forecast as vf  # noqa: E402


def ensure_db(size: str, days: int) -> Path:
    path = PROJECT_ROOT / "var" / f"bench-forecast-{size}.duckdb"
    if not path.exists():
        from data.demo import generator as demo

        print(f"generating the {size} demo ({days} days) into {path} ...", flush=True)
        t = time.perf_counter()
        with Store(path) as s:
            demo.generate(s, size=size, seed=7, days=days, end_date=date(2026, 11, 20))
        print(f"  done in {time.perf_counter() - t:.0f}s", flush=True)
    return path


def busiest_region(store: Store) -> str:
    return store.sql("""
        SELECT n.region_id, sum(c.pickups + c.deliveries) AS w FROM cube_hourly c
        JOIN nodes n ON n.node_id = c.branch_id GROUP BY 1 ORDER BY w DESC LIMIT 1""")["region_id"][0]


def one_run(
    store: Store, region: str, issued: datetime, settings: Settings, horizon: int, regions: dict
) -> dict:
    t = time.perf_counter()
    params = fc.Params(horizon=horizon)
    inputs = vf.forecast_inputs(store, region, [issued], bt.alert_res(settings), params)
    t_read = time.perf_counter() - t
    pred = fc.predict(
        inputs,
        settings.parcels_per_courier_hour,
        settings.load_ratio_threshold,
        settings.baseline_factor,
        bt.alert_min(settings),
        params,
    )
    t_fc = time.perf_counter() - t - t_read
    per_hour, _ = vf.suggestions_by_hour(pred, settings, dispatch.Rules.from_settings(settings), regions)
    moves = sum(len(m) for m in per_hour)
    vans = sum(int(m["vehicles"].sum()) for m in per_hour)
    total = time.perf_counter() - t
    return {
        "total": total,
        "read": t_read,
        "forecast": t_fc,
        "suggest": total - t_read - t_fc,
        "cells": pred["cells"].height,
        "zones": pred["zones"].height,
        "moves": moves,
        "vans": vans,
    }


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="default", choices=["small", "default", "large"])
    p.add_argument("--days", type=int, default=2, help="demo days when generating (default 2)")
    p.add_argument("--db", help="an existing store instead of a generated demo")
    p.add_argument("--region", help="region node id (default: the busiest)")
    p.add_argument("--local-hour", type=int, default=10, help="issue hour, local time (default 10)")
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args(argv)
    path = Path(a.db) if a.db else ensure_db(a.size, a.days)
    settings = Settings.from_env()
    store = Store(path, read_only=True, memory_limit=settings.duckdb_memory_limit)
    region = a.region or busiest_region(store)
    day = bt.newest_day(store, region, settings.local_tz)
    issued = bt.day_hours(day, settings.local_tz)[a.local_hour]
    regions = bt.region_map(store)
    n_branches = store.scalar("SELECT count(*) FROM node_branches WHERE ancestor_id = ?", [region])
    print(
        f"store {path} ({store.scalar('SELECT count(*) FROM parcel_events'):,} parcel events); region {region} "
        f"({n_branches} branches); issued {issued} UTC (local {day} {a.local_hour:02d}:00)"
    )
    for horizon in (1, 6):
        one_run(store, region, issued - timedelta(days=1), settings, horizon, regions)  # warm caches
        runs = [one_run(store, region, issued, settings, horizon, regions) for _ in range(a.repeat)]
        tot = [r["total"] for r in runs]
        last = runs[-1]
        label = "next hour" if horizon == 1 else f"next {horizon} hours"
        print(
            f"forecast + suggestions, {label}: median {statistics.median(tot):.2f}s, best {min(tot):.2f}s "
            f"(read {last['read']:.2f}s, forecast {last['forecast']:.2f}s, suggest {last['suggest']:.2f}s; "
            f"{last['cells']:,} cell-hours, {last['zones']} zones, {last['moves']} moves, {last['vans']} vans; "
            f"load average {_load()})"
        )
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
