"""Group commit: many small ingest requests, one store transaction per group.

A DuckDB transaction per HTTP request would cap the API at a few hundred requests per
second (and a per-record insert far below that). Instead every request hands its raw
records to :meth:`GroupCommitter.submit` and waits on the returned future; one writer
thread takes everything queued, validates it with the file-import rules in one polars
pass, stores it in one :meth:`data.store.database.Store.ingest_pings` / ``ingest_events`` call
(one transaction, cube updated incrementally), keeps the rejected records in quarantine,
and only then resolves the futures. A request is therefore answered 2xx only once its
records are committed: acknowledged means stored. Under load the groups simply grow,
so throughput rises with concurrency while latency stays about one commit.

The writer is two threads in a pipeline: the *preparer* reads, validates and locates a
group (polars, the cell and owner lookups) while the *committer* stores the group before
it (the DuckDB transaction, the quarantine, the answers). Measured on 2 cores with 22,000
pings/s and 2,200 phone fixes/s: one thread doing both was busy 95% of the time, a third
of it preparing; with dashboard users on the same cores it fell behind the clients. Two
stages overlap that third with the store's work. The preparer takes the next group only
once the committer has taken the one before: one group at most is prepared ahead, so a
request waits behind at most the commit in progress and that group, and groups stay as
large as the arrivals between two commits.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import polars as pl

from data.ingest import records as canon
from data.ingest import validate
from data.ingest.quarantine import Quarantine
from data.store.database import Batch, Store
from observe.health import Unhealthy
from observe.metrics import COMMIT_PHASES, Metrics

log = logging.getLogger(__name__)

KINDS = ("pings", "parcel_events")
#: Seconds a request waits for its commit before answering 503 (nothing acknowledged).
COMMIT_TIMEOUT = 60.0
_CHECK = {"pings": validate.check_pings, "parcel_events": validate.check_events}
#: Extra commits tried to find the records of a failing request that cannot be stored,
#: before the request is answered "not stored" as a whole.
_SALVAGE_BUDGET = 64


#: The kind of a health probe's job: it carries no records and resolves once the writer
#: has taken it, proving the writer's loop turns.
_PROBE = "probe"


class Busy(RuntimeError):
    """Too many records are waiting for the writer; the client should retry later."""


@dataclass(frozen=True)
class Scope:
    """What the token of a request may write, checked on the validated records (the values
    stored), not on the request's own words.

    Parameters
    ----------
    device_id : str, optional
        A device token: pings of this device only (a ping naming no device is taken as
        this device's).
    node_id : str, optional
        A system token limited to a node: positions inside the node's branches only.
    refusal : str
        The reason given for a record outside the scope.
    keep : bool
        Quarantine records refused for scope (the batch API) or not (a phone keeps its
        fix and sends it again once its token is fixed).
    on_refused : callable, optional
        Called with the number of records refused for scope, once committed (the audit log).
    """

    device_id: str | None = None
    node_id: str | None = None
    refusal: str = "outside what the token may write"
    keep: bool = True
    on_refused: Callable[[int], None] | None = None


@dataclass
class Outcome:
    """What became of one request's records once committed."""

    received: int
    accepted: int
    #: ``(index in the request, reason)`` of each rejected record, in index order.
    rejected: list[tuple[int, str]] = field(default_factory=list)
    #: Indices of the records refused because the token may not write them.
    unauthorised: list[int] = field(default_factory=list)


@dataclass
class _Prepared:
    """A group read, validated and located by the preparer, waiting for the committer."""

    kind: str
    group: list[_Job]
    #: Seconds of each of :data:`observe.metrics.COMMIT_PHASES` spent on the group so far.
    phases: dict[str, float]
    ready: Batch | None = None  # rows to store, their cube rows made; None: nothing to store
    rejected: dict[int, str] = field(default_factory=dict)  # global 1-based row -> reason
    unauthorised: set[int] = field(default_factory=set)  # rows refused for the token's scope
    error: Exception | None = None  # preparing the group failed


@dataclass
class _Job:
    kind: str
    rows: list[dict]  # canonical records (data.ingest.records.canonical), values as text
    raws: list  # the same records as received (for quarantine)
    indices: list[int]  # each record's index in the request
    source: str
    early: list[tuple[int, str, object]]  # rejected before validation: (index, reason, raw)
    future: Future | None
    scope: Scope | None = None
    queued: float = field(default_factory=time.perf_counter)  # when submitted


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
    metrics : observe.metrics.Metrics, optional
        Where commit latency and batch sizes are counted (default: metrics of its own).

    Examples
    --------
    >>> gc = GroupCommitter(store, "Asia/Shanghai").start()           # doctest: +SKIP
    >>> gc.submit("pings", [{"id": "d1", "lat": 22.5, "lon": 114.0,   # doctest: +SKIP
    ...            "timestamp": 1700000000}], "test").result().accepted
    1
    """

    def __init__(
        self,
        store: Store,
        local_tz: str,
        linger: float = 0.002,
        max_group_rows: int = 200_000,
        max_pending_rows: int = 2_000_000,
        auto_register: bool = False,
        limits: validate.Limits | None = None,
        quarantine: Quarantine | None = None,
        metrics: Metrics | None = None,
    ):
        self.store = store
        self.metrics = metrics or Metrics()
        self.local_tz = local_tz
        self.linger = linger
        self.max_group_rows = max_group_rows
        self.max_pending_rows = max_pending_rows
        self.auto_register = auto_register
        self.limits = limits or validate.Limits()
        self.quarantine = quarantine or Quarantine(store)
        self._queue: deque[_Job] = deque()
        self._pending_rows = 0
        self._cond = threading.Condition()
        self._closing = False
        self._threads: list[threading.Thread] = []
        # the preparer's hand-over to the committer: one prepared group at a time
        self._prepared: queue.Queue[_Prepared | None] = queue.Queue(maxsize=1)
        # perf_counter() of the newest group commit that succeeded and of the newest that
        # failed (the health check: is the writer storing?)
        self._last_ok: float | None = None
        self._last_failed: float | None = None
        self.stats = {
            "groups": 0,
            "requests": 0,
            "received": 0,
            "accepted": 0,
            "stored": 0,
            "duplicates": 0,
            "rejected": 0,
            "errors": 0,
            "commit_ms": 0,
            "isolated": 0,
        }

    # -- client side ----------------------------------------------------------------
    def start(self) -> GroupCommitter:
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._prepare_loop, name="emap-ingest-prepare", daemon=True),
                threading.Thread(target=self._commit_loop, name="emap-group-commit", daemon=True),
            ]
            for thread in self._threads:
                thread.start()
        return self

    def submit(
        self,
        kind: str,
        records: list,
        source: str,
        indices: list[int] | None = None,
        early: list[tuple[int, str, object]] | None = None,
        scope: Scope | None = None,
    ) -> Future:
        """Queue raw records; the future resolves to an :class:`Outcome` once committed.

        Each record is read once, here (:func:`data.ingest.records.canonical`): a record that
        cannot be read (not an object, conflicting fields, a list where a value belongs)
        is rejected alone with its reason. ``scope`` limits what the records may be.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        default_device = scope.device_id if scope is not None else None
        indices = indices if indices is not None else list(range(len(records)))
        early = list(early or ())
        rows, raws, kept = [], [], []
        for i, rec in zip(indices, records, strict=True):
            row, why = canon.canonical(kind, rec, default_device)
            if row is None:
                early.append((i, why, rec))
                continue
            rows.append(row)
            raws.append(rec)
            kept.append(i)
        fut: Future = Future()
        job = _Job(kind, rows, raws, kept, source, early, fut, scope)
        with self._cond:
            if self._closing:
                raise Busy("the server is shutting down")
            if self._pending_rows + len(rows) > self.max_pending_rows and self._queue:
                raise Busy(f"{self._pending_rows} records are waiting to be stored")
            self._queue.append(job)
            self._pending_rows += len(rows)
            self._cond.notify()
        return fut

    @property
    def pending_rows(self) -> int:
        """Records queued and not yet taken by the writer."""
        return self._pending_rows

    def alive(self) -> bool:
        """Whether the writer's threads run and take requests."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads) and not self._closing

    def probe(self, timeout: float = 5.0) -> dict:
        """Pass an empty job through the writer and say how it went (the health check).

        Returns
        -------
        dict
            ``round_trip_ms`` (queue to writer and back: one commit ahead of it at most,
            under load), ``queued_records``, and ``last_commit_s_ago`` once anything was
            committed.

        Raises
        ------
        observe.health.Unhealthy
            The writer has stopped, did not take the probe within ``timeout`` seconds, or
            its newest commit failed.
        """
        if not self.alive():
            raise Unhealthy("ingest writer stopped")
        t0 = time.perf_counter()
        fut: Future = Future()
        with self._cond:
            if self._closing:
                raise Unhealthy("ingest writer stopping")
            self._queue.append(_Job(_PROBE, [], [], [], "health", [], fut))
            self._cond.notify()
        try:
            fut.result(timeout)
        except Exception:
            raise Unhealthy(f"ingest writer did not answer within {timeout:g} s") from None
        now = time.perf_counter()
        if self._last_failed is not None and (self._last_ok is None or self._last_failed > self._last_ok):
            raise Unhealthy("the ingest writer's newest commit failed")
        details = {"round_trip_ms": round((now - t0) * 1000, 1), "queued_records": self._pending_rows}
        if self._last_ok is not None:
            details["last_commit_s_ago"] = round(now - self._last_ok, 1)
        return details

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued, then stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        deadline = time.monotonic() + timeout
        for thread in self._threads:  # the preparer first: it tells the committer to stop
            thread.join(max(0.0, deadline - time.monotonic()))

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
            while self._queue and (not jobs or rows + len(self._queue[0].rows) <= self.max_group_rows):
                job = self._queue.popleft()
                rows += len(job.rows)
                jobs.append(job)
            self._pending_rows -= rows
        taken = time.perf_counter()
        for job in jobs:
            if job.kind != _PROBE:
                self.metrics.writer_wait(job.kind, taken - job.queued)
        return jobs

    def _prepare_loop(self) -> None:
        """The preparer: take what is queued, prepare each kind's group, hand it over."""
        try:
            while True:
                # Take the next group only once the committer has taken the one before:
                # what arrives meanwhile joins it, and one group at most waits prepared.
                self._prepared.join()
                jobs = self._take()
                if jobs is None:
                    return
                for kind in KINDS:
                    group = [j for j in jobs if j.kind == kind]
                    if group:
                        self._hand_over(self._prepare_group(kind, group))
                probes = [j for j in jobs if j.kind == _PROBE]
                if probes:  # answered by the committer: the health check sees both turn
                    self._hand_over(_Prepared(_PROBE, probes, {}))
        finally:
            self._prepared.put(None)

    def _hand_over(self, prepared: _Prepared) -> None:
        self._prepared.join()
        self._prepared.put(prepared)

    def _commit_loop(self) -> None:
        """The committer: store each prepared group in turn and answer its requests."""
        while True:
            prepared = self._prepared.get()
            self._prepared.task_done()  # the preparer may take the next group now
            if prepared is None:
                return
            try:
                if prepared.kind == _PROBE:
                    for job in prepared.group:
                        job.future.set_result(None)
                else:
                    self._commit_group(prepared)
            except Exception as exc:  # a fault here must not stop the writer
                log.exception("the ingest writer failed on a group of %s requests", prepared.kind)
                for job in prepared.group:
                    if job.future is not None and not job.future.done():
                        job.future.set_exception(exc)

    def _prepare_group(self, kind: str, group: list[_Job]) -> _Prepared:
        prepared = _Prepared(kind, group, dict.fromkeys(COMMIT_PHASES, 0.0))
        try:
            self._prepare(prepared)
        except Exception as exc:  # the committer isolates the requests of this group
            prepared.error = exc
        return prepared

    def _commit_group(self, prepared: _Prepared) -> None:
        kind, group = prepared.kind, prepared.group
        t0 = time.perf_counter()
        try:
            if prepared.error is not None:
                raise prepared.error
            outcomes: list[Outcome | BaseException] = list(self._finish(prepared))
        except Exception:
            # Something in this group cannot be stored. It must not cost the other
            # clients their answers: each request is committed alone, and in a request
            # that still fails, the records that cannot be stored are sought out.
            log.exception(
                "group commit of %d %s requests failed; committing them one by one", len(group), kind
            )
            self.stats["isolated"] += 1
            outcomes = [self._commit_alone(kind, job) for job in group]
        done = time.perf_counter()
        # the group's own time in both stages, not its wait between them
        took = done - t0 + prepared.phases["validate"] + prepared.phases["prepare"]
        self.stats["commit_ms"] += int(took * 1000)
        failed = sum(isinstance(o, BaseException) for o in outcomes)
        if failed == len(outcomes):
            self._last_failed = done
        else:
            self._last_ok = done
        self.metrics.commit(kind, took, sum(len(j.rows) + len(j.early) for j in group), failed)
        self.metrics.commit_phases(kind, prepared.phases)
        if took > 1.0:  # every waiting client waits this long: worth knowing why
            log.warning(
                "commit of %d %s requests (%d records) took %.1f s",
                len(group),
                kind,
                sum(len(j.rows) for j in group),
                took,
            )
        for job, outcome in zip(group, outcomes, strict=True):
            # A refusal is in the audit log before its request is answered: whoever reads
            # the answer finds the line.
            scope = job.scope
            if (
                scope is not None
                and scope.on_refused is not None
                and not isinstance(outcome, BaseException)
                and outcome.unauthorised
            ):
                try:
                    scope.on_refused(len(outcome.unauthorised))
                except Exception:  # the answer stands; the audit line is what is lost
                    log.exception("recording a refusal failed")
            if isinstance(outcome, BaseException):
                self.stats["errors"] += 1
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    def _commit_alone(self, kind: str, job: _Job) -> Outcome | BaseException:
        """One request committed on its own; records that cannot be stored are refused."""
        budget = [_SALVAGE_BUDGET]
        try:
            return self._salvage(kind, job, budget)
        except Exception as exc:
            log.exception("%s request from %s not stored", kind, job.source)
            return exc

    def _salvage(self, kind: str, job: _Job, budget: list[int]) -> Outcome:
        try:
            return self._commit(kind, [job])[0]
        except Exception as exc:
            if budget[0] <= 0:
                raise
            budget[0] -= 1
            if len(job.rows) <= 1:
                if not job.rows:
                    raise
                # This record alone cannot be stored: refused for good, with the error.
                # (When the store itself is failing, quarantining fails too, and the
                # request is answered "not stored".)
                why = f"could not be stored ({type(exc).__name__})"
                return self._commit(
                    kind,
                    [
                        replace(
                            job,
                            rows=[],
                            raws=[],
                            indices=[],
                            early=[*job.early, (job.indices[0], why, job.raws[0])],
                        )
                    ],
                )[0]
            half = len(job.rows) // 2
            first = replace(job, rows=job.rows[:half], raws=job.raws[:half], indices=job.indices[:half])
            second = replace(
                job, rows=job.rows[half:], raws=job.raws[half:], indices=job.indices[half:], early=[]
            )
            a, b = self._salvage(kind, first, budget), self._salvage(kind, second, budget)
            return Outcome(
                a.received + b.received,
                a.accepted + b.accepted,
                sorted(a.rejected + b.rejected),
                sorted(a.unauthorised + b.unauthorised),
            )

    def _commit(self, kind: str, group: list[_Job]) -> list[Outcome]:
        """Prepare and store one group at once (a request committed alone)."""
        prepared = _Prepared(kind, group, dict.fromkeys(COMMIT_PHASES, 0.0))
        self._prepare(prepared)
        return self._finish(prepared)

    def _prepare(self, prepared: _Prepared) -> None:
        """Read, validate and locate the group's records: what the store will take, and
        the rows refused with their reasons. Nothing is stored here, except the devices
        ``auto_register`` registers."""
        kind, group, phases = prepared.kind, prepared.group, prepared.phases
        rows = [r for job in group for r in job.rows]
        rejected, unauthorised = prepared.rejected, prepared.unauthorised
        t = time.perf_counter()
        if rows:
            cols = canon.columns(kind, rows)
            frame = pl.DataFrame(
                {name: pl.Series(name, vals, dtype=pl.String) for name, vals in cols.items()}
            )
            frame = frame.with_columns(pl.int_range(1, len(rows) + 1, dtype=pl.UInt32).alias("_row"))
            good, bad = _CHECK[kind](frame, self.local_tz, self.limits)
            rejected.update(zip(bad["_row"].to_list(), bad["reason"].to_list(), strict=False))
            scoped = [(job, n) for job, n in zip(group, _starts(group), strict=True) if job.scope is not None]
            if scoped and kind == "pings":
                good = self._check_devices(good, scoped, rejected, unauthorised)
            t = _lap(phases, "validate", t)
            if kind == "pings":
                if self.auto_register and not good.is_empty():
                    self._register(good["device_id"].unique().to_list())
                ready, refused = self.store.prepare_pings(good)
            else:
                ready, refused = self.store.prepare_events(good)
            rejected.update(zip(refused["_row"].to_list(), refused["reason"].to_list(), strict=False))
            if scoped:
                ready = self._check_nodes(ready, scoped, rejected, unauthorised)
            prepared.ready = Batch.of(kind, ready)  # the polars work of the commit, done here
            _lap(phases, "prepare", t)

    def _finish(self, prepared: _Prepared) -> list[Outcome]:
        """Store a prepared group, keep its refused records, and say what became of each
        request's records."""
        kind, group, phases = prepared.kind, prepared.group, prepared.phases
        rejected, unauthorised = prepared.rejected, prepared.unauthorised
        t = time.perf_counter()
        if prepared.ready is not None:
            stored, dup = self.store.commit_batch(prepared.ready)
            t = _lap(phases, "store", t)
            self.stats["stored"] += stored
            self.stats["duplicates"] += dup
        outcomes, quarantine = [], {}
        offset = 0
        for job in group:
            n = len(job.rows)
            rej, refused_scope = [], []
            for row in range(offset + 1, offset + n + 1):
                if row in rejected:
                    k = row - offset - 1
                    rej.append((job.indices[k], rejected[row], job.raws[k]))
                    if row in unauthorised:
                        refused_scope.append(job.indices[k])
            offset += n
            rej += job.early
            rej.sort(key=lambda r: r[0])
            keep = rej
            if refused_scope and job.scope is not None and not job.scope.keep:
                out = set(refused_scope)
                keep = [r for r in rej if r[0] not in out]
            if keep:
                quarantine.setdefault(job.source, []).extend(keep)
            received = n + len(job.early)
            outcomes.append(
                Outcome(received, received - len(rej), [(i, why) for i, why, _ in rej], sorted(refused_scope))
            )
        for source, bad in quarantine.items():
            self.quarantine.keep(
                pl.DataFrame(
                    {
                        "_row": [i + 1 for i, _, _ in bad],
                        "reason": [why for _, why, _ in bad],
                        "raw": [canon.raw_json(raw, self.quarantine.raw_bytes) for _, _, raw in bad],
                    },
                    schema={"_row": pl.Int64, "reason": pl.String, "raw": pl.String},
                ),
                source,
                kind,
            )
        _lap(phases, "quarantine", t)
        self.stats["groups"] += 1
        self.stats["requests"] += len(group)
        self.stats["received"] += sum(o.received for o in outcomes)
        self.stats["accepted"] += sum(o.accepted for o in outcomes)
        self.stats["rejected"] += sum(len(o.rejected) for o in outcomes)
        return outcomes

    @staticmethod
    def _scope_column(frame: pl.DataFrame, scoped: list[tuple[_Job, int]], attr: str) -> pl.Series:
        """Per row of ``frame`` (by ``_row``), the ``attr`` of its request's scope (or null)."""
        total = int(frame["_row"].max()) if len(frame) else 0
        values: list[str | None] = [None] * total
        for job, n in scoped:
            value = getattr(job.scope, attr)
            if value is not None and n < total:
                values[n : n + len(job.rows)] = [value] * len(job.rows)
        return pl.Series(values[:total], dtype=pl.String).gather(frame["_row"].cast(pl.Int64) - 1)

    @staticmethod
    def _refuse(
        frame: pl.DataFrame, bad: pl.Series, scoped, rejected, unauthorised, reasons: pl.Series | None = None
    ) -> pl.DataFrame:
        """Rows of ``frame`` flagged ``bad`` refused (with ``reasons``, else their scope's
        refusal); returns the other rows."""
        if not bad.any():
            return frame
        spans = [(n, n + len(job.rows), job.scope.refusal) for job, n in scoped]
        rows = frame.filter(bad)["_row"].to_list()
        whys = reasons.filter(bad).to_list() if reasons is not None else [None] * len(rows)
        for row, given in zip(rows, whys, strict=True):
            for lo, hi, why in spans:
                if lo < row <= hi:
                    rejected[row] = given or why
                    unauthorised.add(row)
                    break
        return frame.filter(~bad)

    def _check_devices(self, good: pl.DataFrame, scoped, rejected, unauthorised) -> pl.DataFrame:
        """Pings of a device token's request that name another device (as stored) are refused."""
        if good.is_empty() or not any(job.scope.device_id for job, _ in scoped):
            return good
        allowed = self._scope_column(good, scoped, "device_id")
        bad = (allowed.is_not_null() & (good["device_id"] != allowed)).fill_null(False)
        if not bad.any():
            return good
        reasons = pl.DataFrame({"a": allowed, "d": good["device_id"]}).select(
            pl.format("the token of device '{}' cannot report for device '{}'", "a", "d")
        )["a"]
        return self._refuse(good, bad, scoped, rejected, unauthorised, reasons)

    def _check_nodes(self, ready: pl.DataFrame, scoped, rejected, unauthorised) -> pl.DataFrame:
        """Records of a node-limited token's request whose stored position (its branch)
        lies outside the node are refused."""
        nodes = {job.scope.node_id for job, _ in scoped if job.scope.node_id}
        if ready.is_empty() or not nodes:
            return ready
        pairs = (
            self.store.cursor()
            .execute(
                "SELECT ancestor_id, branch_id FROM node_branches WHERE list_contains(?, ancestor_id)",
                [sorted(nodes)],
            )
            .fetchall()
        )
        node = self._scope_column(ready, scoped, "node_id")
        inside = pl.DataFrame(
            {"node": [a for a, _ in pairs], "branch": [b for _, b in pairs]},
            schema={"node": pl.String, "branch": pl.String},
        )
        probe = pl.DataFrame({"node": node, "branch": ready["branch_id"]}).with_row_index("_i")
        ok = probe.join(inside, on=["node", "branch"], how="semi")["_i"]
        bad = node.is_not_null() & ~pl.Series(range(len(ready))).is_in(ok.cast(pl.Int64).implode())
        return self._refuse(ready, bad, scoped, rejected, unauthorised)

    def _register(self, device_ids: list[str]) -> None:
        """Make unknown devices couriers of their own id (``auto_register_devices``)."""
        known = {
            r[0]
            for r in self.store.cursor()
            .execute("SELECT device_id FROM devices WHERE list_contains(?, device_id)", [device_ids])
            .fetchall()
        }
        new = [d for d in device_ids if d not in known]
        if not new:
            return
        now = datetime.now(UTC).replace(tzinfo=None)
        self.store.upsert(
            "couriers",
            pl.DataFrame({"courier_id": new, "name": new, "mode": ["ebike"] * len(new)}),
            "courier_id",
        )
        self.store.upsert(
            "devices",
            pl.DataFrame(
                {
                    "device_id": new,
                    "courier_id": new,
                    "vehicle_id": [None] * len(new),
                    "registered_at": [now] * len(new),
                },
                schema={
                    "device_id": pl.String,
                    "courier_id": pl.String,
                    "vehicle_id": pl.String,
                    "registered_at": pl.Datetime("us"),
                },
            ),
            "device_id",
        )
        log.info("registered %d new devices: %s", len(new), ", ".join(new[:10]))


def _starts(group: list[_Job]) -> list[int]:
    """Row offset (0-based) of each request's first record in the group's frame."""
    out, n = [], 0
    for job in group:
        out.append(n)
        n += len(job.rows)
    return out


def _lap(phases: dict[str, float], phase: str, since: float) -> float:
    """Add the seconds since ``since`` to ``phases[phase]``; returns now."""
    now = time.perf_counter()
    phases[phase] = phases.get(phase, 0.0) + (now - since)
    return now
