"""The composition root: which store a command works on, and what a new store is given.

Every subcommand reaches its store through :func:`open_store`, so the choice between the
embedded DuckDB file and a lake (``EMAP_LAKE_DIR`` / ``serve --lake``) is made once, here,
above both ``data/`` and ``lake/``.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cli import context
from config import Settings

if TYPE_CHECKING:
    from data.store.database import Store


class StoreHeld(RuntimeError):
    """Another process holds the store and does not answer on the owner channel."""


def open_store(settings: Settings, read_only: bool = False) -> Store:
    """The store ``settings`` name: the embedded DuckDB file, or, with ``lake_dir`` set, a
    :class:`lake.serve.LakeStore` over that lake (its own file holds users and views).

    A command the serving process runs for another process (:mod:`cli.owner`) gets the
    store that process owns, which closing leaves open.

    Raises
    ------
    StoreHeld
        When another process holds the file (DuckDB lets one process open it), with a
        sentence naming that process.
    """
    import duckdb

    from data.store.database import Store

    command = context.remote()
    if command is not None:
        return _Borrowed(command.store)  # type: ignore[return-value]
    try:
        if settings.lake_dir:
            from lake.serve import LakeStore

            return LakeStore(
                Path(settings.data_dir) / "lake.duckdb",
                settings.lake_dir,
                memory_limit=settings.duckdb_memory_limit,
            )
        return Store(settings.db_path, read_only=read_only, memory_limit=settings.duckdb_memory_limit)
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        raise StoreHeld(held_message(settings, str(exc))) from None


def held_message(settings: Settings, error: str = "") -> str:
    """The sentence for a store another process holds (its PID from DuckDB's message)."""
    pid = re.search(r"PID (\d+)", error)
    who = f"process {pid.group(1)}" if pid else "another process"
    return (
        f"the store {settings.db_path} is held by {who}, which does not answer on the owner "
        f"channel ({owner_socket(settings)}); if it is an EMAP server, it may be starting or "
        "stuck: wait, or stop it and run the command again"
    )


def owner_socket(settings: Settings) -> Path:
    """Where the serving process listens for other processes: a Unix socket beside the
    store, readable and writable only by the account that owns the store."""
    return Path(settings.db_path).with_name(Path(settings.db_path).name + ".owner")


class _Borrowed:
    """The serving process's store lent to one command: everything but closing it."""

    def __init__(self, store):
        object.__setattr__(self, "_store", store)

    def __setattr__(self, name, value) -> None:
        setattr(self._store, name, value)  # e.g. users.sessions_epoch: seen by the server's guard

    def close(self) -> None:
        """The owner closes its store, not a command it runs."""

    def __enter__(self):
        return self

    def __exit__(self, *_exc) -> None:
        return None

    def __getattr__(self, name):
        return getattr(self._store, name)


def progress_printer(start: float):
    """A progress callback printing each message with the seconds since ``start``."""

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f}s] {msg}", flush=True)

    return say


def ensure_demo(store: Store, settings: Settings) -> None:
    """Generate the demo on first run; reuse it afterwards."""
    from data.demo import generator
    from data.demo.accounts import create_accounts

    if store.meta("demo_size") is not None or store.scalar("SELECT EXISTS (SELECT 1 FROM pings)"):
        return
    t0 = time.perf_counter()
    print(f"First run: creating {settings.db_path} with the '{settings.demo_size}' demo network.")
    totals = generator.generate(
        store,
        size=settings.demo_size,
        seed=settings.demo_seed,
        days=settings.demo_days,
        progress=progress_printer(t0),
    )
    print(
        f"Demo ready in {time.perf_counter() - t0:.0f}s: {totals['pings']:,} pings, "
        f"{totals['parcel_events']:,} parcel events."
    )
    create_accounts(store, settings.data_dir)


def ensure_tree(store: Store) -> None:
    """A store without an organisation tree gets the one built from the boundaries."""
    if not store.has_tree():
        from geo.hierarchy import load_tree

        print("building the organisation tree from the China boundaries", file=sys.stderr)
        store.save_tree(load_tree())


def ensure_accounts(store: Store, settings: Settings) -> None:
    """A demo store made before accounts existed gets them; any other store without a
    user says how to create one."""
    from auth import users

    users.ensure_tables(store)
    if store.scalar("SELECT count(*) FROM users") > 0:
        return
    if store.meta("demo_size") is not None:
        from data.demo.accounts import create_accounts

        create_accounts(store, settings.data_dir)
    else:
        print("No users yet: python app.py users create NAME --role admin --node hq", flush=True)
