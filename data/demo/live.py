"""The live demo day: a network day of the demo, generated for today from the current time
of day and played through the real ingest paths while the server runs.

Two parts, kept apart:

* :func:`live_day` (pure, no server): the records of the day. The demo's models
  (:func:`data.demo.generator.generate_day`) make today's day with one surge, scheduled so
  that it is under way within the first half hour; the day is moved so that it starts
  now, and split into the **backlog** (scans made before now of parcels still on their
  way: the in-transit scans the forecast reads, sent at once) and the **stream** (every
  fix and scan from now on, sent on the clock).
* :class:`LivePlayer` (a background thread of ``python app.py serve``): checks that the
  store holds only the demo, gets a system token in-process, waits for the server to
  listen, and sends the backlog and then the stream with :func:`data.demo.replay.stream`
  (batches to the HTTP API, a share of devices as single OsmAnd requests to the phone
  port), retrying while the server is busy.

Couriers work from about 08:00 to 19:45 in the demo's model. Started inside the busy part
of the day (:data:`BUSY_FROM` to :data:`BUSY_UNTIL`, local time) the live day keeps the
real hours, so the earlier demo days are a true baseline for the forecast; started
earlier or later (03:00, 22:00) it is shifted by the smallest amount that puts its start
in the busy part, so that something moves whatever the hour. The times stay real; what
moves is the schedule. The forecast's baseline of an hour being that hour on earlier
days, a shifted day also gives the earlier demo days the same shifted hours
(:func:`moved_history`, stored as the generator stores its days, from a thread of its own
so that the couriers move meanwhile), so that its surge is predicted before it shows, as
inside the busy part.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

log = logging.getLogger("emap.live")

#: Local time of day (hours) from which, and until which, a live day keeps real hours.
BUSY_FROM = 8.75
BUSY_UNTIL = 16.5
#: The surge: demand of the couriers of one branch x this, for this many hours, from the
#: model hour under way at the start. Alerts count whole hours: a surge on from the first
#: minute opens its alert in about 20 minutes at the normal speed (started in the last
#: minutes of an hour, which cannot fill a cell, about half an hour into the next).
SURGE_FACTOR = 3.5
SURGE_HOURS = 3
#: Demo sizes a live day is played on (``large`` is for benchmarks: too heavy beside users).
SIZES = ("small", "default")
#: Columns of a surge (``demo_surges``; naive UTC hours).
SURGE_SCHEMA = {
    "branch_id": pl.String,
    "start_hour": pl.Datetime("us"),
    "end_hour": pl.Datetime("us"),
    "factor": pl.Float64,
    "cause": pl.String,
}
#: Seconds between the player's summary log lines.
LOG_EVERY = 300.0
#: Wall-clock seconds of the day sent at a time: a phone's fix every minute or so needs no
#: finer grain, and fewer, larger batches cost the server less (and the access log less).
TICK = 5.0


@dataclass(frozen=True)
class LiveDay:
    """Records of a live day (naive UTC times, sorted), in the ingest schema.

    ``backlog``: scans before ``start`` of parcels still on their way at ``start``;
    ``pings`` and ``events``: everything from ``start`` on; ``surge``: the scheduled surge
    (``demo_surges`` columns, in the shifted times); ``shift``: how far the model's day was
    moved (zero inside the busy hours).
    """

    start: datetime
    shift: timedelta
    backlog: pl.DataFrame
    pings: pl.DataFrame
    events: pl.DataFrame
    surge: pl.DataFrame

    @property
    def end(self) -> datetime:
        """Time of the day's last record."""
        return max(f["ts"].max() for f in (self.pings, self.events) if not f.is_empty())


def model_start(now_local: datetime) -> datetime:
    """The moment of the model's day (local, naive) that a live day started at
    ``now_local`` begins with: the same time inside the busy hours, else the nearest edge
    of them.

    Examples
    --------
    >>> model_start(datetime(2026, 12, 5, 14, 6))
    datetime.datetime(2026, 12, 5, 14, 6)
    >>> model_start(datetime(2026, 12, 5, 3, 0)), model_start(datetime(2026, 12, 5, 22, 0))
    (datetime.datetime(2026, 12, 5, 8, 45), datetime.datetime(2026, 12, 5, 16, 30))
    """
    midnight = datetime.combine(now_local.date(), datetime.min.time())
    hours = (now_local - midnight) / timedelta(hours=1)
    if BUSY_FROM <= hours <= BUSY_UNTIL:
        return now_local
    return midnight + timedelta(hours=min(max(hours, BUSY_FROM), BUSY_UNTIL))


