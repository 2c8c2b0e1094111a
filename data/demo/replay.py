"""Replay a generated day to the ingest API, as real clients would, for demos and load tests.

Positions go out the way the field sends them: most devices' fixes in batches of
``batch_size`` through ``POST /api/v1/pings`` (a handheld gateway or an operations system),
a share of devices (``osmand_share``) as single OsmAnd requests, half in the query form
and half in the Traccar Client JSON form; parcel scans in batches through
``POST /api/v1/events``. Time runs ``speedup`` times faster than the data's clock, and
the day is moved to today (whole days, so hours stay as generated) unless told not to.

The day comes from a DuckDB file made by the demo generator (``source``; it must not be
open in a running server) or is generated in memory with the same size and seed as the
server's demo, so the device ids match its registered devices.
"""

from __future__ import annotations

import logging
import math
import queue
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import polars as pl
import requests

log = logging.getLogger(__name__)

KNOTS_PER_MPS = 1 / 0.514444


@dataclass
class ReplayReport:
    """What a replay sent and what the server answered."""

    pings_sent: int = 0
    events_sent: int = 0
    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    failed_requests: int = 0
    reasons: Counter = field(default_factory=Counter)
    elapsed_s: float = 0.0
    lag_s: float = 0.0  # how far behind schedule the last tick was
    retried: int = 0  # requests sent again after a passing failure (with retry)

    def lines(self) -> list[str]:
        out = [
            f"sent {self.pings_sent:,} pings and {self.events_sent:,} parcel events in "
            f"{self.requests:,} requests over {self.elapsed_s:.1f} s "
            f"({(self.pings_sent + self.events_sent) / max(self.elapsed_s, 1e-9):,.0f} records/s)",
            f"accepted {self.accepted:,}, rejected {self.rejected:,}, "
            f"requests failed {self.failed_requests:,}, behind schedule {self.lag_s:.1f} s"
            + (f", retried {self.retried:,}" if self.retried else ""),
        ]
        out += [f"  rejected {n:,}: {why}" for why, n in self.reasons.most_common(10)]
        return out


