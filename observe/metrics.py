"""The service's Prometheus metrics: one :class:`Metrics` per app, on a registry of its own.

A registry per instance, not prometheus-client's global one: tests and several apps in
one process (a dashboard and a standalone ingest app) each count their own, and no
metric is registered twice.

Label values come from fixed lists only (:data:`ENDPOINTS`, :data:`KINDS`,
:data:`STATUSES`, :data:`REASONS`, and the dashboard's callback outputs); anything else is
counted as ``other``. An id, a name or a free-text reason as a label would make a new time
series for every device or message, which a Prometheus server cannot hold.

Counting is by batch: the ingest paths call :meth:`Metrics.records` once per request with
totals, never once per record (ingest takes tens of thousands of records a second).

Examples
--------
>>> m = Metrics()
>>> m.records("pings", "pings", accepted=3, rejected={"unknown_device": 1})
>>> m.value("emap_records_accepted_total", endpoint="pings", kind="pings")
3.0
>>> m.request("nowhere", 200)
>>> m.value("emap_ingest_requests_total", endpoint="other", status="200")
1.0
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: The label value of anything not in a fixed list.
OTHER = "other"
#: Ingest endpoints: the batch API's two routes, file import, and phone fixes (the
#: ``/osmand`` route, its WSGI front and the phone listener count as one).
ENDPOINTS = ("pings", "events", "import", "osmand")
#: Kinds of record.
KINDS = ("pings", "parcel_events", "outlets", "couriers")
#: HTTP statuses the ingest endpoints answer with.
STATUSES = ("200", "400", "401", "403", "404", "405", "409", "413", "500", "503")
#: Why records are rejected (``data.ingest.reasons.code_of`` maps each message to one).
REASONS = (
    "not_object",
    "malformed",
    "conflicting",
    "missing_field",
    "unreadable",
    "out_of_range",
    "no_fix",
    "implausible_time",
    "implausible_value",
    "invalid_value",
    "unknown_device",
    "outside_network",
    "outside_scope",
    "not_stored",
)

#: Parts of one group commit timed apart (``emap_commit_phase_seconds``): reading the
#: records (validate), finding their cell, owner and branch (prepare), the store's
#: transaction (store), and keeping the refused ones (quarantine).
COMMIT_PHASES = ("validate", "prepare", "store", "quarantine")

_COMMIT_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_RECORDS = (1, 10, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000, 200_000)
_CALLBACK_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def fixed(value: str, allowed) -> str:
    """``value`` when it is one of ``allowed``, else ``"other"``.

    Examples
    --------
    >>> fixed("pings", KINDS), fixed("dev-001", KINDS)
    ('pings', 'other')
    """
    return value if value in allowed else OTHER


class Metrics:
    """Every metric of one app, on its own ``registry`` (what ``GET /metrics`` writes).

    Counters and histograms are counted by the code that sees the event; the gauges of
    the writer's queue, the writer's thread and the store's size are read at scrape time
    from functions given to :meth:`watch_writer` and :meth:`watch_store`, so they are
    always current and cost nothing between scrapes. A lake (no writer) never calls
    :meth:`watch_writer`, and its page has no writer metrics.

    Attributes
    ----------
    live_subscribers : prometheus_client.Gauge
        Open live pages now: the live view (``pages/live.py``) points it at its count of
        pages that polled lately (``set_function``).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = Counter(
            "emap_ingest_requests",
            "Ingest requests answered, by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=r,
        )
        self._accepted = Counter(
            "emap_records_accepted",
            "Records stored (or already stored: a resent record counts again), by endpoint and kind.",
            ["endpoint", "kind"],
            registry=r,
        )
        self._rejected = Counter(
            "emap_records_rejected",
            "Records refused (quarantined, or held by the phone), by endpoint and reason code.",
            ["endpoint", "reason"],
            registry=r,
        )
        self._commit_seconds = Histogram(
            "emap_commit_duration_seconds",
            "Seconds one group commit of the ingest writer took (validation, store, quarantine).",
            ["kind"],
            buckets=_COMMIT_SECONDS,
            registry=r,
        )
        self._commit_records = Histogram(
            "emap_commit_batch_records",
            "Records in one group commit of the ingest writer.",
            ["kind"],
            buckets=_BATCH_RECORDS,
            registry=r,
        )
        self._commit_phase_seconds = Counter(
            "emap_commit_phase_seconds",
            "Seconds the ingest writer spent in each part of its group commits (a slow commit "
            "says which part grew: the store's transaction, or the work around it).",
            ["kind", "phase"],
            registry=r,
        )
        self._writer_wait_seconds = Histogram(
            "emap_writer_wait_seconds",
            "Seconds an ingest request's records waited in the queue before the writer took "
            "them (with the commit's own time, what a client waits for its answer).",
            ["kind"],
            buckets=_COMMIT_SECONDS,
            registry=r,
        )
        self._commit_errors = Counter(
            "emap_commit_errors",
            "Ingest requests the writer could not store (answered 503: nothing acknowledged).",
            ["kind"],
            registry=r,
        )
        self._callback_seconds = Histogram(
            "emap_callback_duration_seconds",
            "Seconds a Dash callback request took, by output (the callback's output id).",
            ["output"],
            buckets=_CALLBACK_SECONDS,
            registry=r,
        )
        self._web_callbacks = Counter(
            "emap_web_callbacks",
            "Dashboard callbacks by who answered them: a web worker, or the serving process "
            "(no worker could: each one is a sign of a worker down or too slow).",
            ["answered_by"],
            registry=r,
        )
        self._answers = Counter(
            "emap_answers",
            "Panel callbacks by what the answer cache did: served a kept answer (kept), made "
            "and kept one (made), made one it could not keep (not_kept).",
            ["outcome"],
            registry=r,
        )
        self.live_subscribers = Gauge(
            "emap_live_subscribers", "Viewers subscribed to the live channel now.", registry=r
        )
        self._watched: dict[str, Callable[[], float]] = {}
        self._lock = threading.Lock()

    # -- counted where it happens --------------------------------------------------------
    def request(self, endpoint: str, status: int, n: int = 1) -> None:
        """``n`` ingest requests answered with ``status``."""
        self._requests.labels(fixed(endpoint, ENDPOINTS), fixed(str(status), STATUSES)).inc(n)

    def records(self, endpoint: str, kind: str, accepted: int, rejected: Mapping[str, int]) -> None:
        """The records of one request: ``accepted`` stored, ``rejected`` by reason code."""
        endpoint = fixed(endpoint, ENDPOINTS)
        if accepted:
            self._accepted.labels(endpoint, fixed(kind, KINDS)).inc(accepted)
        for reason, n in rejected.items():
            if n:
                self._rejected.labels(endpoint, fixed(reason, REASONS)).inc(n)

    def commit(self, kind: str, seconds: float, records: int, errors: int = 0) -> None:
        """One group commit of the writer: how long it took, its records, requests not stored."""
        kind = fixed(kind, KINDS)
        self._commit_seconds.labels(kind).observe(seconds)
        self._commit_records.labels(kind).observe(records)
        if errors:
            self._commit_errors.labels(kind).inc(errors)

    def commit_phases(self, kind: str, seconds: Mapping[str, float]) -> None:
        """Seconds one group commit spent in each of :data:`COMMIT_PHASES`."""
        kind = fixed(kind, KINDS)
        for phase, took in seconds.items():
            self._commit_phase_seconds.labels(kind, fixed(phase, COMMIT_PHASES)).inc(took)

    def writer_wait(self, kind: str, seconds: float) -> None:
        """One request's records taken by the writer ``seconds`` after they were queued."""
        self._writer_wait_seconds.labels(fixed(kind, KINDS)).observe(seconds)

    def callback(self, output: str, seconds: float) -> None:
        """One Dash callback request; ``output`` already one of the app's outputs or "other"."""
        self._callback_seconds.labels(output).observe(seconds)

    def web_callback(self, answered_by: str) -> None:
        """A dashboard callback answered by a web worker ("worker") or by the serving process
        itself because no worker could ("server")."""
        self._web_callbacks.labels(fixed(answered_by, ("worker", "server"))).inc()

    def answer(self, outcome: str) -> None:
        """One panel callback, by what the answer cache did (``pages/answers.py``)."""
        self._answers.labels(fixed(outcome, ("kept", "made", "not_kept"))).inc()

    # -- read at scrape time -------------------------------------------------------------
    def watch_writer(self, queued: Callable[[], float], alive: Callable[[], bool]) -> None:
        """Expose the writer's queue depth (records waiting) and whether its thread runs."""
        self._watch("emap_writer_queue_records", "Records waiting for the ingest writer.", queued)
        self._watch(
            "emap_writer_up", "1 while the ingest writer's thread runs, 0 once it has stopped.", alive
        )

    def watch_web_workers(self, ready: Callable[[], float]) -> None:
        """Expose how many web workers answer now (``serve --web-processes``)."""
        self._watch("emap_web_workers_ready", "Web worker processes answering callbacks now.", ready)

    def watch_phone_process(self, up: Callable[[], bool], starts: Callable[[], float]) -> None:
        """Expose whether the phone process runs and how often it was started
        (:class:`data.ingest.phone_relay.PhoneRelay`)."""
        self._watch(
            "emap_phone_process_up", "1 while the phone listener's process runs, 0 when it is down.", up
        )
        self._watch(
            "emap_phone_process_starts",
            "Times the phone listener's process was started since the server started (1: never restarted).",
            starts,
        )

    def watch_store(self, size: Callable[[], float]) -> None:
        """Expose the store's size on disk (bytes)."""
        self._watch("emap_store_bytes", "Bytes of the store on disk (the DuckDB file and its WAL).", size)

    def _watch(self, name: str, doc: str, read: Callable[[], float]) -> None:
        # One gauge per name: watching again (a second writer, a reopened store) points it
        # at the new source instead of registering the name twice.
        with self._lock:
            first = name not in self._watched
            self._watched[name] = read
        if first:
            Gauge(name, doc, registry=self.registry).set_function(lambda: self._read(name))

    def _read(self, name: str) -> float:
        # A source that fails (a store being closed) must not fail the whole scrape: the
        # sample is NaN and the other metrics are still written.
        try:
            return float(self._watched[name]())
        except Exception:
            return float("nan")

    # -- tests and doctests --------------------------------------------------------------
    def value(self, name: str, **labels) -> float | None:
        """The current value of one sample (``None`` when there is none)."""
        return self.registry.get_sample_value(name, labels)
