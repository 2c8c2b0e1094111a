"""``python app.py import``: load CSV or Parquet files of pings, parcel events, outlets or
couriers into the store."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cli import context
from cli.store import ensure_tree, open_store
from config import Settings


def add_arguments(i) -> None:
    i.add_argument("files", nargs="+", help="files to import (.csv or .parquet)")
    i.add_argument(
        "--kind",
        choices=["pings", "parcel_events", "outlets", "couriers"],
        help="what the files hold (default: guessed from name or columns)",
    )
    i.add_argument("--batch-rows", type=int, default=1_000_000, help="rows per batch (memory bound)")


def run(args, settings: Settings) -> int:
    from data.ingest.importer import ImportFileError, import_file, print_progress
    from data.store import imports as history

    store = open_store(settings)
    ensure_tree(store)
    status = 0
    for path in args.files:
        t0 = time.perf_counter()
        try:
            report = import_file(
                store,
                path,
                kind=args.kind,
                batch_rows=args.batch_rows,
                local_tz=settings.local_tz,
                progress=print_progress,
            )
        except ImportFileError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            status = 2
            continue
        seconds = time.perf_counter() - t0
        # the imports history lists files imported on the command line too
        history.record(
            store,
            user_id=context.operator_label(),
            channel="cli",
            file_name=Path(path).name,
            scope_node=None,
            **report.counts(),
            quarantine_source=str(report.path),
            bytes=Path(path).stat().st_size,
            seconds=seconds,
        )
        rate = report.rows / max(seconds, 1e-9)
        print(f"\n{report.line()} ({rate:,.0f} rows/s)")
        if report.rejected:
            print(f"  rejected rows are in the quarantine table (source = '{report.path}')")
    return status
