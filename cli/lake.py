"""``python app.py lake ...``: write a lake from the store, build days with Spark, copy a
branch's fine cubes between lakes, list what a lake holds."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="lake_action", required=True)
    e = sub.add_parser(
        "export", help="write the store's days (raw, clean, cubes) and reference tables to a lake"
    )
    e.add_argument("--lake", required=True, help="lake folder")
    e.add_argument(
        "--date",
        dest="dates",
        action="append",
        help="UTC day, YYYY-MM-DD (repeat; default: every day in the store)",
    )
    e.add_argument("--no-raw", action="store_true", help="skip the raw records")
    e.add_argument(
        "--reference-only",
        action="store_true",
        help="write only the tree and rosters (what the Spark job needs)",
    )
    s = sub.add_parser("spark", help="build days of a lake from its raw partitions with Apache Spark")
    from lake.spark_job import add_arguments as spark_arguments

    spark_arguments(s)
    c = sub.add_parser("copy", help="copy a branch's fine cubes into another lake (idempotent)")
    c.add_argument("--from", dest="source", required=True, help="lake holding the branch's fine cubes")
    c.add_argument("--to", dest="target", required=True, help="lake to copy them into")
    c.add_argument("--branch", required=True, help="branch id, e.g. b-440305")
    c.add_argument("--date", dest="dates", action="append", help="UTC day (repeat; default: all)")
    ls = sub.add_parser("list", help="show the days each dataset of a lake holds")
    ls.add_argument("--lake", required=True, help="lake folder")


def run(args, settings) -> int:
    if args.lake_action == "spark":
        try:
            from lake.spark_job import submit
        except ImportError as exc:
            print(
                f"Spark is not installed ({exc}): pip install -r requirements-spark.txt, "
                "and a Java runtime (Debian: default-jre-headless)",
                file=sys.stderr,
            )
            return 2
        return submit(args)
    if args.lake_action == "copy":
        from lake.tiering import copy_branch

        try:
            n = copy_branch(args.source, args.target, args.branch, args.dates)
        except LookupError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"copied {n} partitions of {args.branch} from {args.source} to {args.target}")
        return 0
    if args.lake_action == "list":
        from lake import layout

        for name in layout.DATASETS:
            days = layout.days_in(args.lake, name)
            print(f"{name:22s} {len(days):3d} days" + (f"  {days[0]} .. {days[-1]}" if days else ""))
        return 0
    from lake.export import export_store, write_reference

    for day in args.dates or []:
        try:
            date.fromisoformat(day)
        except ValueError:
            print(f"--date {day!r}: not a date (YYYY-MM-DD)", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    from cli.store import open_store

    with open_store(settings, read_only=True) as store:
        if args.reference_only:
            Path(args.lake).mkdir(parents=True, exist_ok=True)
            write_reference(store.cursor(), Path(args.lake))
            print(f"wrote the reference tables to {args.lake}")
            return 0
        written = export_store(store, args.lake, args.dates, raw=not args.no_raw)
    print(
        f"exported to {args.lake} in {time.perf_counter() - t0:.1f}s: "
        + ", ".join(f"{k} {v:,}" for k, v in written.items())
    )
    return 0
