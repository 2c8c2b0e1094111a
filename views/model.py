"""What the dashboard shows, as frames and plain dicts: the glue between the store,
``geo/`` and ``layers/``. Callbacks call these and return the results.

Times: the UI speaks the network's local time (``settings.local_tz``); the store is
UTC. ``hour_window`` converts.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import math
import threading
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import shapely

from auth.viewer import OutsideScope, Viewer
from data.store import reads as queries
from data.store import tracking
from data.store.day_cache import DayFigures, ForecastDays
from geo import cells as h3cells
from layers import hexes, registry
from layers.base import DrawContext
from ops import alerts as zones_mod
from ops import kpis as kpis_mod
from views import outlook as outlook_of
from views.cache import Cache
from views.forecast import alert_min, alert_res

#: Seconds a day's data fingerprint is trusted before it is read again: new data shows
#: within this time, and unchanged days are never recomputed.
FRESHNESS_SECONDS = 1.0
#: Seconds the first hour of a scope's data is trusted (the newest is read every
#: FRESHNESS_SECONDS, from the newest known hour on).
SPAN_SECONDS = 30.0
#: Days the date list offers at most (the newest holding data).
MAX_DAYS = 90
#: Hours looked back to find when a zone started.
SINCE_HOURS = 6
#: The map style: a white background and label glyphs served by the app itself
#: (Plotly's built-in "white-bg" style fetches glyphs from a remote server). Given by
#: URL: Plotly compares styles as text and reloads the map when a style object differs.
OFFLINE_STYLE = "/assets/map-style.json"
_TILES = {
    "osm": ["https://tile.openstreetmap.org/{z}/{x}/{y}.png"],
    "amap": [
        "https://webrd01.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8&x={x}&y={y}&z={z}",
        "https://webrd02.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8&x={x}&y={y}&z={z}",
    ],
}


class Model:
    """The dashboard's reads for one store and one settings object."""

    def __init__(self, store, settings, cache: Cache | None = None):
        self.store = store
        self.settings = settings
        self.cache = cache or Cache()
        self.days = DayFigures(store, self.cache, check_every=FRESHNESS_SECONDS)
        self.tz = ZoneInfo(settings.local_tz)
        self.alert_res = alert_res(settings)
        self.alert_min = alert_min(settings)
        #: One outlook (forecast and dispatch, ``views.outlook``) is computed at a time.
        self.outlook_lock = threading.Lock()
        #: Callers waiting for an outlook now (the map's dispatch arrows): while any
        #: are, a computation stops giving way to other callbacks.
        self.outlook_wanted = 0
        self.outlook_wanted_lock = threading.Lock()
        #: Outlooks a user's request is waiting for (key -> count): a background
        #: preparation of another one stops and leaves the core to them.
        self.outlook_foreground: dict = {}
        #: Network-wide forecast frames per day, sliced per scope (``views.outlook``).
        self.forecast = ForecastDays(store, self.cache, self.days, alert_res(settings))
        #: When each outlook was last made, and for which data: (scope, issued) ->
        #: (fingerprint, time.monotonic()). An outlook of a day still receiving data is
        #: reused for ``outlook_refresh`` seconds (``views.outlook.recent``).
        self.outlook_made: dict = {}
        self.outlook_refresh = outlook_of.REFRESH_SECONDS
        #: An older outlook is shown for ``outlook_stale`` seconds while the views of
        #: ``outlook_refreshing`` (scope, day, hour) are made again in the background.
        self.outlook_stale = outlook_of.STALE_SECONDS
        self.outlook_refreshing: set = set()
        #: Whether the predicted-alerts panel is served (its frames are then read at start-up).
        self.outlook_on = False
        #: How its background computations give way to the callbacks being served.
        self.outlook_pause = None

    # -- tree and time ------------------------------------------------------------------
    def nodes(self) -> pl.DataFrame:
        return self.cache.get("nodes", self.store.nodes)

    def everyone(self) -> Viewer:
        """The viewer holding the whole tree (an open app on loopback, start-up work)."""

        def make():
            n = self.nodes()
            ids = n["node_id"].to_list()
            return Viewer.everyone(
                dict(zip(ids, n["parent_id"].to_list(), strict=True)),
                dict(zip(ids, n["level"].to_list(), strict=True)),
            )

        return self.cache.get("everyone", make)

    def node(self, node_id: str) -> dict:
        row = self.nodes().filter(pl.col("node_id") == node_id)
        if row.is_empty():
            raise KeyError(node_id)
        return row.row(0, named=True)

    def children(self, node_id: str) -> pl.DataFrame:
        return self.nodes().filter(pl.col("parent_id") == node_id).sort("node_id")

    def path(self, node_id: str) -> list[dict]:
        out = [self.node(node_id)]
        while out[-1]["parent_id"]:
            out.append(self.node(out[-1]["parent_id"]))
        return out[::-1]

    def res(self, node_id: str) -> int:
        return int(self.settings.resolutions[self.node(node_id)["level"]])

    def hour_window(self, day: str, hour: int) -> tuple[datetime, datetime]:
        """UTC start and end of a local (date, hour)."""
        local = datetime.combine(date.fromisoformat(day), datetime.min.time()).replace(
            hour=int(hour), tzinfo=self.tz
        )
        start = local.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
        return start, start + timedelta(hours=1)

    def day_window(self, day: str) -> tuple[datetime, datetime]:
        start, _ = self.hour_window(day, 0)
        return start, start + timedelta(days=1)

    def local(self, utc: datetime) -> datetime:
        return utc.replace(tzinfo=ZoneInfo("UTC")).astimezone(self.tz).replace(tzinfo=None)

    def newest(self, scope: str = "hq") -> tuple[str, int] | None:
        """Local (date, hour) of the newest data in scope."""
        hi = self.data_hours(scope)[1]
        if hi is None:
            return None
        loc = self.local(hi)
        return loc.date().isoformat(), loc.hour

    def landing(self, scope: str = "hq", now: datetime | None = None) -> tuple[str, int] | None:
        """Local (date, hour) a view opens on: the newest hour while data is arriving
        (live), else the busiest hour of the newest day (a finished day's newest hour is
        the quiet night)."""
        newest = self.newest(scope)
        if newest is None or self.receiving(scope, now):
            return newest
        trend = self.trend(scope, newest[0])
        if trend.is_empty() or "scans" not in trend.columns:
            return newest
        busiest = trend.sort(["scans", "local_hour"], descending=[True, False]).row(0, named=True)
        return newest[0], int(busiest["local_hour"])

    def receiving(self, scope: str = "hq", now: datetime | None = None) -> bool:
        """Is data arriving in ``scope`` now (its newest hour at most two hours old)?"""
        hi = self.data_hours(scope)[1]
        now = now or datetime.now(ZoneInfo("UTC")).replace(tzinfo=None)
        return hi is not None and now - hi <= timedelta(hours=2)

    def dates(self, scope: str = "hq") -> list[str]:
        """The local days holding data in ``scope``, oldest first: at most the
        :data:`MAX_DAYS` newest, within the plausible window (:meth:`plausible`)."""

        newest = self.data_hours(scope)[1]
        if newest is None:
            return []

        def make():
            lo, hi = self.plausible()
            # a local day spans at most 25 distinct UTC hours (a DST change)
            hours = self.store.recent_hours(scope, lo, hi, 25 * MAX_DAYS)
            days = sorted({self.local(h).date().isoformat() for h in hours})
            return days[-MAX_DAYS:]

        # A new newest hour (live data) is seen at once; a day filled in between (a late
        # import) within a minute.
        return self.cache.get(("dates", scope, newest), make, ttl=60.0)

    def plausible(self) -> tuple[datetime, datetime]:
        """The UTC window of data the dashboard shows: from ``ingest_earliest_ts`` to
        ``ingest_max_ahead_hours`` after now. A stray record outside it (a store filled
        before times were checked at ingest) is left out of every date list rather than
        break them (a year-9999 hour cannot even be shown in local time)."""
        s = self.settings
        earliest = datetime.fromisoformat(getattr(s, "ingest_earliest_ts", "2000-01-01"))
        ahead = timedelta(hours=float(getattr(s, "ingest_max_ahead_hours", 24.0)))
        now = datetime.now(ZoneInfo("UTC")).replace(tzinfo=None)
        return earliest.replace(tzinfo=None), now + ahead

    def data_hours(self, scope: str):
        """First and last hour with data in ``scope``. The whole span is read every
        :data:`SPAN_SECONDS` (a late import may add older hours); in between, only hours
        from the newest known one on, which the store finds without reading older data."""
        with tracking.covered():  # an answer depends on the span, not on when it was read
            first, last = self.cache.get(
                ("hours-span", scope),
                lambda: self.store.data_hours(scope, *self.plausible()),
                ttl=SPAN_SECONDS,
            )

            def newer():
                if last is None:  # no data yet: the whole (empty) span, until data comes
                    return self.store.data_hours(scope, *self.plausible())
                start, end = self.plausible()
                newest = self.store.data_hours(scope, max(last, start), end)[1]
                return first, max(last, newest) if newest is not None else last

            span = self.cache.get(("hours", scope), newer, ttl=FRESHNESS_SECONDS)
        tracking.depends(("hours", scope), span)
        return span

    def refresh(self, scope: str) -> None:
        """Forget what is trusted for :data:`FRESHNESS_SECONDS` about ``scope``'s newest
        data (its newest hour, the fingerprint of its newest day), so that the next read
        sees the store as it is now. For a live page the push channel told of new data:
        the stream's reads are the serving process's, a web worker's short-lived ones its
        own, and the worker may not have seen yet what the stream saw."""
        self.cache.drop(("hours", scope))
        newest = self.newest(scope)
        if newest is not None:
            self.days.forget(*self.day_window(newest[0]))

    def version_of(self, key) -> object:
        """The version now of what ``key`` names, as a computation recorded it
        (``data.store.tracking.depends``): a day window of the cube or a scope's span of
        hours. The answer cache (``views/answers.py``) checks its answers with it."""
        if key[0] == "cube":
            return self.days.version(key[1], key[2])
        if key[0] == "hours":
            return self.data_hours(key[1])
        raise KeyError(key)

    def newest_hour(self):
        return self.data_hours(self.root())[1]

    def version(self, day: str) -> tuple:
        """Fingerprint of the local day's data: part of the key of everything cached about
        the day, so that data arriving for it (live ingest, a late import) is seen."""
        return self.days.version(*self.day_window(day))

    def day_of(self, utc: datetime) -> str:
        """The local date holding a UTC time."""
        return self.local(utc).date().isoformat()

    # -- hexes --------------------------------------------------------------------------
    def day_cube(self, scope: str, day: str, res: int) -> pl.DataFrame:
        start, end = self.day_window(day)
        return self.cache.get_current(
            ("day", scope, day, res), self.version(day), lambda: self.days.cube(scope, start, end, res)
        )

    def rates(self, start: datetime) -> dict:
        """Pings per actor per hour over the network, by UTC hour, for the local day holding
        ``start`` (courier-hours present; see ``ops.kpis``)."""
        day = self.day_of(start)
        a, b = self.day_window(day)

        def make():
            t = self.days.hourly_totals(self.root(), a, b)
            return {
                h: p / n
                for h, p, n in zip(
                    t["hour"].to_list(),
                    t["pings"].to_list(),
                    (t["couriers"] + t["vehicles"]).to_list(),
                    strict=True,
                )
                if n
            }

        return self.cache.get_current(("rates", day), self.version(day), make)

    def hex_frame(self, scope: str, day: str, hour: int, metric: str) -> pl.DataFrame:
        """The hex layer's frame: ``cell, value, load_ratio, node`` for one hour."""
        res = self.res(scope)
        start, _ = self.hour_window(day, hour)
        cube = self.day_cube(scope, day, res).filter(pl.col("hour") == start).drop("hour")
        cube = kpis_mod.load_ratio(cube, self.settings.parcels_per_courier_hour, self.rates(start).get(start))
        value = pl.col("load_ratio") if metric == "load_ratio" else pl.col(metric).cast(pl.Float64)
        kids = self.cell_children(scope, day, res)
        return (
            cube.with_columns(value.alias("value"))
            .join(kids, on="cell", how="left")
            .select("cell", "value", "load_ratio", pl.col("name").alias("node"), "workload", "couriers")
        )

    def cell_children(self, scope: str, day: str, res: int) -> pl.DataFrame:
        """Child node (id and name) of each cell at ``res``: the child holding most of the
        cell's located res-9 cells. For hover labels and drill-down by clicking a hex."""

        def make():
            kids = self.children(scope).select("node_id", "name")
            if kids.is_empty():
                return pl.DataFrame(schema={"cell": pl.UInt64, "node_id": pl.String, "name": pl.String})
            nb = self.tree_closure()
            owner = nb.join(kids, left_on="ancestor_id", right_on="node_id").select(
                "branch_id", pl.col("ancestor_id").alias("node_id"), "name"
            )
            cb = self.cache.get(
                "cell_branch",
                lambda: self.store.sql("SELECT cell, branch_id FROM cell_branch WHERE branch_id IS NOT NULL"),
                ttl=60.0,
            )
            cb = cb.join(owner, on="branch_id")
            parent = (
                h3cells.to_parent(cb["cell"].to_numpy(), res)
                if res < h3cells.BASE_RES
                else cb["cell"].to_numpy()
            )
            return (
                cb.with_columns(pl.Series("cell", parent, dtype=pl.UInt64))
                .group_by("cell", "node_id", "name")
                .len()
                .sort(["cell", "len", "node_id"], descending=[False, True, False])
                .unique("cell", keep="first")
                .drop("len")
            )

        return self.cache.get(("kids", scope, res), make, ttl=60.0)

    def geometry(self, scope: str, day: str, gcj02: bool) -> tuple[np.ndarray, dict, str]:
        """Every cell of the day in scope (sorted), its GeoJSON and a signature."""
        res = self.res(scope)

        def make():
            cells = np.sort(self.day_cube(scope, day, res)["cell"].unique().to_numpy())
            sig = hashlib.blake2b(cells.tobytes(), digest_size=8).hexdigest()
            return cells, hexes.geojson(cells, DrawContext(gcj02=gcj02)), sig

        return self.cache.get_current(("geom", scope, day, res, gcj02), self.version(day), make)

    # -- alerts -------------------------------------------------------------------------
    def hour_alerts(self, start: datetime) -> dict:
        """Over-load cells and zones of one UTC hour over the whole network (cached).

        Cells at the alert resolution have the same figures whatever the viewer's scope,
        so the detection runs once per hour and every scope filters its zones from it.
        """
        end = start + timedelta(hours=1)
        return self.cache.get_current(
            ("hour-alerts", start), self.version(self.day_of(start)), lambda: self._hour_alerts(start, end)
        )

    def _hour_alerts(self, start, end) -> dict:
        s = self.settings
        root = self.root()
        cube = self.store.cube(root, start, end, self.alert_res, per_hour=False)
        base = queries.baseline_hours(self.store, root, [start], self.alert_res).drop("hour")
        rate = self.rates(start).get(start)
        flagged, zones = zones_mod.detect(
            cube.join(base, on="cell", how="left"),
            s.parcels_per_courier_hour,
            s.load_ratio_threshold,
            s.baseline_factor,
            self.alert_min,
            rate,
        )
        branch = (
            self.store.locator().locate(zones["lat"].to_numpy(), zones["lng"].to_numpy())
            if len(zones)
            else np.array([], dtype=object)
        )
        zones = zones.with_columns(pl.Series("branch_id", list(branch), dtype=pl.String))
        return {"over": set(flagged.filter(pl.col("over"))["cell"].to_list()), "zones": zones}

    def zones(self, scope: str, day: str, hour: int, with_since: bool = True) -> pl.DataFrame:
        """Peak-load zones of the hour inside ``scope``, most severe first, numbered 1..n,
        with their branch name and (``with_since``) the local hour they started."""
        start, _ = self.hour_window(day, hour)
        z = self.hour_alerts(start)["zones"]
        z = z.filter(pl.col("branch_id").is_in(self.branches_of(scope).implode())).with_columns(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("zone_id")
        )
        names = self.nodes().select(pl.col("node_id").alias("branch_id"), pl.col("name").alias("branch"))
        z = z.join(names, on="branch_id", how="left", maintain_order="left")
        if not with_since:
            return z
        hours = [start - timedelta(hours=i) for i in range(SINCE_HOURS - 1, -1, -1)]
        over = {h: self.hour_alerts(h)["over"] for h in hours} if len(z) else {}
        since = [self.local(zones_mod.since(c, hours, over)).strftime("%H:00") for c in z["cells"].to_list()]
        return z.with_columns(pl.Series("since", since, dtype=pl.String))

    def root(self) -> str:
        return self.nodes().filter(pl.col("parent_id").is_null())["node_id"][0]

    def tree_closure(self) -> pl.DataFrame:
        """Every (ancestor, branch) pair of the organisation tree (``node_branches``),
        kept: the tree changes only when an administrator rebuilds it."""
        return self.cache.get("node_branches", lambda: self.store.sql("SELECT * FROM node_branches"))

    def branches_of(self, scope: str) -> pl.Series:
        nb = self.tree_closure()
        return nb.filter(pl.col("ancestor_id") == scope)["branch_id"]

    def prepare(self, scope: str, day: str, gcj02: bool = False) -> None:
        """Fetch what a view of ``scope`` on ``day`` needs into the cache (any hour)."""
        res = self.res(scope)
        self.day_cube(scope, day, res)
        self.cell_children(scope, day, res)
        self.geometry(scope, day, gcj02)
        self.trend(scope, day)
        self.territories(scope)
        self.children_hourly(scope, day)
        self.outlet_scans(scope, day)
        self.cache.get(("outlets", scope), lambda: queries.outlets_in(self.store, scope), ttl=60.0)

    def drill_targets(self, scope: str, day: str, hour: int, limit: int = 6) -> list[str]:
        """The busiest children of ``scope`` in the hour: where a user is likely to drill next."""
        t = self.child_table(scope, day, hour)
        return t.filter(pl.col("volume") > 0).head(limit)["node_id"].to_list()

    def warm(self, days: int = 2) -> None:
        """Compute the alert state of every hour of the newest ``days`` days (run in a
        background thread at start-up, so the first views find it cached), the landing
        view and its busiest children, and with the predicted-alerts panel on, the
        network-wide forecast frames of the landing day and the root's outlooks of its hours."""
        # The dispatch solver's import takes seconds on a loaded machine: not in a view.
        import scipy.optimize  # noqa: F401

        newest = self.newest_hour()
        if newest is None:
            return
        dates = self.dates()[-days:]
        for day in dates:
            self.trend(self.root(), day)
            for hour in range(24):
                start, _ = self.hour_window(day, hour)
                if start <= newest:
                    self.hour_alerts(start)
        # the first page a user opens: the root on the newest day, and its busiest children
        day, hour = self.landing() or (dates[-1], 0)
        # the network-wide frames every drill-down of the day is sliced from
        self.days.load(*self.day_window(day), sorted(set(self.settings.resolutions.values())))
        self.prepare(self.root(), day)
        for child in self.drill_targets(self.root(), day, hour):
            self.prepare(child, day)
        if self.outlook_on:
            # the predicted-alerts panel: the network-wide frames its forecasts are sliced
            # from, and the landing view's outlook
            start, _ = self.hour_window(day, hour)
            outlook_of.network(self, start, build=True)
            # the root's hours of the landing day, nearest first: the view every user
            # opens, and the first page's rendering is then not competing with them
            hours = sorted(range(24), key=lambda h: (abs(h - hour), h))
            for h in hours:
                if self.hour_window(day, h)[0] > newest:
                    continue
                try:
                    outlook_of.outlook(self, self.root(), day, h, self.outlook_pause, background=True)
                except outlook_of.Superseded:  # a user asked for another outlook first
                    pass

    # -- KPIs ---------------------------------------------------------------------------
    def kpis(self, scope: str, day: str, hour: int) -> list[dict]:
        """The KPI panel of ``scope`` at the local (day, hour), with changes against the
        same hour of the previous day. Read from the (cached) hourly trend of each day."""
        out = []
        for d in (day, (date.fromisoformat(day) - timedelta(days=1)).isoformat()):
            start, _ = self.hour_window(d, hour)
            f = self.trend(scope, d).filter(pl.col("hour") == start) if d in self.dates() else pl.DataFrame()
            row = kpis_mod.indicators(f).row(0, named=True) if len(f) else {}
            row["zones"] = len(self.zones(scope, d, hour, with_since=False)) if row else None
            out.append(row)
        return kpis_mod.panel(out[0], out[1])

    def trend(self, scope: str, day: str) -> pl.DataFrame:
        start, end = self.day_window(day)
        t = self.cache.get_current(
            ("trend", scope, day), self.version(day), lambda: self.days.hourly_totals(scope, start, end)
        )
        return t.with_columns(
            pl.col("hour")
            .map_elements(lambda h: self.local(h).hour, return_dtype=pl.Int64)
            .alias("local_hour")
        )

    def child_table(self, scope: str, day: str, hour: int) -> pl.DataFrame:
        """Children of ``scope`` with the KPI indicators of the hour and their zone count."""
        start, end = self.hour_window(day, hour)
        hourly = self.children_hourly(scope, day)
        kids = self.children(scope).select("node_id", "name")
        f = kids.join(hourly.filter(pl.col("hour") == start).drop("hour"), on="node_id", how="left")
        f = kpis_mod.indicators(f.with_columns(pl.exclude("node_id", "name").fill_null(0)))
        f = self.with_zone_counts(f, self.zones(scope, day, hour, with_since=False))
        return f.sort("volume", descending=True)

    def children_hourly(self, scope: str, day: str) -> pl.DataFrame:
        """Figures of each child of ``scope`` per hour of the day (cached)."""
        a, b = self.day_window(day)
        return self.cache.get_current(
            ("kids-hourly", scope, day), self.version(day), lambda: self.days.children_hourly(scope, a, b)
        )

    def outlet_scans(self, scope: str, day: str) -> pl.DataFrame:
        """Parcel scans per outlet inside ``scope`` and hour of the day (cached)."""
        a, b = self.day_window(day)
        return self.cache.get_current(
            ("outlet-scans", scope, day),
            self.version(day),
            lambda: queries.outlet_scans_hourly(self.store, scope, a, b),
        )

    def with_zone_counts(self, nodes: pl.DataFrame, zones: pl.DataFrame) -> pl.DataFrame:
        """``nodes`` with a ``zones`` column: how many of ``zones`` lie in each node."""
        if not (len(zones) and len(nodes)):
            return nodes.with_columns(pl.lit(0).alias("zones"))
        nb = self.tree_closure()
        closure = nb.filter(pl.col("ancestor_id").is_in(nodes["node_id"].implode())).select(
            pl.col("ancestor_id").alias("node_id"), "branch_id"
        )
        counts = zones.select("branch_id").join(closure, on="branch_id").group_by("node_id").len("zones")
        return nodes.join(counts, on="node_id", how="left").with_columns(pl.col("zones").fill_null(0))

    # -- points -------------------------------------------------------------------------
    def positions(self, scope: str, day: str, hour: int, kind: str) -> pl.DataFrame:
        start, end = self.hour_window(day, hour)
        f = queries.latest_positions(self.store, scope, start, end, kind)
        offline_at = end - timedelta(minutes=self.settings.offline_after_minutes)
        return f.with_columns(
            pl.when(pl.col("ts") < offline_at)
            .then(pl.lit("offline"))
            .when(pl.col("speed").fill_nan(0).fill_null(0) > 0.5)
            .then(pl.lit("moving"))
            .otherwise(pl.lit("stopped"))
            .alias("state")
        )

    def outlets(self, scope: str, day: str, hour: int) -> pl.DataFrame:
        """Outlets in scope with their scans in the hour and ``load`` = scans / hourly capacity."""
        start, _ = self.hour_window(day, hour)
        base = self.cache.get(("outlets", scope), lambda: queries.outlets_in(self.store, scope), ttl=60.0)
        scans = self.outlet_scans(scope, day)
        f = base.join(scans.filter(pl.col("hour") == start).drop("hour"), on="outlet_id", how="left")
        return f.with_columns(pl.col("parcels").fill_null(0)).with_columns(
            (pl.col("parcels") / pl.col("capacity_parcels_per_hour").clip(lower_bound=1)).alias("load")
        )

    # -- the map figure -------------------------------------------------------------------
    def view(self, scope: str, zone: pl.DataFrame | None = None) -> dict:
        """Centre and zoom fitting the node's territory (or a zone)."""
        if zone is not None and len(zone):
            z = zone.row(0, named=True)
            lng0, lat0, lng1, lat1 = z["lng_min"], z["lat_min"], z["lng_max"], z["lat_max"]
            pad = 0.01
        else:
            g = self.cache.get(("terr", scope), lambda: self.store.territories([scope]))
            lng0, lat0, lng1, lat1 = (float(v) for v in g.total_bounds)
            pad = 0.0
        span = max(lng1 - lng0 + 2 * pad, (lat1 - lat0 + 2 * pad) * 1.3, 1e-3)
        # 512 px per 360° at zoom 0 and a map about 800 px wide
        zoom = max(1.0, min(15.0, math.log2(360.0 * 800 / 512 / span)))
        return {"center": {"lat": (lat0 + lat1) / 2, "lon": (lng0 + lng1) / 2}, "zoom": round(zoom, 2)}

    def territories(self, scope: str):
        """Outlines of the children of ``scope`` (itself for a branch), simplified for the
        view: about 1/2000 of the view's width is below what a screen can show."""
        ids = self.children(scope)["node_id"].to_list() or [scope]

        def make():
            g = self.store.territories(ids)
            lng0, lat0, lng1, lat1 = (float(v) for v in g.total_bounds)
            tol = max(lng1 - lng0, lat1 - lat0) / 2000.0
            geoms = shapely.simplify(g.geometry.values, tol, preserve_topology=True)
            # islands smaller than a few pixels only cost bytes
            min_area = (20 * tol) ** 2
            kept = []
            for geom in geoms:
                parts = [p for p in shapely.get_parts(geom) if p.area >= min_area]
                kept.append(shapely.multipolygons(parts) if parts else geom)
            g["geometry"] = kept
            return g

        return self.cache.get(("terr-kids", scope), make)

    def next_hour_moves(self, scope: str, day: str, hour: int) -> pl.DataFrame:
        """Dispatch suggestions for the first forecast hour after the selected one."""
        moves = outlook_of.outlook(self, scope, day, hour)["moves"]
        if moves.is_empty():
            return moves
        return moves.filter(pl.col("hour") == moves["hour"].min())

    def traces(self, state: dict, text: dict, geometry: dict | None) -> dict[str, dict]:
        """Every trace of the map by name (empty and hidden when its layer is off)."""
        scope, day, hour = state["node"], state["date"], int(state["hour"])
        on = set(state.get("layers") or [])
        ctx = DrawContext(
            gcj02=state.get("basemap") == "amap",
            text=text,
            metric=state["metric"],
            selected=state.get("zone"),
        )
        built: dict[str, dict] = {}
        if "hexes" in on:
            frame = self.hex_frame(scope, day, hour, state["metric"])
            built.update(zip(["hexes"], hexes.traces(frame, ctx, geometry=geometry), strict=True))
        # The frame each registered layer draws, fetched only when the layer is on.
        frames = {
            "outlines": lambda: _labelled(self.territories(scope), state.get("lang")),
            "zones": lambda: self.zones(scope, day, hour),
            "outlets": lambda: self.outlets(scope, day, hour),
            "vehicles": lambda: self.positions(scope, day, hour, "vehicle"),
            "couriers": lambda: self.positions(scope, day, hour, "courier"),
            "dispatch_arrows": lambda: self.next_hour_moves(scope, day, hour),
        }
        for key, frame_of in frames.items():
            if key in on:
                traces = registry.get(key).build(frame_of(), ctx)
                built.update(zip(registry.LAYER_TRACES[key], traces, strict=True))
        out = {}
        for name in registry.TRACE_ORDER:
            t = built.get(name)
            out[name] = (
                t
                if t is not None
                else {
                    "type": "choroplethmap" if name in ("hexes", "territories") else "scattermap",
                    "name": name,
                    "uid": name,
                    "visible": False,
                }
            )
        return out

    def zone_view(self, scope: str, day: str, hour: int, zone_id: int) -> dict | None:
        """Centre and zoom fitting one zone of the hour (None if there is no such zone)."""
        z = self.zones(scope, day, hour)
        zone = z.filter(pl.col("zone_id") == int(zone_id))
        return self.view(scope, zone) if len(zone) else None

    def layout(self, state: dict) -> dict:
        # A clicked zone's view (``focus``) outlives the hour: changing the hour keeps the
        # map where the user was looking, and the same ``uirevision`` keeps their pan/zoom.
        focus = state.get("focus")
        if focus is None and state.get("zone") is not None:
            focus = self.zone_view(state["node"], state["date"], int(state["hour"]), state["zone"])
        v = focus or self.view(state["node"])
        basemap = state.get("basemap") or "none"
        layers = []
        if basemap in _TILES:
            layers = [
                {
                    "sourcetype": "raster",
                    "source": _TILES[basemap],
                    "below": "traces",
                    "sourceattribution": "© OpenStreetMap" if basemap == "osm" else "© AutoNavi",
                }
            ]
        return {
            "map": {"style": OFFLINE_STYLE, "center": v["center"], "zoom": v["zoom"], "layers": layers},
            "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
            "uirevision": f"{state['node']}|{basemap}|{_view_key(focus)}",
            "showlegend": False,
            "paper_bgcolor": "#ffffff",
            "clickmode": "event",
        }

    def geometry_key(self, state: dict) -> str:
        return f"{state['node']}|{state['date']}|{state.get('basemap') == 'amap'}"

    def figure(self, state: dict, text: dict) -> tuple[dict, dict]:
        """The whole map figure and its geometry key ``{"key", "sig"}``."""
        geo_key, sig = self.geometry_key(state), None
        geometry = None
        if "hexes" in (state.get("layers") or []):
            _, geometry, sig = self.geometry(state["node"], state["date"], state.get("basemap") == "amap")
        traces = self.traces(state, text, geometry)
        return {"data": [traces[n] for n in registry.TRACE_ORDER], "layout": self.layout(state)}, {
            "key": geo_key,
            "sig": sig,
        }