def load_day(
    size: str = "small",
    seed: int = 7,
    day: date | None = None,
    source: str | Path | None = None,
    local_tz: str = "Asia/Shanghai",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Pings and parcel events of one local day (naive UTC ``ts``), sorted by time.

    From ``source`` (a DuckDB file with the demo's data; default day: its last one), else
    generated in memory by :mod:`data.demo.generator` with ``size`` and ``seed`` (default day: today).
    """
    from data.store.database import Store

    tz = ZoneInfo(local_tz)
    if source is not None:
        with Store(source, read_only=True) as store:
            if day is None:
                last = store.scalar("SELECT max(ts) FROM pings")
                if last is None:
                    raise ValueError(f"{source} holds no pings to replay")
                day = last.replace(tzinfo=UTC).astimezone(tz).date()
            start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC).replace(tzinfo=None)
            end = start + timedelta(days=1)
            pings = store.sql(
                "SELECT device_id, ts, lat, lng, speed, heading, accuracy FROM pings "
                "WHERE ts >= ? AND ts < ? ORDER BY ts",
                [start, end],
            )
            events = store.sql(
                "SELECT event_id, parcel_id, kind, ts, lat, lng, outlet_id, courier_id, "
                "promised_at, dest_branch_id, expected_at FROM parcel_events "
                "WHERE ts >= ? AND ts < ? ORDER BY ts",
                [start, end],
            )
        return pings, events
    import numpy as np

    from data.demo import generator as demo
    from geo.hierarchy import load_tree

    spec = demo.SIZES[size]
    day = day or datetime.now(tz).date()
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "replay.duckdb") as store:
        store.save_tree(load_tree())
        net = demo.build_network(store, spec, seed)
        surges = demo.pick_surges(np.random.default_rng([seed, 1]), net, [day], spec.surges_per_day)
        pings, events = demo.generate_day(net, day, spec, seed, surges)
    return pings.sort("ts"), events.sort("ts")


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _records(frame: pl.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts (timestamps as ISO 8601 UTC, nulls dropped)."""
    out = []
    for row in frame.iter_rows(named=True):
        out.append({k: (_iso(v) if isinstance(v, datetime) else v) for k, v in row.items() if v is not None})
    return out


def replay(
    url: str,
    token: str,
    speedup: float = 60.0,
    size: str = "small",
    seed: int = 7,
    max_seconds: float | None = 60.0,
    source: str | Path | None = None,
    day: date | None = None,
    batch_size: int = 1000,
    osmand_share: float = 0.2,
    clients: int = 8,
    to_today: bool = True,
    start_hour: float | None = None,
    local_tz: str = "Asia/Shanghai",
    osmand_url: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReplayReport:
    """Stream one generated day to a running EMAP server.

    Parameters
    ----------
    url : str
        Base URL of the server, e.g. ``http://127.0.0.1:8050``.
    token : str
        A system token (``python app.py tokens create --system replay``).
    speedup : float
        Data seconds per wall-clock second (60: an hour of the day per minute).
    size, seed : str, int
        Demo size and seed (those of the server's demo, so that devices are known).
    max_seconds : float or None
        Stop after this many wall-clock seconds (None: play the whole day).
    source : path, optional
        A DuckDB file holding the demo's data, instead of generating in memory.
    day : date, optional
        The local day to play (default: the source's last day, or today).
    batch_size : int
        Records per batch request.
    osmand_share : float
        Share of devices that report each fix as a single OsmAnd request.
    clients : int
        Concurrent HTTP connections.
    to_today : bool
        Move the day to today (whole days), so the dashboard's live mode shows it.
    start_hour : float, optional
        Local hour of the day to start from (default: the first record).
    osmand_url : str, optional
        Where single fixes go, as phones send them: the phone port, e.g.
        ``http://127.0.0.1:5055`` (default: ``/osmand`` on ``url``).

    Returns
    -------
    ReplayReport

    Examples
    --------
    >>> report = replay("http://127.0.0.1:8050", token, speedup=120, max_seconds=30)  # doctest: +SKIP
    >>> print("\\n".join(report.lines()))                                             # doctest: +SKIP
    """
    say = progress or (lambda msg: None)
    say(f"preparing the day ({'from ' + str(source) if source else f'generating {size} demo, seed {seed}'})")
    pings, events = load_day(size, seed, day, source, local_tz)
    if pings.is_empty() and events.is_empty():
        raise ValueError("nothing to replay")
    tz = ZoneInfo(local_tz)
    if to_today:
        pings, events = _moved_to_today(pings, events, tz)
    first = _first_ts(pings, events)
    if start_hour is not None:
        first = _local_hour(first, start_hour, tz)
        pings = pings.filter(pl.col("ts") >= first)
        events = events.filter(pl.col("ts") >= first)
    base = url.rstrip("/")
    say(
        f"replaying {len(pings):,} pings and {len(events):,} parcel events at {speedup:g}x "
        f"to {base} (max {max_seconds} s)"
    )
    report = stream(
        pings,
        events,
        base,
        token,
        speedup,
        phone_url=osmand_url,
        first=first,
        max_seconds=max_seconds,
        batch_size=batch_size,
        osmand_share=osmand_share,
        clients=clients,
        seed=seed,
    )
    for line in report.lines():
        say(line)
    return report


def stream(
    pings: pl.DataFrame,
    events: pl.DataFrame,
    url: str,
    token: str,
    speedup: float,
    phone_url: str | None = None,
    first: datetime | None = None,
    max_seconds: float | None = None,
    batch_size: int = 1000,
    osmand_share: float = 0.2,
    clients: int = 8,
    seed: int = 7,
    stop: threading.Event | None = None,
    retry: bool = False,
    on_tick: Callable[[ReplayReport], None] | None = None,
    tick: float = 1.0,
    due_from: float | None = None,
) -> ReplayReport:
    """Send records to a running server on the clock, as its clients would: the
    sending part of :func:`replay`, shared with the live demo day (:mod:`data.demo.live`).

    Parameters
    ----------
    pings, events : polars.DataFrame
        Records in the ingest schema (naive UTC ``ts``).
    speedup : float
        Data seconds per wall-clock second; ``inf`` sends everything at once.
    phone_url : str, optional
        The phone port for single fixes (default: ``/osmand`` on ``url``).
    first : datetime, optional
        Data time at the start (default: the first record).
    stop : threading.Event, optional
        Set to stop early: what is queued is dropped, what is in flight finishes.
    retry : bool
        Retry a request that failed for a passing reason (no connection, 429, 5xx)
        with a growing pause, until it goes through or ``stop`` is set; without it such
        a request counts as failed at once.
    on_tick : callable, optional
        Called with the report after each slice of data is queued.
    tick : float
        Wall-clock seconds of data queued at a time (fewer, larger batches when longer).
    due_from : float, optional
        ``time.monotonic()`` when data time ``first`` was due (default: now); what fell
        due since is sent at once, to catch up.
    """
    pings = pings.sort("ts")
    events = events.sort("ts")
    # devices reporting one fix per request, chosen stably by their id
    single = pings["device_id"].hash(seed) % 1000 < int(osmand_share * 1000)
    pings = pings.with_columns(single.alias("_single"))
    base = url.rstrip("/")
    phones = phone_url.rstrip("/") + "/" if phone_url else f"{base}/osmand"
    sender = _Sender(base, phones, token, clients, stop=stop, retry=retry)
    t_start = time.monotonic() if due_from is None else due_from
    if not (pings.is_empty() and events.is_empty()):
        sender.start()
        first = first or _first_ts(pings, events)
        _play(pings, events, first, speedup, max_seconds, batch_size, sender, t_start, stop, on_tick, tick)
        sender.stop()
    sender.report.elapsed_s = time.monotonic() - t_start
    return sender.report


def _first_ts(pings: pl.DataFrame, events: pl.DataFrame) -> datetime:
    return min(f["ts"].min() for f in (pings, events) if not f.is_empty())


def _last_ts(pings: pl.DataFrame, events: pl.DataFrame) -> datetime:
    return max(f["ts"].max() for f in (pings, events) if not f.is_empty())


def _moved_to_today(
    pings: pl.DataFrame, events: pl.DataFrame, tz: ZoneInfo
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The records moved by whole days, so that the first one's local day is today."""
    data_day = _first_ts(pings, events).replace(tzinfo=UTC).astimezone(tz).date()
    shift = timedelta(days=(datetime.now(tz).date() - data_day).days)
    if not shift:
        return pings, events
    pings = pings.with_columns(pl.col("ts") + shift)
    events = events.with_columns(
        [pl.col(c) + shift for c in ("ts", "promised_at", "expected_at") if c in events.columns]
    )
    return pings, events


def _local_hour(ts: datetime, hour: float, tz: ZoneInfo) -> datetime:
    """``hour`` hours after the local midnight of ``ts``'s local day (naive UTC in and out).

    Examples
    --------
    >>> _local_hour(datetime(2025, 11, 23, 1, 30), 8.5, ZoneInfo("Asia/Shanghai"))
    datetime.datetime(2025, 11, 23, 0, 30)
    """
    local_midnight = datetime.combine(ts.replace(tzinfo=UTC).astimezone(tz).date(), datetime.min.time(), tz)
    return (local_midnight + timedelta(hours=hour)).astimezone(UTC).replace(tzinfo=None)


def _play(
    pings: pl.DataFrame,
    events: pl.DataFrame,
    first: datetime,
    speedup: float,
    max_seconds: float | None,
    batch_size: int,
    sender: _Sender,
    t_start: float,
    stop: threading.Event | None = None,
    on_tick: Callable[[ReplayReport], None] | None = None,
    tick: float = 1.0,
) -> None:
    """Hand the records (sorted by ``ts``) to ``sender`` slice by slice of data time (``tick``
    wall seconds of it at a time), on the clock."""
    report = sender.report
    data_t = first
    last = _last_ts(pings, events)
    # positions in the sorted frames: a slice is found by bisection, not by a filter
    # over the whole day each second
    at = {id(f): int(f["ts"].search_sorted(first, side="left")) for f in (pings, events)}
    while data_t <= last:
        wall = time.monotonic() - t_start
        if (max_seconds is not None and wall >= max_seconds) or (stop is not None and stop.is_set()):
            break
        slice_end = (
            last + timedelta(microseconds=1)
            if math.isinf(speedup)
            else data_t + timedelta(seconds=tick * speedup)
        )
        parts = []
        for f in (pings, events):
            end = int(f["ts"].search_sorted(slice_end, side="left"))
            parts.append(f.slice(at[id(f)], end - at[id(f)]))
            at[id(f)] = end
        p, e = parts
        sender.send_slice(p, e, batch_size)
        report.pings_sent += len(p)
        report.events_sent += len(e)
        if on_tick is not None:
            on_tick(report)
        data_t = slice_end
        due = 0.0 if math.isinf(speedup) else (data_t - first).total_seconds() / speedup
        now = time.monotonic() - t_start
        report.lag_s = max(0.0, now - due)
        if due > now:
            if stop is not None:
                stop.wait(due - now)
            else:
                time.sleep(due - now)


def _osmand_query(rec: dict) -> dict:
    """A fix as the OsmAnd app sends it, in the query (speed in knots).

    Examples
    --------
    >>> _osmand_query({"device_id": "d1", "ts": "t", "lat": 22.5, "lng": 114.0, "speed": 1.0})
    {'id': 'd1', 'lat': 22.5, 'lon': 114.0, 'timestamp': 't', 'speed': 1.94}
    """
    params = {"id": rec["device_id"], "lat": rec["lat"], "lon": rec["lng"], "timestamp": rec["ts"]}
    if rec.get("speed") is not None:
        params["speed"] = round(rec["speed"] * KNOTS_PER_MPS, 2)
    if rec.get("heading") is not None:
        params["bearing"] = rec["heading"]
    if rec.get("accuracy") is not None:
        params["accuracy"] = rec["accuracy"]
    return params


def _traccar_json(rec: dict) -> dict:
    """A fix as the Traccar Client sends it, in a JSON body.

    Examples
    --------
    >>> _traccar_json({"device_id": "d1", "ts": "t", "lat": 22.5, "lng": 114.0})["location"]["coords"]
    {'latitude': 22.5, 'longitude': 114.0, 'speed': None, 'heading': None, 'accuracy': None}
    """
    coords = {
        "latitude": rec["lat"],
        "longitude": rec["lng"],
        "speed": rec.get("speed"),
        "heading": rec.get("heading"),
        "accuracy": rec.get("accuracy"),
    }
    return {"device_id": rec["device_id"], "location": {"timestamp": rec["ts"], "coords": coords}}


_REFUSED = "refused for good, kept in quarantine: "


class _Sender:
    """Client threads sending what is queued, counting the server's answers in ``report``."""

    def __init__(
        self,
        base: str,
        phone_url: str,
        token: str,
        clients: int,
        stop: threading.Event | None = None,
        retry: bool = False,
    ):
        self.base, self.phone_url = base, phone_url
        self.auth = {"Authorization": f"Bearer {token}"}
        self.report = ReplayReport()
        self.lock = threading.Lock()
        self.work: queue.Queue = queue.Queue(maxsize=clients * 64)
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]
        self.n_single = 0  # single fixes queued so far: odd ones go in the query form
        self.stopping = stop or threading.Event()
        self.retry = retry

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        """Wait for everything queued to be sent (or dropped, once stopping)."""
        for _ in self.threads:
            self.work.put(None)
        for t in self.threads:
            t.join()

    def send_slice(self, pings: pl.DataFrame, events: pl.DataFrame, batch_size: int) -> None:
        """Queue a slice of the day: batches of pings and events, single fixes one by one."""
        batch = _records(pings.filter(~pl.col("_single")).drop("_single"))
        for i in range(0, len(batch), batch_size):
            self.work.put(("batch", "/api/v1/pings", batch[i : i + batch_size], "pings"))
        for rec in _records(pings.filter(pl.col("_single")).drop("_single")):
            self.n_single += 1
            self.work.put(("osmand", {**rec, "_n": self.n_single}))
        ev = _records(events)
        for i in range(0, len(ev), batch_size):
            self.work.put(("batch", "/api/v1/events", ev[i : i + batch_size], "parcel_events"))

    def _client(self) -> None:
        session = requests.Session()
        while True:
            item = self.work.get()
            if item is None:
                return
            if self.stopping.is_set():
                continue  # stopping: what is still queued is dropped
            r = self._with_retries(session, item)
            if r is not None:
                self._count(item, r)

    def _with_retries(self, session, item) -> requests.Response | None:
        """The answer to ``item``, retried while it fails for a passing reason (with
        ``retry``); None when no answer came."""
        pause = 0.5
        while True:
            try:
                r, error = self._request(session, item), None
            except requests.RequestException as exc:
                r, error = None, exc
            passing = r is None or r.status_code == 429 or r.status_code >= 500
            if not (self.retry and passing) or self.stopping.is_set():
                break
            with self.lock:
                self.report.retried += 1
            # a busy or restarting server gets room to recover, not a stream of retries
            self.stopping.wait(pause)
            pause = min(pause * 2, 30.0)
        if r is None:
            log.warning("request failed: %s", error)
            with self.lock:
                self.report.requests += 1
                self.report.failed_requests += 1
        return r

    def _request(self, session, item) -> requests.Response:
        if item[0] == "osmand":
            return self._osmand(session, item[1])
        _, path, records, _kind = item
        return session.post(
            f"{self.base}{path}",
            data=orjson.dumps(records),
            headers={**self.auth, "Content-Type": "application/json"},
            timeout=120,
        )

    def _count(self, item, r: requests.Response) -> None:
        report = self.report
        with self.lock:
            report.requests += 1
            if item[0] == "osmand":
                if r.status_code == 200 and r.text.startswith(_REFUSED):
                    report.rejected += 1  # answered 200 so that the phone goes on; not stored
                    report.reasons.update([r.text.strip()[len(_REFUSED) :]])
                elif r.status_code == 200:
                    report.accepted += 1
                elif r.status_code in (400, 403):
                    report.rejected += 1
                    report.reasons.update([r.text.strip()])
                else:
                    report.failed_requests += 1
                return
            if r.status_code != 200:
                report.failed_requests += 1
                return
            res = r.json()
            report.accepted += res["accepted"]
            report.rejected += len(res["rejected"])
            report.reasons.update(x["reason"] for x in res["rejected"])

    def _osmand(self, session, rec) -> requests.Response:
        """One fix as a phone sends it: half in the query form, half in the JSON form."""
        if int(rec["_n"]) % 2:
            return session.get(self.phone_url, params=_osmand_query(rec), headers=self.auth, timeout=120)
        return session.post(
            self.phone_url,
            timeout=120,
            data=orjson.dumps(_traccar_json(rec)),
            headers={**self.auth, "Content-Type": "application/json"},
        )


def add_arguments(parser) -> None:
    """Arguments of ``python app.py replay`` (see :func:`replay`)."""
    parser.add_argument("--url", default="http://127.0.0.1:8050", help="base URL of the running server")
    parser.add_argument("--token", required=True, help="a system token")
    parser.add_argument("--speedup", type=float, default=60.0, help="data seconds per second (default 60)")
    parser.add_argument("--size", default="small", help="demo size of the server (small, default, large)")
    parser.add_argument("--seed", type=int, default=7, help="demo seed of the server")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="stop after this long (0: whole day)")
    parser.add_argument("--source", help="DuckDB file with demo data to replay instead of generating")
    parser.add_argument("--day", type=date.fromisoformat, help="local day to replay (YYYY-MM-DD)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--osmand-share", type=float, default=0.2, help="share of devices sending single OsmAnd requests"
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections")
    parser.add_argument("--start-hour", type=float, help="local hour to start from, e.g. 8")
    parser.add_argument("--keep-date", action="store_true", help="keep the data's date (default: today)")
    parser.add_argument(
        "--osmand-url",
        help="send single fixes to the phone port as phones do, e.g. "
        "http://127.0.0.1:5055 (default: /osmand on --url)",
    )


def run_from_args(args, local_tz: str = "Asia/Shanghai") -> ReplayReport:
    """Run :func:`replay` from parsed :func:`add_arguments` arguments."""
    return replay(
        args.url,
        args.token,
        speedup=args.speedup,
        size=args.size,
        seed=args.seed,
        max_seconds=args.max_seconds or None,
        source=args.source,
        day=args.day,
        batch_size=args.batch_size,
        osmand_share=args.osmand_share,
        clients=args.clients,
        to_today=not args.keep_date,
        start_hour=args.start_hour,
        local_tz=local_tz,
        osmand_url=args.osmand_url,
        progress=print,
    )
