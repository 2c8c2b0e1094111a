"""``python app.py replay``: stream a generated day to a running server's ingest API."""

from __future__ import annotations

from config import Settings


def add_arguments(r) -> None:
    from data.demo import replay

    replay.add_arguments(r)
    r.add_argument("--allow-rejected", action="store_true", help="exit 0 even if records were rejected")


def run(args, settings: Settings) -> int:
    from data.demo import replay

    report = replay.run_from_args(args, local_tz=settings.local_tz)
    return 0 if report.rejected == 0 or args.allow_rejected else 1
