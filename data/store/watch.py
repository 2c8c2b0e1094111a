"""The store as the health answer and the metrics see it: does it answer, how big is it.

Whoever serves a store (``python app.py serve``, the standalone ingest app, a lake) calls
:func:`watch_store` once; both figures are read when asked (a health request, a scrape),
never in between.
"""

from __future__ import annotations

import time
from pathlib import Path

from data.store.database import Store
from observe.health import Health, Unhealthy
from observe.metrics import Metrics


def size_bytes(path: Path) -> int:
    """Bytes of a DuckDB file and its write-ahead log (absent between checkpoints).

    Examples
    --------
    >>> size_bytes(Path("/nonexistent/emap.duckdb"))
    0
    """
    total = 0
    for p in (path, path.with_name(path.name + ".wal")):
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total


def answers(store: Store) -> dict:
    """Run a trivial query on the store; its time in ms, or :class:`Unhealthy`."""
    t0 = time.perf_counter()
    try:
        store.cursor().execute("SELECT 1").fetchone()
    except Exception as exc:
        # only the error's type: the health answer is public, DuckDB's text names paths
        raise Unhealthy(f"store not answering ({type(exc).__name__})") from None
    return {"answered_ms": round((time.perf_counter() - t0) * 1000, 2)}


def watch_store(store: Store, metrics: Metrics, health: Health) -> None:
    """Register the check "store" and the gauge ``emap_store_bytes`` of ``store``."""
    health.check("store", lambda: answers(store))
    metrics.watch_store(lambda: size_bytes(store.path))
