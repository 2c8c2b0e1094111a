"""``python app.py backup``: a consistent copy of the store, taken while it serves.

With a server running, the copy is taken inside it (through the owner channel) and
streamed to ``--out``; without one, here. Restoring is copying the file back in place of
the store with the server stopped (``docs/deploy.md``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cli.store import open_store
from config import Settings


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="the backup file to write (a new DuckDB file)")


def check_here(args) -> str | None:
    """What is wrong with the command, checked where it was typed (also before it goes to
    a server: the file is written here)."""
    if Path(args.out).exists():
        return f"{args.out} exists: a backup never overwrites a file"
    return None


def run(args, settings: Settings) -> int:
    problem = check_here(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    out = Path(args.out)
    t0 = time.perf_counter()
    store = open_store(settings)
    try:
        store.backup_to(out)
    finally:
        store.close()
    print(
        f"backed up {settings.db_path} to {out} ({out.stat().st_size:,} bytes) in {time.perf_counter() - t0:.1f}s"
    )
    return 0