def busiest_branch(network: dict[str, pl.DataFrame]) -> str:
    """The branch with the most couriers (ties: the first id): the surge's zone, the
    largest there is, so that it shows on any map."""
    return (
        network["couriers"]
        .group_by("branch_id")
        .len()
        .sort(["len", "branch_id"], descending=[True, False])["branch_id"][0]
    )


def surge_at(start_local: datetime, branch: str, tz: ZoneInfo) -> pl.DataFrame:
    """The live day's one surge (``demo_surges`` columns, naive UTC): whole model hours,
    from the hour under way at ``start_local`` (local, naive).

    Examples
    --------
    >>> s = surge_at(datetime(2026, 12, 5, 14, 40), "b-440305", ZoneInfo("Asia/Shanghai"))
    >>> s.select("start_hour", "end_hour").row(0)
    (datetime.datetime(2026, 12, 5, 6, 0), datetime.datetime(2026, 12, 5, 9, 0))
    """
    first = start_local.replace(minute=0, second=0, microsecond=0)
    start = first.replace(tzinfo=tz).astimezone(UTC).replace(tzinfo=None)
    return pl.DataFrame(
        {
            "branch_id": [branch],
            "start_hour": [start],
            "end_hour": [start + timedelta(hours=SURGE_HOURS)],
            "factor": [SURGE_FACTOR],
            "cause": ["promotion"],
        },
        schema=SURGE_SCHEMA,
    )


def live_day(
    network: dict[str, pl.DataFrame], size: str, seed: int, now: datetime, local_tz: str = "Asia/Shanghai"
) -> LiveDay:
    """The records of a live day starting at ``now`` (naive UTC).

    Parameters
    ----------
    network : dict of polars.DataFrame
        ``outlets``, ``couriers``, ``vehicles``, ``devices`` of the demo (as stored).
    size, seed : str, int
        The demo's size and seed.
    now : datetime
        Naive UTC start of the live day.

    Returns
    -------
    LiveDay
        Parcel ids carry the start time (``L<yymmdd><HHMM>...``), so that a later live day
        of the same date (a restart) makes new parcels rather than duplicates.
    """
    from data.demo import generator as demo

    tz = ZoneInfo(local_tz)
    now_local = now.replace(tzinfo=UTC).astimezone(tz).replace(tzinfo=None)
    begin = model_start(now_local)
    shift = now_local - begin
    day: date = begin.date()
    surge = surge_at(begin, busiest_branch(network), tz)
    pings, events = demo.generate_day(network, day, demo.SIZES[size], seed, surge)
    pings, events = _moved(pings, events, shift, f"L{now_local:%y%m%d%H%M}")
    later = events.filter(pl.col("ts") >= now)
    # Information leads physical flow: what the upstream network scanned before now about
    # parcels not yet delivered (or picked up) is already known when the day starts.
    backlog = events.filter((pl.col("ts") < now) & pl.col("parcel_id").is_in(later["parcel_id"].implode()))
    surge = surge.with_columns(pl.col("start_hour", "end_hour") + shift)
    return LiveDay(now, shift, backlog, pings.filter(pl.col("ts") >= now), later, surge)


def _moved(pings: pl.DataFrame, events: pl.DataFrame, shift: timedelta, tag: str):
    """A generated day's records moved by ``shift``, its parcel ids tagged ``tag`` instead
    of ``P<yymmdd>`` (new ids: nothing collides with the stored demo day), sorted."""
    pings = pings.with_columns(pl.col("ts") + shift).sort("ts", "device_id")
    return pings, _moved_events(events, shift, tag).sort("ts", "event_id")


def _moved_events(events: pl.DataFrame, shift: timedelta, tag: str) -> pl.DataFrame:
    return events.with_columns(
        *[pl.col(c) + shift for c in ("ts", "promised_at", "expected_at")],
        pl.col("parcel_id").str.replace(r"^P\d{6}", tag),
    ).with_columns(pl.concat_str([pl.col("parcel_id"), pl.col("kind")], separator=":").alias("event_id"))


