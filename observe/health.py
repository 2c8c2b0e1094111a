"""Health: named checks run on request, and the answer of ``GET /api/v1/health``.

Each part of the service that can stop registers a check (the ingest writer, the store);
the answer is healthy only when every check passes. A check returns its details or
raises :class:`Unhealthy` saying what failed; any other exception fails it too, reported
by its type only (the health answer needs no sign-in, so no paths or queries leak).

Examples
--------
>>> h = Health()
>>> h.check("store", lambda: {"answered_ms": 0.1})
>>> h.report()
(True, {'status': 'ok', 'checks': {'store': {'ok': True, 'answered_ms': 0.1}}})
>>> def stopped():
...     raise Unhealthy("writer stopped")
>>> h.check("writer", stopped)
>>> h.report()[1]["checks"]["writer"]
{'ok': False, 'error': 'writer stopped'}
"""

from __future__ import annotations

from collections.abc import Callable


class Unhealthy(RuntimeError):
    """A check failed; the message says what (shown in the health answer)."""


class Health:
    """The checks of one app, and counters shown beside them (the ingest writer's)."""

    def __init__(self) -> None:
        self._checks: dict[str, Callable[[], dict]] = {}
        self._counters: list[Callable[[], dict]] = []

    def check(self, name: str, run: Callable[[], dict]) -> None:
        """Register (or replace) the check ``name``: ``run()`` returns details or raises."""
        self._checks[name] = run

    def counters(self, read: Callable[[], dict]) -> None:
        """Add figures written at the top level of the answer (kept for older monitors)."""
        self._counters.append(read)

    def report(self) -> tuple[bool, dict]:
        """``(healthy, answer)``: the answer has ``status`` ("ok" or "failing"), the
        counters, and ``checks`` with ``ok`` and details (or ``error``) per check."""
        checks: dict[str, dict] = {}
        for name, run in self._checks.items():
            try:
                checks[name] = {"ok": True, **run()}
            except Unhealthy as exc:
                checks[name] = {"ok": False, "error": str(exc)}
            except Exception as exc:
                checks[name] = {"ok": False, "error": f"{name} check failed ({type(exc).__name__})"}
        healthy = all(c["ok"] for c in checks.values())
        answer: dict = {"status": "ok" if healthy else "failing"}
        for read in self._counters:
            try:
                answer.update(read())
            except Exception:  # figures are extra; the checks say whether all is well
                pass
        answer["checks"] = checks
        return healthy, answer
