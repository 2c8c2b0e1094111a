"""``python app.py export``: write a heatmap report from the command line (for schedules).

Examples
--------
``python app.py export --node r-440300 --date 2026-11-20 --metric scans --format pdf --out sz.pdf``
``python app.py export --node hq --date 2026-11-20 --hour 9 --format html --out hq-09.html``
"""

from __future__ import annotations

import sys
import time

from reports import FORMATS, SUFFIX

EXIT_BAD_REQUEST = 2
EXIT_EMPTY = 3
EXIT_FAILED = 4


def add_arguments(parser) -> None:
    """Options of the ``export`` subcommand."""
    from layers.hexes import METRICS

    parser.add_argument("--node", required=True, help="node id (hq, div-..., r-<adcode>, b-<adcode>)")
    parser.add_argument("--date", required=True, help="local date YYYY-MM-DD (first day of --days)")
    span = parser.add_mutually_exclusive_group()
    span.add_argument("--hour", type=int, help="one local hour 0..23 (default: whole days)")
    span.add_argument("--days", type=int, default=1, help="number of whole days from --date (default 1)")
    parser.add_argument(
        "--metric", choices=METRICS, default="scans", help="hex colour metric (default scans)"
    )
    parser.add_argument(
        "--format", choices=FORMATS, default=None, help="output format (default: from the --out suffix)"
    )
    parser.add_argument("--out", required=True, help="output file")
    parser.add_argument("--lang", choices=["zh", "en"], default="zh", help="report language (default zh)")


def _format(args) -> str | None:
    if args.format:
        return args.format
    for fmt, suffix in SUFFIX.items():
        if str(args.out).lower().endswith(suffix):
            return fmt
    return None


def run(args, settings) -> int:
    """Build and write the report; 0 on success, non-zero with a message on stderr otherwise."""
    import duckdb

    from cli.store import open_store
    from reports import write
    from reports.build import EmptyPeriodError, Period, ReportError, build
    from reports.chromium import ChromiumError

    fmt = _format(args)
    if fmt is None:
        print(
            f"error: give --format ({', '.join(FORMATS)}) or an --out file ending in one of "
            f"{', '.join(SUFFIX.values())}",
            file=sys.stderr,
        )
        return EXIT_BAD_REQUEST
    if not settings.lake_dir and not settings.db_path.is_file():
        print(
            f"error: no store at {settings.db_path} (run `python app.py demo` or import data first)",
            file=sys.stderr,
        )
        return EXIT_BAD_REQUEST
    t0 = time.perf_counter()
    try:
        period = Period(args.date, args.hour, 1 if args.hour is not None else args.days)
        with open_store(settings, read_only=True) as store:
            report = build(store, settings, args.node, period, args.metric)
            path = write(report, fmt, args.out, lang=args.lang, settings=settings)
    except EmptyPeriodError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_EMPTY
    except ChromiumError as exc:
        # a render that failed or hit its time limit (a ReportError too): not the request's fault
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_REQUEST
    except duckdb.Error as exc:
        print(f"error: cannot read the store {settings.db_path}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"wrote {path} ({fmt}, {path.stat().st_size:,} bytes, {len(report.hexes):,} cells) "
        f"in {time.perf_counter() - t0:.1f}s"
    )
    return 0
