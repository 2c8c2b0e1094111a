"""``python app.py demo``: generate the demo network and days into the store."""

from __future__ import annotations

import time
from datetime import date

from cli.store import open_store, progress_printer
from config import Settings


def add_arguments(d) -> None:
    d.add_argument(
        "--size",
        choices=["small", "default", "large"],
        default="default",
        help="small: 2 cities, 400 couriers; default: 10 cities, 6,000 couriers, "
        "~4 M pings a day; large: 20,000 couriers, ~40 M pings a day",
    )
    d.add_argument("--seed", type=int, default=7, help="random seed (same seed, same data)")
    d.add_argument("--days", type=int, default=3, help="number of days ending at --end-date (default 3)")
    d.add_argument("--end-date", help="newest day, YYYY-MM-DD (default: yesterday, local time)")


def run(args, settings: Settings) -> int:
    from data.demo import generator

    store = open_store(settings)
    t0 = time.perf_counter()
    end = date.fromisoformat(args.end_date) if args.end_date else None
    totals = generator.generate(
        store, size=args.size, seed=args.seed, days=args.days, end_date=end, progress=progress_printer(t0)
    )
    print(
        f"stored {totals['pings']:,} pings and {totals['parcel_events']:,} parcel events "
        f"({totals['refused']:,} generated positions fell outside every territory and were dropped) "
        f"in {time.perf_counter() - t0:.1f}s"
    )
    return 0
