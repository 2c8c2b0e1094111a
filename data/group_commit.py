"""Group commit: many small ingest requests, one store transaction per group.

A DuckDB transaction per HTTP request would cap the API at a few hundred requests per
second (and a per-record insert far below that). Instead every request hands its raw
records to :meth:`GroupCommitter.submit` and waits on the returned future; one writer
thread takes everything queued, validates it with the file-import rules in one polars
pass, stores it in one :meth:`data.store.Store.ingest_pings` / ``ingest_events`` call
(one transaction, cube updated incrementally), keeps the rejected records in quarantine,
and only then resolves the futures. A request is therefore answered 2xx only once its
records are committed: acknowledged means stored. Under load the groups simply grow,
so throughput rises with concurrency while latency stays about one commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import polars as pl

from data import validate
from data.store import Store

log = logging.getLogger(__name__)

KINDS = ("pings", "parcel_events")
_ALLOWED = {"pings": set(validate.PING_COLUMNS), "parcel_events": set(validate.EVENT_COLUMNS)}
_CHECK = {"pings": validate.check_pings, "parcel_events": validate.check_events}


class Busy(RuntimeError):
    """Too many records are waiting for the writer; the client should retry later."""


@dataclass
class Outcome:
    """What became of one request's records once committed."""

    received: int
    accepted: int
    #: ``(index in the request, reason)`` of each rejected record, in index order.
    rejected: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class _Job:
    kind: str
    records: list[dict]           # raw records as received (for validation and quarantine)
    indices: list[int]            # each record's index in the request
    source: str
    early: list[tuple[int, str, dict]]  # rejected before validation: (index, reason, raw)
    future: Future


