"""``python app.py status``: what the store holds."""

from __future__ import annotations

from cli.store import open_store
from config import Settings


def add_arguments(_parser) -> None:
    """No options."""


def run(args, settings: Settings) -> int:
    store = open_store(settings, read_only=True)
    print(f"store: {settings.db_path}")
    for table, n in store.counts().items():
        print(f"  {table:15s} {n:>12,}")
    return 0
