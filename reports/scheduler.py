"""The server's report scheduler: one background thread that looks for scheduled reports
that are due (``views/schedules.py``) every ``settings.schedule_check_seconds`` and
produces them one at a time, each as its creator, at a lowered CPU priority.

:func:`run_due` does one look and is what the thread calls; tests call it with a chosen
``now``. A report that fails (a render error or time-out, an empty period) is recorded
on its schedule and tried again after ``settings.schedule_retry_seconds``; nothing a
report does ends the thread.

Examples
--------
>>> from datetime import datetime, UTC
>>> run_due(store, settings, now=datetime(2026, 11, 20, 22, 10, tzinfo=UTC))  # doctest: +SKIP
[{'schedule_id': '3f2a...', 'status': 'produced', 'detail': '3f2a...-b-440305-2026-11-20-scans.csv', ...}]
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime

from reports import render
from reports.build import Period, build
from views import schedules as sched

log = logging.getLogger("emap.scheduler")

#: Niceness added to the scheduler's thread (and the Chromium it starts) on Linux:
#: callbacks and ingest go first on a busy machine.
NICENESS = 10


def maker(store, settings, model=None) -> sched.Make:
    """The report of a schedule for a period, built for its creator's viewer (as the
    ``export`` command builds one)."""

    def make(viewer, schedule: dict, due: sched.Due) -> bytes:
        period = Period(due.day, due.hour, due.days)
        report = build(
            store, settings, schedule["node_id"], period, schedule["metric"], model=model, viewer=viewer
        )
        return render(report, schedule["format"], lang=schedule["lang"], settings=settings)

    return make


def run_due(store, settings, now: datetime | None = None, model=None) -> list[dict]:
    """Produce every schedule due at ``now`` (default: now), one after the other; one
    result per schedule run (see ``views.schedules.run_one``)."""
    make = maker(store, settings, model)
    out = []
    for schedule, due in sched.due_now(store, settings, now):
        out.append(sched.run_one(store, settings, schedule, due, make, now=now))
    return out


class Scheduler:
    """The thread: :meth:`start`, then :meth:`close` when the server stops."""

    def __init__(self, store, settings, interval: float | None = None):
        self.store = store
        self.settings = settings
        self.interval = float(settings.schedule_check_seconds if interval is None else interval)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="emap-scheduler", daemon=True)

    def start(self) -> Scheduler:
        self.thread.start()
        return self

    def _run(self) -> None:
        try:  # on Linux a thread has a niceness of its own, inherited by what it starts
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
        except (AttributeError, OSError):
            pass
        while not self._stop.wait(self.interval):
            try:
                # a new model (and cache) each look: today's hours grow with ingest
                for r in run_due(self.store, self.settings):
                    log.info("scheduled report %s: %s %s", r["schedule_id"], r["status"], r["detail"])
            except Exception:  # the store busy or closing: look again next time
                log.exception("the report scheduler's look failed")

    def close(self, timeout: float = 60.0) -> None:
        """Stop after the report being made (if any), waiting up to ``timeout`` seconds
        (a render stops at ``render_timeout_seconds`` anyway)."""
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout)


def start(store, settings) -> Scheduler | None:
    """The scheduler of a serving process, started; None when it is off (setting 0, a
    lake or a read-only store: nowhere to record runs)."""
    if settings.schedule_check_seconds <= 0 or settings.lake_dir or getattr(store, "read_only", False):
        return None
    from data.store.schedules import ensure_tables

    ensure_tables(store)
    log.info("report scheduler on: looks every %ss", settings.schedule_check_seconds)
    return Scheduler(store, settings).start()