def _text(value):
    """Raw value as text: the validator reads text exactly as it reads a CSV cell."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return orjson.dumps(value).decode()


def _columns(kind: str, records: list[dict]) -> dict[str, list]:
    """Column lists of known fields (aliases mapped, case folded), values as text."""
    allowed = _ALLOWED[kind]
    cols: dict[str, list] = {}
    for i, rec in enumerate(records):
        row: dict[str, object] = {}
        aliased: dict[str, object] = {}
        for key, value in rec.items():
            low = key.strip().lower() if isinstance(key, str) else key
            if low in allowed:
                row[low] = value
            else:
                canon = validate.ALIASES.get(low)
                if canon in allowed:
                    aliased.setdefault(canon, value)
        for canon, value in aliased.items():
            row.setdefault(canon, value)
        for name, value in row.items():
            col = cols.get(name)
            if col is None:
                col = cols[name] = [None] * i
            col.append(_text(value))
        for col in cols.values():
            if len(col) == i:
                col.append(None)
    return cols


class GroupCommitter:
    """One writer thread committing queued ingest requests in groups.

    Parameters
    ----------
    store : Store
        The store written to (this object is its only writer of pings and events).
    local_tz : str
        Time zone of naive timestamps.
    linger : float
        Seconds the writer waits after the first queued request so that concurrent ones
        join the same group (a few milliseconds).
    max_group_rows : int
        Records committed at most in one transaction.
    max_pending_rows : int
        Records allowed to wait; beyond this :meth:`submit` raises :class:`Busy`.
    auto_register : bool
        Register unknown devices (as couriers of the same id) instead of rejecting them.

    Examples
    --------
    >>> gc = GroupCommitter(store, "Asia/Shanghai").start()           # doctest: +SKIP
    >>> gc.submit("pings", [{"id": "d1", "lat": 22.5, "lon": 114.0,   # doctest: +SKIP
    ...            "timestamp": 1700000000}], "test").result().accepted
    1
    """

    def __init__(self, store: Store, local_tz: str, linger: float = 0.002,
                 max_group_rows: int = 200_000, max_pending_rows: int = 2_000_000,
                 auto_register: bool = False):
        self.store = store
        self.local_tz = local_tz
        self.linger = linger
        self.max_group_rows = max_group_rows
        self.max_pending_rows = max_pending_rows
        self.auto_register = auto_register
        self._queue: deque[_Job] = deque()
        self._pending_rows = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self.stats = {"groups": 0, "requests": 0, "received": 0, "accepted": 0, "stored": 0,
                      "duplicates": 0, "rejected": 0, "errors": 0, "commit_ms": 0}

    # -- client side ----------------------------------------------------------------
    def start(self) -> GroupCommitter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="emap-group-commit", daemon=True)
            self._thread.start()
        return self

    def submit(self, kind: str, records: list[dict], source: str, indices: list[int] | None = None,
               early: list[tuple[int, str, dict]] | None = None) -> Future:
        """Queue raw records; the future resolves to an :class:`Outcome` once committed."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        fut: Future = Future()
        job = _Job(kind, records, indices if indices is not None else list(range(len(records))),
                   source, list(early or ()), fut)
        with self._cond:
            if self._closing:
                raise Busy("the server is shutting down")
            if self._pending_rows + len(records) > self.max_pending_rows and self._queue:
                raise Busy(f"{self._pending_rows} records are waiting to be stored")
            self._queue.append(job)
            self._pending_rows += len(records)
            self._cond.notify()
        return fut

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- writer side ----------------------------------------------------------------
    def _take(self) -> list[_Job] | None:
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return None
        if self.linger:
            time.sleep(self.linger)
        jobs, rows = [], 0
        with self._cond:
            while self._queue and (not jobs or rows + len(self._queue[0].records) <= self.max_group_rows):
                job = self._queue.popleft()
                rows += len(job.records)
                jobs.append(job)
            self._pending_rows -= rows
        return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take()
            if jobs is None:
                return
            for kind in KINDS:
                group = [j for j in jobs if j.kind == kind]
                if not group:
                    continue
                t0 = time.perf_counter()
                try:
                    outcomes = self._commit(kind, group)
                except Exception as exc:  # keep serving: these requests fail, later ones go on
                    log.exception("group commit of %d %s requests failed", len(group), kind)
                    self.stats["errors"] += len(group)
                    for job in group:
                        job.future.set_exception(exc)
                    continue
                took = time.perf_counter() - t0
                self.stats["commit_ms"] += int(took * 1000)
                if took > 1.0:  # every waiting client waits this long: worth knowing why
                    log.warning("commit of %d %s requests (%d records) took %.1f s", len(group), kind,
                                sum(len(j.records) for j in group), took)
                for job, outcome in zip(group, outcomes, strict=True):
                    job.future.set_result(outcome)

    def _commit(self, kind: str, group: list[_Job]) -> list[Outcome]:
        records = [r for job in group for r in job.records]
        rejected: dict[int, str] = {}  # global 1-based row -> reason
        if records:
            cols = _columns(kind, records)
            frame = pl.DataFrame({name: pl.Series(name, vals, dtype=pl.String) for name, vals in cols.items()})
            frame = frame.with_columns(pl.int_range(1, len(records) + 1, dtype=pl.UInt32).alias("_row"))
            good, bad = _CHECK[kind](frame, self.local_tz)
            rejected.update(zip(bad["_row"].to_list(), bad["reason"].to_list(), strict=False))
            if kind == "pings":
                if self.auto_register and not good.is_empty():
                    self._register(good["device_id"].unique().to_list())
                stored, dup, refused = self.store.ingest_pings(good)
            else:
                stored, dup, refused = self.store.ingest_events(good)
            rejected.update(zip(refused["_row"].to_list(), refused["reason"].to_list(), strict=False))
            self.stats["stored"] += stored
            self.stats["duplicates"] += dup
        outcomes, quarantine = [], {}
        offset = 0
        for job in group:
            n = len(job.records)
            rej = [(job.indices[row - offset - 1], rejected[row], job.records[row - offset - 1])
                   for row in range(offset + 1, offset + n + 1) if row in rejected]
            offset += n
            rej += job.early
            rej.sort(key=lambda r: r[0])
            if rej:
                quarantine.setdefault(job.source, []).extend(rej)
            received = n + len(job.early)
            outcomes.append(Outcome(received, received - len(rej), [(i, why) for i, why, _ in rej]))
        for source, rows in quarantine.items():
            self.store.quarantine(pl.DataFrame({
                "_row": [i + 1 for i, _, _ in rows],
                "reason": [why for _, why, _ in rows],
                "raw": [orjson.dumps(raw, default=str).decode() for _, _, raw in rows],
            }, schema={"_row": pl.Int64, "reason": pl.String, "raw": pl.String}), source, kind)
        self.stats["groups"] += 1
        self.stats["requests"] += len(group)
        self.stats["received"] += sum(o.received for o in outcomes)
        self.stats["accepted"] += sum(o.accepted for o in outcomes)
        self.stats["rejected"] += sum(len(o.rejected) for o in outcomes)
        return outcomes

    def _register(self, device_ids: list[str]) -> None:
        """Make unknown devices couriers of their own id (``auto_register_devices``)."""
        known = {r[0] for r in self.store.cursor().execute(
            "SELECT device_id FROM devices WHERE list_contains(?, device_id)", [device_ids]).fetchall()}
        new = [d for d in device_ids if d not in known]
        if not new:
            return
        now = datetime.now(UTC).replace(tzinfo=None)
        self.store.upsert("couriers", pl.DataFrame(
            {"courier_id": new, "name": new, "mode": ["ebike"] * len(new)}), "courier_id")
        self.store.upsert("devices", pl.DataFrame(
            {"device_id": new, "courier_id": new, "vehicle_id": [None] * len(new),
             "registered_at": [now] * len(new)},
            schema={"device_id": pl.String, "courier_id": pl.String, "vehicle_id": pl.String,
                    "registered_at": pl.Datetime("us")}), "device_id")
        log.info("registered %d new devices: %s", len(new), ", ".join(new[:10]))
