"""Figures of whole days read once for the whole network and sliced by scope.

The dashboard asks for the same day over and over: every node a user drills into wants
the day's cube at its resolution, its hourly totals and the hourly figures of its
children. :class:`DayFigures` reads each (day window, resolution) once for the whole
network, at the grain of (hour, cell, branch) with the presence rows kept, and answers
each scoped request by filtering the scope's branches and summing. Distinct couriers and
vehicles are recounted from the presence rows of the scope, never summed, so the
answers equal the store's scoped queries (``Store.cube``, ``queries.hourly_totals``,
``queries.children_hourly``) row for row.

Scope is enforced on every call, cached frames included: the scope is checked against
the tree and only the rows of its branches are ever returned.

Freshness: entries are keyed on a fingerprint of the window in the cube (rows, pings and
scans of each hour). Every stored ping or scan changes it, so data arriving for a day
(live ingest, a late import) is seen; the fingerprint is re-read at most every
``check_every`` seconds, and only the hours whose fingerprint changed are read again.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from datetime import datetime, timedelta

import polars as pl

from data.store import tracking
from data.store.branches import branch_ids
from data.store.schema import CUBE_COUNTS
from geo import cells as h3cells

#: Finest resolution read network-wide; finer views (branches) are small scoped reads.
MAX_SHARED_RES = 7
#: Column order of ``Store.cube`` and of ``queries.hourly_totals``.
CUBE_COLUMNS = [
    "hour",
    "cell",
    "pings",
    "couriers",
    "vehicles",
    "pickups",
    "deliveries",
    "on_time",
    "late",
    "scans",
]
TOTAL_COLUMNS = ["hour", "pickups", "deliveries", "on_time", "late", "scans", "pings", "couriers", "vehicles"]


class DayFigures:
    """Network-wide day frames behind scoped reads.

    Parameters
    ----------
    store : data.store.database.Store
    cache : object with ``get(key, make, ttl=None)``, ``get_current(key, version, make)``,
        ``current_version(key)`` and ``peek(key)``
        Where frames live (``views.model.Cache``: an LRU created by ``build_app``); a
        day's frames of an older fingerprint are dropped when newer ones are read.
    check_every : float
        Seconds a window's fingerprint is trusted before it is read again.
    max_res : int
        Resolutions up to this one are read network-wide; finer ones go to the store.

    Examples
    --------
    >>> days = DayFigures(store, Cache(64))                      # doctest: +SKIP
    >>> days.cube("r-440300", start, end, 7)                      # doctest: +SKIP
    """

    def __init__(self, store, cache, check_every: float = 5.0, max_res: int = MAX_SHARED_RES):
        self.store = store
        self.cache = cache
        self.check_every = check_every
        self.max_res = max_res

    # -- freshness --------------------------------------------------------------------
    def version(self, start: datetime, end: datetime) -> tuple:
        """Fingerprint of the cube in ``start <= hour < end``: any stored record changes it.
        It is made of the fingerprints of the window's hours (:meth:`hour_versions`).
        A recorded computation (``data.store.tracking``) notes the window and its version,
        which is what an answer built on the window depends on."""
        with tracking.covered():
            version = tuple(sorted(self.hour_versions(start, end).items()))
        tracking.depends(("cube", start, end), version)
        return version

    def hour_versions(self, start: datetime, end: datetime) -> dict:
        """Fingerprint (rows, pings, scans) of each hour of ``start <= hour < end`` holding
        cube data, from one grouped read trusted for ``check_every`` seconds."""

        def make():
            rows = (
                self.store.cursor()
                .execute(
                    "SELECT hour, count(*), coalesce(sum(pings), 0), coalesce(sum(scans), 0) "
                    f"FROM {self.store.cube_sources(None)[0]} WHERE hour >= ? AND hour < ? GROUP BY hour",
                    [start, end],
                )
                .fetchall()
            )
            return {hour: tuple(rest) for hour, *rest in rows}

        return self.cache.get(("hour-versions", start, end), make, ttl=self.check_every)

    def forget(self, start: datetime, end: datetime) -> None:
        """Drop the trusted fingerprint of the window: the next :meth:`hour_versions` reads it."""
        self.cache.drop(("hour-versions", start, end))

    # -- scope ------------------------------------------------------------------------
    def _branches(self, scope: str) -> pl.Series:
        return branch_ids(self.store, scope)

    def _child_branches(self, scope: str) -> pl.DataFrame:
        self.store.check_scope(scope)
        return (
            self.store.cursor()
            .sql(
                "SELECT nb.ancestor_id AS node_id, nb.branch_id FROM node_branches nb "
                "JOIN nodes n ON n.node_id = nb.ancestor_id WHERE n.parent_id = $scope",
                params={"scope": scope},
            )
            .pl()
        )

    # -- network-wide frames ----------------------------------------------------------
    def _frames(self, start: datetime, end: datetime, res: int | None) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Sums per (hour, [cell,] branch) and distinct presence rows per (hour, [cell,]
        branch, actor) of the whole network; ``res`` None leaves cells out.

        While data arrives (live ingest) only the hours whose fingerprint changed are
        read again and spliced into the frames read before: a new fix costs a read of its
        hour, not of the whole day."""
        key = ("day-frames", start, end, res)
        hours = self.hour_versions(start, end)
        version = tuple(sorted(hours.items()))

        def make():
            before = self.cache.current_version(key)
            kept = self.cache.peek((key, before)) if before is not None else None
            if kept is None:
                return self._read(start, end, res)
            changed = {h for h, v in hours.items() if dict(before).get(h) != v}
            changed |= {h for h, _ in before if h not in hours}
            if not changed:
                return kept
            lo, hi = min(changed), max(changed) + timedelta(hours=1)
            fresh = self._read(lo, hi, res)
            return tuple(
                pl.concat(
                    [old.filter((pl.col("hour") < lo) | (pl.col("hour") >= hi)), new], how="vertical_relaxed"
                )
                for old, new in zip(kept, fresh, strict=True)
            )

        return self.cache.get_current(key, version, make)

    def _read(self, start: datetime, end: datetime, res: int | None) -> tuple[pl.DataFrame, pl.DataFrame]:
        if res is None:
            cell = ""
        elif res < h3cells.BASE_RES:
            cell = h3cells.parent_sql("cell", res) + " AS cell, "
        else:
            cell = "cell, "
        counts = ", ".join(f"sum({c})::BIGINT AS {c}" for c in CUBE_COUNTS)
        params = {"start": start, "end": end}
        # A store over a lake answers coarse reads from its coarse tier.
        hourly, presence_table = self.store.cube_sources(res)
        sums = (
            self.store.cursor()
            .sql(
                f"SELECT hour, {cell}branch_id, {counts} FROM {hourly} "
                "WHERE hour >= $start AND hour < $end GROUP BY ALL",
                params=params,
            )
            .pl()
        )
        # Actors as 64-bit hashes of their ids: the recount is a distinct count of them,
        # and the same actor has the same number in hours read at different times.
        presence = (
            self.store.cursor()
            .sql(
                f"SELECT DISTINCT hour, {cell}branch_id, actor_kind = 'courier' AS courier, hash(actor_id) AS actor "
                f"FROM {presence_table} WHERE hour >= $start AND hour < $end",
                params=params,
            )
            .pl()
        )
        return sums, presence

    def load(self, start: datetime, end: datetime, resolutions) -> None:
        """Read the frames of a window ahead of its first request (a start-up warm-up)."""
        self._frames(start, end, None)
        for res in resolutions:
            if int(res) <= self.max_res:
                self._frames(start, end, int(res))

    @staticmethod
    def _recount(presence: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
        return presence.group_by(keys).agg(
            pl.col("actor").filter(pl.col("courier")).n_unique().cast(pl.Int64).alias("couriers"),
            pl.col("actor").filter(~pl.col("courier")).n_unique().cast(pl.Int64).alias("vehicles"),
        )

    # -- scoped reads -----------------------------------------------------------------
    def cube(self, scope: str, start: datetime, end: datetime, res: int) -> pl.DataFrame:
        """``Store.cube(scope, start, end, res)`` (per hour) from the network-wide frames.

        Returns ``hour, cell, pings, couriers, vehicles, pickups, deliveries, on_time,
        late, scans`` sorted by hour and cell.
        """
        if res > self.max_res:
            return self.store.cube(scope, start, end, res)
        branches = self._branches(scope).implode()
        sums, presence = self._frames(start, end, res)
        keys = ["hour", "cell"]
        c = sums.filter(pl.col("branch_id").is_in(branches)).group_by(keys).agg(pl.col(CUBE_COUNTS).sum())
        p = self._recount(presence.filter(pl.col("branch_id").is_in(branches)), keys)
        return (
            c.join(p, on=keys, how="left")
            .with_columns(pl.col("couriers", "vehicles").fill_null(0))
            .select(CUBE_COLUMNS)
            .sort(keys)
        )

    def hourly_totals(self, scope: str, start: datetime, end: datetime) -> pl.DataFrame:
        """``queries.hourly_totals(store, scope, start, end)`` from the network-wide frames."""
        branches = self._branches(scope).implode()
        sums, presence = self._frames(start, end, None)
        c = sums.filter(pl.col("branch_id").is_in(branches)).group_by("hour").agg(pl.col(CUBE_COUNTS).sum())
        p = self._recount(presence.filter(pl.col("branch_id").is_in(branches)), ["hour"])
        return (
            c.join(p, on="hour", how="left")
            .with_columns(pl.col("couriers", "vehicles").fill_null(0))
            .select(TOTAL_COLUMNS)
            .sort("hour")
        )

    def children_hourly(self, scope: str, start: datetime, end: datetime) -> pl.DataFrame:
        """``queries.children_hourly(store, scope, start, end)`` from the network-wide frames."""
        owner = self._child_branches(scope)
        sums, presence = self._frames(start, end, None)
        keys = ["hour", "node_id"]
        c = sums.join(owner, on="branch_id").group_by(keys).agg(pl.col(CUBE_COUNTS).sum())
        p = self._recount(presence.join(owner, on="branch_id"), keys)
        return (
            c.join(p, on=keys, how="left")
            .with_columns(pl.col("couriers", "vehicles").fill_null(0))
            .select(keys + CUBE_COUNTS + ["couriers", "vehicles"])
            .sort(keys)
        )


class NetworkFrames(tuple):
    """``(frames, irregular)`` of :meth:`ForecastDays.frames`, keeping the slices of the
    few scopes last asked for (``forecast_queries.scope_frames``): the hours of one view
    are then cut from its scope's rows, not from the whole network's. The slices live
    and die with these frames, so they are never older than them."""

    #: Scopes whose slices are kept.
    SCOPES = 6

    def __new__(cls, frames: dict, irregular: set):
        self = super().__new__(cls, (frames, irregular))
        self._scopes: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        return self

    def scoped(self, scope: str, branches) -> dict:
        """The rows of ``scope`` of every frame (``branches()``: the scope's branches)."""
        from data.store import forecast_reads as fq

        with self._lock:
            kept = self._scopes.get(scope)
            if kept is not None:
                self._scopes.move_to_end(scope)
                return kept
        part = fq.scope_frames(self[0], branches())
        with self._lock:
            self._scopes[scope] = part
            self._scopes.move_to_end(scope)
            while len(self._scopes) > self.SCOPES:
                self._scopes.popitem(last=False)
        return part


class ForecastDays:
    """Network-wide forecast frames of each local day (``data.store.forecast_reads.network_day``
    and ``irregular_branches``), kept per fingerprint of the data they read, so that the
    forecast of any scope is sliced from them (``forecast_queries.sliced_inputs``) instead of
    read.

    A day's frames read the cube and the parcel scans from ``GUARD_BACK`` before the day to
    ``horizon`` hours after it; their key is the fingerprint (:meth:`DayFigures.version`) of
    that window, so a finished day's frames are read once and a live day's again when its
    data changes.

    Parameters
    ----------
    store : data.store.database.Store
    cache : views.model.Cache
    days : DayFigures
        Whose fingerprints key the frames.
    res : int
        Resolution of the forecast's cells (the alerts').
    rebuild_after : float
        Seconds before a day's frames are read again for newer data: a live day's data
        changes every few seconds, and reading a day takes seconds (tens at the large
        size); in between, its forecasts are read per scope.
    """

    #: How far before a day its frames (and their checks) read.
    GUARD_BACK = timedelta(days=18)

    def __init__(
        self, store, cache, days: DayFigures, res: int, horizon: int = 6, rebuild_after: float = 60.0
    ):
        self.store = store
        self.cache = cache
        self.days = days
        self.res = res
        self.horizon = horizon
        self.rebuild_after = rebuild_after
        self._built: dict = {}  # (start, end) -> when its frames were last read
        self._lock = threading.Lock()

    def version(self, start: datetime, end: datetime) -> tuple:
        return self.days.version(start - self.GUARD_BACK, end + timedelta(hours=self.horizon))

    def _key(self, start: datetime, end: datetime) -> tuple:
        return ("forecast-day", start, end, self.res)

    def day(self, start: datetime, end: datetime, pause=None) -> dict | None:
        """The frames of the day ``[start, end)`` (read now if not kept): the dict of
        ``network_day`` plus ``irregular`` (a set of branch ids); ``None`` when they were
        read less than ``rebuild_after`` seconds ago for older data."""
        from data.store import forecast_reads as fq

        version = self.version(start, end)
        kept = self.cache.peek((self._key(start, end), version))
        if kept is not None:
            return kept
        with self._lock:
            last = self._built.get((start, end))
        if last is not None and time.monotonic() - last < self.rebuild_after:
            return None

        def make():
            out = fq.network_day(self.store, start, end, self.res, self.horizon, pause=pause)
            out["irregular"] = fq.irregular_branches(self.store, start, end)
            with self._lock:
                self._built[(start, end)] = time.monotonic()
            return out

        return self.cache.get_current(self._key(start, end), version, make)

    def frames(self, windows: list[tuple[datetime, datetime]], build: bool = False, pause=None):
        """The frames of several days (oldest first) as one of each, and the irregular
        branches of any of them; ``None`` when one day's current frames are not kept and
        ``build`` is false, or were read less than ``rebuild_after`` seconds ago for older
        data (the caller reads the store instead)."""
        from data.store import forecast_reads as fq

        if not windows:
            return None
        versions = tuple(self.version(a, b) for a, b in windows)
        parts = []
        for (a, b), v in zip(windows, versions, strict=True):
            part = self.day(a, b, pause) if build else self.cache.peek((self._key(a, b), v))
            if part is None:
                return None
            parts.append(part)

        def make():
            irregular = set().union(*(p["irregular"] for p in parts))
            return NetworkFrames(fq.network_frames(parts), irregular)

        return self.cache.get_current(("forecast-days", tuple(windows), self.res), versions, make)