# -- the earlier days' moved hours ------------------------------------------------------------
# The forecast's baseline of an hour is the same hour of earlier days (ops.forecast): a live
# day moved to the night needs earlier days that worked at night too. Before such a day is
# played, each earlier demo day gets, for every courier and van, the records of the same
# day moved by the same amount, in the hours in which that courier or van has no record.


def earlier_days(day: date, held) -> list[date]:
    """The days before ``day`` that the forecast of ``day`` may average over
    (``ops.forecast.candidate_days``) and that hold data (``held``), oldest first.

    Examples
    --------
    >>> held = {date(2026, 11, 19), date(2026, 11, 20), date(2026, 11, 1), date(2026, 11, 21)}
    >>> earlier_days(date(2026, 11, 21), held)
    [datetime.date(2026, 11, 19), datetime.date(2026, 11, 20)]
    """
    from ops import forecast as fc

    back = sorted(fc.candidate_days(fc.PARAMS), reverse=True)
    return [day - timedelta(days=k) for k in back if day - timedelta(days=k) in held]


def held_days(busy: pl.DataFrame, local_tz: str = "Asia/Shanghai") -> set[date]:
    """Local days of the hours in ``busy`` (``actor_id, hour``, naive UTC hour starts).

    Examples
    --------
    >>> busy = pl.DataFrame({"actor_id": ["c-000001"], "hour": [datetime(2026, 11, 19, 17)]})
    >>> held_days(busy)
    {datetime.date(2026, 11, 20)}
    """
    local = pl.col("hour").dt.replace_time_zone("UTC").dt.convert_time_zone(local_tz).dt.date()
    return set(busy.select(local.unique())["hour"].to_list())