class ViewerModel:
    """The view model as one viewer may use it: the only way callbacks, exports and the
    jobs started for a user reach :class:`Model`.

    Every method of :class:`Model` that names a node (a ``scope`` or ``node_id``
    argument, or a view ``state``) is checked against the viewer first (``state`` is
    also validated, and its private layers checked against the viewer's grants); a
    method naming no node is refused unless it is one of :data:`OPEN` (network-wide
    reads hold no node's data only by being listed here). A method added to
    :class:`Model` is therefore closed to viewers until it names its node.

    Examples
    --------
    >>> sorted(OPEN)[:3]
    ['day_of', 'day_window', 'hour_window']
    """

    def __init__(self, model: Model, viewer: Viewer):
        self.model = model
        self.viewer = viewer

    @property
    def settings(self):
        return self.model.settings

    def root(self) -> str:
        """The viewer's own top node (the tree's root is not theirs to know)."""
        return self.viewer.root

    def state(self, state) -> dict:
        """``state`` validated (``views.state.check``) and inside the viewer's scope."""
        from views import state as st

        s = st.check(state)
        self.viewer.require(s["node"])
        self.viewer.require_layers(s["node"], s["layers"])
        return s

    def __getattr__(self, name: str):
        if name in OPEN:
            return getattr(self.model, name)
        where = _node_argument(name)
        if where is None:
            raise AttributeError(f"Model.{name} names no node: it is not open to a viewer")
        method = getattr(self.model, name)
        signature = inspect.signature(method)

        @functools.wraps(method)
        def checked(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            value = bound.arguments[where]
            if where == "state":
                bound.arguments["state"] = self.state(value)
            else:
                self.viewer.require(value)
                if name in PRIVATE_READS and not self.viewer.may_see_positions(value):
                    raise OutsideScope(f"individual positions at {value} without the grant", value)
            return method(*bound.args, **bound.kwargs)

        return checked


#: Model methods a viewer may call although they name no node: time arithmetic only.
OPEN = frozenset({"hour_window", "day_window", "local", "day_of"})
#: Model reads of individual couriers and vehicles: also checked against the position grant.
PRIVATE_READS = frozenset({"positions"})
_NODE_PARAMETERS = ("scope", "node_id", "state")


@functools.cache
def _node_argument(name: str) -> str | None:
    """The argument of ``Model.<name>`` that names its node (None: it names none)."""
    fn = getattr(Model, name, None)
    if name.startswith("_") or not callable(fn):
        return None
    params = inspect.signature(fn).parameters
    return next((p for p in _NODE_PARAMETERS if p in params), None)


def _view_key(view: dict | None) -> str:
    """A short stable text of a view (part of the map's ``uirevision``)."""
    if not view:
        return "-"
    return f"{view['center']['lat']:.5f},{view['center']['lon']:.5f},{view['zoom']}"


def _labelled(territories, lang: str | None):
    """Territories named in the interface language where the tree has the name (the
    divisions and headquarters have English names; places keep their Chinese names)."""
    if lang != "en" or "name_en" not in territories.columns or territories["name_en"].isna().all():
        return territories
    out = territories.copy()
    out["name"] = out["name_en"].where(out["name_en"].notna(), out["name"])
    return out