def moved_history(
    network: dict[str, pl.DataFrame],
    size: str,
    seed: int,
    live: LiveDay,
    day: date,
    busy: pl.DataFrame,
    local_tz: str = "Asia/Shanghai",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The records the earlier demo day ``day`` gets before the moved live day ``live``.

    The demo's ordinary day ``day`` (no surge) is generated and moved by ``live.shift``,
    as the live day is; of it are kept the fixes of each courier and van in the hours in
    which ``busy`` (``actor_id, hour``: who already has records in which hour, naive UTC
    hour starts) holds nothing of it, and the parcels whose pickup or delivery falls in
    such an hour of its courier (with all their scans, so each parcel stays whole).
    Nothing at or after ``live.start``. Parcel ids are ``H<yymmdd><HHMM>...``: the day and
    the live day's local start, new ids whatever the stored day holds.

    Returns
    -------
    tuple of polars.DataFrame
        ``(pings, events)`` in the ingest schema.
    """
    from data.demo import generator as demo

    no_surge = pl.DataFrame(schema=SURGE_SCHEMA)
    pings, events = demo.generate_day(network, day, demo.SIZES[size], seed, no_surge)
    shift, start = live.shift, live.start
    moved_hour = (pl.col("ts") + shift).dt.truncate("1h").alias("hour")
    busy = busy.select("actor_id", pl.col("hour").cast(pl.Datetime("us")))
    # a device's hours rather than its courier's or van's: the pings are joined on their own ids
    devices = network["devices"].select(
        "device_id", pl.coalesce("courier_id", "vehicle_id").alias("actor_id")
    )
    busy_devices = busy.join(devices, on="actor_id").select("device_id", "hour")
    pings = (
        pings.filter(pl.col("ts") + shift < start)
        .with_columns(moved_hour)
        .join(busy_devices, on=["device_id", "hour"], how="anti")
        .drop("hour")
        .with_columns(pl.col("ts") + shift)
    )
    work = events.filter(pl.col("kind").is_in(["pickup", "delivered"])).select(
        "parcel_id", pl.col("courier_id").alias("actor_id"), moved_hour
    )
    kept = work.join(busy, on=["actor_id", "hour"], how="anti").select("parcel_id")
    later = events.filter(pl.col("ts") + shift >= start).select("parcel_id").unique()
    events = events.join(kept, on="parcel_id", how="semi").join(later, on="parcel_id", how="anti")
    start_local = start.replace(tzinfo=UTC).astimezone(ZoneInfo(local_tz))
    return pings, _moved_events(events, shift, f"H{day:%y%m%d}{start_local:%H%M}")


def _signed(delta: timedelta) -> str:
    """``+5:30`` / ``-5:45`` (hours:minutes).

    Examples
    --------
    >>> _signed(timedelta(hours=-5, minutes=-45)), _signed(timedelta(hours=5, minutes=30))
    ('-5:45', '+5:30')
    """
    minutes = round(delta / timedelta(minutes=1))
    return f"{'-' if minutes < 0 else '+'}{abs(minutes) // 60}:{abs(minutes) % 60:02d}"


# -- the store -------------------------------------------------------------------------------
#: Ids the demo generator gives (``data.demo.generator.build_network``): anything else in
#: the network tables was registered or imported by someone.
_DEMO_IDS = {
    "devices": ("device_id", r"^(86\d{13}|T\d{7})$"),
    "outlets": ("outlet_id", r"^[oh]-\d{6}-\d+$"),
    "couriers": ("courier_id", r"^c-\d{6}$"),
}


def refusal(store) -> str | None:
    """Why a live day must not be played on ``store``, or None when it holds only the demo.

    A store is a demo when the demo generator marked it (``meta.demo_size``, written by
    every version that made a demo), of a size a live day is played on, and its network
    holds only the generator's outlets, couriers and devices (a device registered or an
    outlet imported means real data arrives there).
    """
    size = store.meta("demo_size")
    if size is None:
        return "the store is not a demo store (no demo marker): it may hold real data"
    if size not in SIZES:
        return f"the demo is '{size}'; a live day plays on the {' and '.join(SIZES)} demos only"
    for table, (column, pattern) in _DEMO_IDS.items():
        n = store.scalar(f"SELECT count(*) FROM {table} WHERE NOT regexp_matches({column}, ?)", [pattern])
        if n:
            return f"the store holds {n:,} {table} that are not the demo's: it holds real data"
    return None


def read_network(store) -> dict[str, pl.DataFrame]:
    """The demo network as stored (the generator's frames, ordered by id)."""
    return {
        name: store.sql(f"SELECT * FROM {name} ORDER BY 1")
        for name in ("outlets", "couriers", "vehicles", "devices")
    }


def busy_hours(store, start: datetime, end: datetime) -> pl.DataFrame:
    """Who already has records in which hour of ``[start, end)``: ``actor_id, hour``
    (couriers and vans, from ``cube_presence``; naive UTC hour starts)."""
    return (
        store.cursor()
        .sql(
            "SELECT DISTINCT actor_id, hour FROM cube_presence WHERE hour >= $start AND hour < $end",
            params={"start": start, "end": end},
        )
        .pl()
    )


def store_records(
    store, pings: pl.DataFrame, events: pl.DataFrame, batch: int = 500_000, stop=None
) -> dict[str, int]:
    """Store generated records as the demo generator does (``Store.ingest_pings`` and
    ``ingest_events``: cells, branches, dedupe and the cube in one commit per batch);
    ``stop`` (an Event) set: no further batch."""
    totals = {"pings": 0, "parcel_events": 0, "refused": 0}
    for frame, kind in ((pings, "pings"), (events, "parcel_events")):
        for start in range(0, len(frame), batch):
            if stop is not None and stop.is_set():
                return totals
            part = frame.slice(start, batch).with_row_index("_row", offset=start + 1)
            stored, _dup, bad = store.ingest_pings(part) if kind == "pings" else store.ingest_events(part)
            totals[kind] += stored
            totals["refused"] += len(bad)
    return totals


# -- the player ------------------------------------------------------------------------------
class LivePlayer:
    """Plays live days through a running server's ingest API from a daemon thread.

    Parameters
    ----------
    store : Store
        The served store (read for the network; the records go through HTTP, as a
        client's would).
    url : str
        Base URL of the server, e.g. ``http://127.0.0.1:8050``.
    phone_url : str, optional
        The phone listener (``http://127.0.0.1:5055``); None: ``/osmand`` on ``url``.
    speedup : float
        Data seconds per wall-clock second.
    local_tz : str
        The network's clock.
    span : timedelta, optional
        Play only this much of each live day (data time; None: all of it).
    osmand_share : float
        Share of devices sending each fix as a single OsmAnd request to the phone port.
    now : callable, optional
        The clock (naive UTC); tests pass a fixed start.
    after_backlog : callable, optional
        Called once the in-transit scans are in, before the day streams (a test looks at
        the outlook there).
    """

    def __init__(
        self,
        store,
        url: str,
        phone_url: str | None = None,
        speedup: float = 1.0,
        local_tz: str = "Asia/Shanghai",
        clients: int = 8,
        span: timedelta | None = None,
        osmand_share: float = 0.2,
        now=None,
        after_backlog=None,
    ):
        self.store = store
        self.url = url.rstrip("/")
        self.phone_url = phone_url
        self.speedup = float(speedup)
        self.local_tz = local_tz
        # A single fix waits for its commit: played faster, more of them must be in flight
        # (8 at the normal speed, 64 at 64x and above).
        self.clients = max(clients, min(64, int(clients * self.speedup**0.5)))
        self.span = span
        self.osmand_share = osmand_share
        self.after_backlog = after_backlog
        self.now = now or (lambda: datetime.now(UTC).replace(tzinfo=None))
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="emap-live-demo", daemon=True)
        self.days: list[LiveDay] = []  # played so far (the newest last)
        self.history: list[dict] = []  # what the earlier days got for a moved day
        self.earlier: threading.Thread | None = None  # giving them (moved days only)
        self.reports: list = []

    def start(self) -> LivePlayer | None:
        """Start playing, or say in the log why not and return None."""
        why = refusal(self.store)
        if why is not None:
            log.info("live demo day off: %s", why)
            return None
        if self.speedup <= 0:
            log.warning("live demo day off: the speed-up must be positive (got %g)", self.speedup)
            return None
        self.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sending (what is in flight finishes) and wait for the threads."""
        self.stopping.set()
        for thread in (self.thread, self.earlier):
            if thread is not None and thread.is_alive():
                thread.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    def _run(self) -> None:
        try:
            self._play_days()
        except Exception:  # the dashboard goes on without it
            log.exception("live demo day stopped by an error")

    def _play_days(self) -> None:
        from data.ingest import tokens

        if not self._wait_listening():
            return
        token = tokens.create_token(self.store, "system", "live-demo")  # never shown anywhere
        try:
            while not self.stopping.is_set():
                try:
                    sent = self._play_one(token)
                except Exception:  # e.g. the store busy with a long write: the next day may go
                    log.exception("live demo day failed; trying a new one in a minute")
                    self.stopping.wait(60)
                    continue
                if self.span is not None or self.stopping.is_set():
                    return
                if self.speedup != 1:
                    # faster than the clock, the day ran ahead of it; a next one would run
                    # further ahead, past what ingest accepts
                    log.info("live demo day ended (played at %gx); not rolling into another", self.speedup)
                    return
                if not self.stopping.is_set():
                    log.info("live demo day ended; rolling into a new one from now")
                    if not sent:  # nothing was left to play: do not spin
                        self.stopping.wait(60)
        finally:
            tokens.revoke_token(self.store, tokens.hash_token(token)[:16])
            tokens.forget_cached(self.store)

    def _play_one(self, token: str) -> int:
        """Play one live day; returns the records streamed."""
        from data.demo import replay

        size, seed = self.store.meta("demo_size"), int(self.store.meta("demo_seed") or 7)
        now, t0 = self.now(), time.monotonic()
        day = live_day(read_network(self.store), size, seed, now, self.local_tz)
        self.days.append(day)
        surge = day.surge.row(0, named=True)
        tz = ZoneInfo(self.local_tz)

        def local(t: datetime) -> str:
            return f"{t.replace(tzinfo=UTC).astimezone(tz):%H:%M}"

        log.info(
            "live demo day (%s demo) from %s local time at %gx: %s pings, %s scans, %s in-transit "
            "scans first; surge x%g in %s from %s to %s (prepared in %.1f s)",
            size,
            f"{now.replace(tzinfo=UTC).astimezone(tz):%Y-%m-%d %H:%M}",
            self.speedup,
            f"{len(day.pings):,}",
            f"{len(day.events):,}",
            f"{len(day.backlog):,}",
            surge["factor"],
            surge["branch_id"],
            local(surge["start_hour"]),
            local(surge["end_hour"]),
            time.monotonic() - t0,
        )
        send = dict(
            url=self.url,
            phone_url=self.phone_url,
            token=token,
            clients=self.clients,
            stop=self.stopping,
            retry=True,
            seed=seed,
            osmand_share=self.osmand_share,
        )
        if day.shift:
            # its own thread: at the normal speed, couriers start moving meanwhile
            self.earlier = threading.Thread(
                target=self._give_history, args=(day, size, seed), name="emap-live-earlier", daemon=True
            )
            self.earlier.start()
        # at once but two batches at a time: the dashboard keeps its share of the server
        backlog = replay.stream(
            day.pings.head(0), day.backlog, speedup=float("inf"), **{**send, "clients": 2}
        )
        self.reports.append(backlog)
        log.info("live demo day, in-transit scans: %s", "; ".join(backlog.lines()[:2]))
        if self.earlier is not None and self.speedup > 1:
            # Played faster than the clock, the surge would show before the earlier days
            # hold its hours. At the normal speed they do within a few minutes, and its
            # alert opens about 20 minutes in.
            self.earlier.join()
        if self.after_backlog is not None:
            self.after_backlog()
        pings, events = day.pings, day.events
        if self.span is not None:
            pings = pings.filter(pl.col("ts") < now + self.span)
            events = events.filter(pl.col("ts") < now + self.span)
        last_log = [time.monotonic()]

        def tick(report) -> None:
            if time.monotonic() - last_log[0] >= LOG_EVERY:
                last_log[0] = time.monotonic()
                log.info("live demo day: %s", "; ".join(report.lines()[:2]))

        report = replay.stream(
            # what fell due while the day was prepared and the scans sent goes at once
            pings,
            events,
            speedup=self.speedup,
            first=now,
            on_tick=tick,
            tick=TICK,
            due_from=t0,
            **send,
        )
        self.reports.append(report)
        log.info(
            "live demo day%s: %s", " stopped" if self.stopping.is_set() else "", "; ".join(report.lines()[:2])
        )
        return report.pings_sent + report.events_sent

    def _give_history(self, day: LiveDay, size: str, seed: int) -> None:
        """Give the earlier demo days the hours the moved live ``day`` plays
        (:func:`moved_history`), so that the forecast has a baseline for them."""
        try:
            self._give_earlier_days(day, size, seed)
        except Exception:  # the live day goes on; only its predictions lack a baseline
            log.exception("live demo day: the earlier days could not be given its hours")

    def _give_earlier_days(self, day: LiveDay, size: str, seed: int) -> None:
        from ops import forecast as fc

        why = refusal(self.store)  # checked again: only ever written into a demo store
        if why is not None:
            log.info("live demo day: the earlier days are left as they are: %s", why)
            return
        t0 = time.monotonic()
        back = (max(fc.candidate_days(fc.PARAMS)) + 2) * fc.DAY
        busy = busy_hours(self.store, day.start - back, day.start)
        today = day.start.replace(tzinfo=UTC).astimezone(ZoneInfo(self.local_tz)).date()
        network = read_network(self.store)
        totals = {"pings": 0, "parcel_events": 0, "refused": 0}
        days = earlier_days(today, held_days(busy, self.local_tz))
        if not days:
            log.info(
                "live demo day moved by %s: no earlier day within the forecast's reach holds data "
                "(the demo is older), so nothing is predicted for its hours",
                _signed(day.shift),
            )
            return
        for d in days:
            if self.stopping.is_set():
                return
            pings, events = moved_history(network, size, seed, day, d, busy, self.local_tz)
            for key, n in store_records(self.store, pings, events, stop=self.stopping).items():
                totals[key] += n
        log.info(
            "live demo day moved by %s: the earlier demo days (%s) got the same hours, %s pings and "
            "%s scans, for the forecast's baseline (%.1f s)",
            _signed(day.shift),
            ", ".join(f"{d:%m-%d}" for d in days),
            f"{totals['pings']:,}",
            f"{totals['parcel_events']:,}",
            time.monotonic() - t0,
        )
        self.history.append(totals)

    def _wait_listening(self) -> bool:
        """Wait until the server accepts connections (it starts after this thread)."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        delay = 0.1
        while not self.stopping.is_set():
            try:
                with socket.create_connection((parts.hostname, parts.port or 80), timeout=2):
                    return True
            except OSError:
                self.stopping.wait(delay)
                delay = min(delay * 2, 5.0)
        return False
