"""What a heatmap report holds, computed once and rendered by every format.

A report is built with the dashboard's own model (:class:`views.model.Model`), so that
its numbers are the dashboard's for the same view:

* one hour: the hex frame, the KPI panel, the zones and the child ranking are the
  dashboard's, call for call;
* several hours (a day, a span of days): counts are summed over the hours, distinct
  couriers and vehicles are recounted over the whole period, ``couriers`` in the
  parcels-per-courier-hour indicator become courier-hours (the hourly distinct counts
  added up), peak-load zones are listed per hour ("zone-hours"), and a cell's
  ``load_ratio`` is its peak hourly ratio. For a single hour each of these reduces to
  the dashboard's figure.

Times: the period is given in the network's local time (``settings.local_tz``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import geopandas as gpd
import polars as pl

from data.store import reads as queries
from data.store.database import ScopeError
from geo import cells as h3cells
from layers.hexes import METRICS
from ops import kpis as kpis_mod

#: Counts carried by the hex frame besides the metric's value.
HEX_COUNTS = ("pickups", "deliveries", "scans", "pings", "couriers", "vehicles")
#: Columns of :attr:`Report.hexes`.
HEX_COLUMNS = ("cell", "node", "value", *HEX_COUNTS, "workload", "load_ratio")
#: Additive figures of ``store.node_figures`` (summed over the hours of a period).
_ADDITIVE = ("pings", "pickups", "deliveries", "on_time", "late", "scans")
#: Zones listed (and drawn) at most, most severe first.
TOP_ZONES = 20


class ReportError(ValueError):
    """A report cannot be built: unknown node, bad period or metric, or no data."""


class EmptyPeriodError(ReportError):
    """The node has no data in the period."""


@dataclass(frozen=True)
class Period:
    """A local-time period: one hour of ``day`` (``hour``), or ``days`` whole days from ``day``.

    Examples
    --------
    >>> Period("2026-11-20", hour=9).label()
    '2026-11-20 09:00–10:00'
    >>> Period("2026-11-19", days=2).label()
    '2026-11-19 – 2026-11-20'
    >>> Period("2026-11-20", hour=24)
    Traceback (most recent call last):
    ...
    reports.build.ReportError: hour must be 0..23, got 24
    """

    day: str
    hour: int | None = None
    days: int = 1

    def __post_init__(self):
        try:
            date.fromisoformat(self.day)
        except (TypeError, ValueError):
            raise ReportError(f"date must be YYYY-MM-DD, got {self.day!r}") from None
        if self.hour is not None and not 0 <= int(self.hour) <= 23:
            raise ReportError(f"hour must be 0..23, got {self.hour}")
        if self.hour is not None and self.days != 1:
            raise ReportError("give an hour or a number of days, not both")
        if self.days < 1:
            raise ReportError(f"days must be at least 1, got {self.days}")

    def local_hours(self) -> list[tuple[str, int]]:
        """Every local (date, hour) of the period, in order.

        Examples
        --------
        >>> Period("2026-11-20", hour=9).local_hours()
        [('2026-11-20', 9)]
        >>> hours = Period("2026-11-19", days=2).local_hours()
        >>> len(hours), hours[0], hours[-1]
        (48, ('2026-11-19', 0), ('2026-11-20', 23))
        """
        if self.hour is not None:
            return [(self.day, int(self.hour))]
        d0 = date.fromisoformat(self.day)
        return [((d0 + timedelta(days=i)).isoformat(), h) for i in range(self.days) for h in range(24)]

    def previous(self) -> Period:
        """The period compared with: the same hour of the day before, or the ``days`` days before.

        Examples
        --------
        >>> Period("2026-11-20", hour=9).previous().label(), Period("2026-11-19", days=2).previous().label()
        ('2026-11-19 09:00–10:00', '2026-11-17 – 2026-11-18')
        """
        shift = 1 if self.hour is not None else self.days
        return Period(
            (date.fromisoformat(self.day) - timedelta(days=shift)).isoformat(), self.hour, self.days
        )

    def label(self) -> str:
        if self.hour is not None:
            return f"{self.day} {int(self.hour):02d}:00–{(int(self.hour) + 1) % 24:02d}:00"
        if self.days == 1:
            return self.day
        last = date.fromisoformat(self.day) + timedelta(days=self.days - 1)
        return f"{self.day} – {last.isoformat()}"

    def slug(self) -> str:
        """A file-name friendly label (``2026-11-20T09``, ``2026-11-20``, ``2026-11-19+2d``).

        Examples
        --------
        >>> Period("2026-11-20", hour=9).slug(), Period("2026-11-20").slug(), Period("2026-11-19", days=2).slug()
        ('2026-11-20T09', '2026-11-20', '2026-11-19+2d')
        """
        if self.hour is not None:
            return f"{self.day}T{int(self.hour):02d}"
        return self.day if self.days == 1 else f"{self.day}+{self.days}d"


@dataclass
class Report:
    """Everything a rendered report shows. Frames are polars unless noted.

    Attributes
    ----------
    node : dict
        The node's row (``node_id, level, name, name_en, ...``).
    path : list of dict
        Root-to-node rows (the breadcrumb).
    hexes : polars.DataFrame
        :data:`HEX_COLUMNS`, one row per cell at ``res`` (``cell`` uint64).
    outlines : geopandas.GeoDataFrame
        Territories of the node's children (the node's own for a branch).
    outlets : polars.DataFrame
        ``queries.outlet_load`` over the period.
    zones : polars.DataFrame
        Peak-load zones (``ops.alerts.ZONE_COLUMNS`` + ``branch``, ``hour``), most severe first.
    kpis : list of dict
        The KPI panel (``ops.kpis.panel``): key, value, before, change.
    children : polars.DataFrame
        Child nodes with their indicators, ranked by volume (``rank`` 1..n).
    """

    node: dict
    path: list[dict]
    period: Period
    metric: str
    res: int
    generated_at: datetime
    hexes: pl.DataFrame
    outlines: gpd.GeoDataFrame
    outlets: pl.DataFrame
    zones: pl.DataFrame
    zone_hours: int
    kpis: list[dict]
    children: pl.DataFrame
    bounds: tuple[float, float, float, float]
    tz: str = field(default="Asia/Shanghai")

    @property
    def title(self) -> str:
        return f"{self.node['name']} · {self.period.label()}"

    def file_stem(self) -> str:
        return f"emap-{self.node['node_id']}-{self.period.slug()}-{self.metric}"


def model_for(store, settings):
    """A dashboard model on ``store`` (reports built on the command line use their own)."""
    from views.model import Model

    return Model(store, settings)


def build(
    store,
    settings,
    node_id: str,
    period: Period,
    metric: str = "scans",
    model=None,
    now: datetime | None = None,
    viewer=None,
) -> Report:
    """Build the report of ``node_id`` for ``period`` coloured by ``metric``.

    Parameters
    ----------
    store : data.store.database.Store
    settings : config.Settings
    node_id : str
        The node (and the viewer's scope: only its data is read).
    period : Period
    metric : str
        One of ``layers.hexes.METRICS``.
    model : views.model.Model, optional
        The dashboard's model (shares its cache); a new one on ``store`` otherwise.
    now : datetime, optional
        Generation time shown on the report (local; default: now).
    viewer : auth.viewer.Viewer, optional
        Who the report is built for: ``auth.viewer.OutsideScope`` unless they hold
        ``node_id``. The dashboard always passes its request's viewer; a command run on
        the server's machine builds for its operator (every node).

    Raises
    ------
    ReportError
        Unknown node or metric; :class:`EmptyPeriodError` when the node has no data in
        the period.
    """
    if metric not in METRICS:
        raise ReportError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    try:
        store.check_scope(node_id)
    except ScopeError:
        raise ReportError(
            f"unknown node {node_id!r} (see the node ids of the dashboard's drill-down or the nodes table)"
        ) from None
    if viewer is not None:
        viewer.require(node_id)
    m = model or model_for(store, settings)
    node = m.node(node_id)
    hours = _hours_with_data(m, node_id, period)
    if not hours:
        raise EmptyPeriodError(
            f"no data for node {node_id} ({node['name']}) in {period.label()} "
            f"(local time, {settings.local_tz})"
        )
    res = m.res(node_id)
    hexes = _hexes(m, node_id, period, hours, metric, res)
    if hexes.is_empty():
        raise EmptyPeriodError(
            f"no data for node {node_id} ({node['name']}) in {period.label()} "
            f"(local time, {settings.local_tz})"
        )
    zones = _zones(m, node_id, period, hours)
    start, end = _window(m, period)
    kpis = kpi_panel(m, node_id, period, hours, zone_hours=len(zones))
    outlines = m.territories(node_id)
    bounds = tuple(
        float(v) for v in m.cache.get(("terr", node_id), lambda: store.territories([node_id])).total_bounds
    )
    return Report(
        node=node,
        path=m.path(node_id),
        period=period,
        metric=metric,
        res=res,
        generated_at=(now or datetime.now(m.tz).replace(tzinfo=None)).replace(microsecond=0),
        hexes=hexes,
        outlines=outlines,
        outlets=queries.outlet_load(store, node_id, start, end),
        zones=zones.head(TOP_ZONES),
        zone_hours=len(zones),
        kpis=kpis,
        children=child_ranking(m, node_id, period, hours, zones),
        bounds=bounds,
        tz=settings.local_tz,
    )


# -- pieces (public so that tests and the dashboard can check them one by one) ----------------
def _window(m, period: Period) -> tuple[datetime, datetime]:
    if period.hour is not None:
        return m.hour_window(period.day, period.hour)
    start, _ = m.day_window(period.day)
    last = (date.fromisoformat(period.day) + timedelta(days=period.days - 1)).isoformat()
    return start, m.day_window(last)[1]


def _hours_with_data(m, node_id: str, period: Period) -> list[tuple[str, int]]:
    """Local hours of the period inside the node's data span (others hold nothing)."""
    lo, hi = m.data_hours(node_id)
    if lo is None:
        return []
    out = []
    for d, h in period.local_hours():
        start, _ = m.hour_window(d, h)
        if lo <= start <= hi:
            out.append((d, h))
    return out


def _hexes(m, node_id: str, period: Period, hours, metric: str, res: int) -> pl.DataFrame:
    if period.hour is not None:
        day, hour = hours[0]
        start, _ = m.hour_window(day, hour)
        frame = m.hex_frame(node_id, day, hour, metric)
        counts = (
            m.day_cube(node_id, day, res)
            .filter(pl.col("hour") == start)
            .select("cell", *[c for c in HEX_COUNTS if c != "couriers"])
        )
        return frame.join(counts, on="cell", how="left").select(HEX_COLUMNS)
    start, end = _window(m, period)
    cube = m.store.cube(node_id, start, end, res, per_hour=False)
    if cube.is_empty():
        return pl.DataFrame(schema={c: pl.Float64 for c in HEX_COLUMNS})
    peaks = (
        pl.concat([m.hex_frame(node_id, d, h, "load_ratio").select("cell", "load_ratio") for d, h in hours])
        .group_by("cell")
        .agg(pl.col("load_ratio").max())
    )
    kids = m.cell_children(node_id, hours[0][0], res).select("cell", pl.col("name").alias("node"))
    out = (
        cube.join(peaks, on="cell", how="left")
        .join(kids, on="cell", how="left")
        .with_columns(
            pl.col("load_ratio").fill_null(0.0),
            (pl.col("pickups") + pl.col("deliveries")).cast(pl.Float64).alias("workload"),
        )
    )
    value = pl.col("load_ratio") if metric == "load_ratio" else pl.col(metric).cast(pl.Float64)
    return out.with_columns(value.alias("value")).select(HEX_COLUMNS).sort("cell")


def _zones(m, node_id: str, period: Period, hours) -> pl.DataFrame:
    """Zones of every hour, most severe first; one hour keeps the dashboard's numbering."""
    if period.hour is not None:
        day, hour = hours[0]
        return m.zones(node_id, day, hour).with_columns(pl.lit(f"{hour:02d}:00").alias("hour"))
    parts = []
    for d, h in hours:
        z = m.zones(node_id, d, h, with_since=False)
        if len(z):
            label = f"{h:02d}:00" if period.days == 1 else f"{d[5:]} {h:02d}:00"
            parts.append(z.with_columns(pl.lit(label).alias("hour")))
    if not parts:
        return (
            m.zones(node_id, *hours[0], with_since=False)
            .with_columns(pl.lit("").alias("hour"))
            .with_columns(pl.lit(None, dtype=pl.String).alias("since"))
        )
    return (
        pl.concat(parts)
        .sort(["excess", "n_cells"], descending=True)
        .with_columns(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("zone_id"), pl.col("hour").alias("since")
        )
    )


def period_figures(m, node_id: str, hours, level: str | None = None) -> pl.DataFrame:
    """``store.node_figures`` over the hours with the indicators of ``ops.kpis``.

    Additive counts are summed; ``couriers``/``vehicles`` are distinct over the whole
    period; ``courier_hours`` adds up the hourly distinct couriers and is the divisor of
    ``parcels_per_courier_hour`` (for one hour it equals ``couriers``).
    """
    store = m.store
    windows = [m.hour_window(d, h) for d, h in hours]
    if len(windows) == 1:
        f = store.node_figures(node_id, *windows[0], level=level)
        return kpis_mod.indicators(f).with_columns(pl.col("couriers").alias("courier_hours"))
    hourly = pl.concat([store.node_figures(node_id, a, b, level=level) for a, b in windows])
    summed = hourly.group_by("node_id", "name", maintain_order=True).agg(
        *[pl.col(c).sum() for c in _ADDITIVE], pl.col("couriers").sum().alias("courier_hours")
    )
    distinct = store.node_figures(node_id, windows[0][0], windows[-1][1], level=level).select(
        "node_id", "couriers", "vehicles"
    )
    f = summed.join(distinct, on="node_id", how="left")
    return kpis_mod.indicators(f).with_columns(
        pl.when(pl.col("courier_hours") > 0)
        .then(pl.col("volume") / pl.col("courier_hours"))
        .otherwise(None)
        .alias("parcels_per_courier_hour")
    )


def kpi_panel(m, node_id: str, period: Period, hours, zone_hours: int | None = None) -> list[dict]:
    """The KPI panel of the period against the previous one (``Model.kpis`` for one hour)."""
    if period.hour is not None:
        return m.kpis(node_id, period.day, int(period.hour))
    level = m.node(node_id)["level"]
    rows = []
    for p, hrs, zh in ((period, hours, zone_hours), (period.previous(), None, None)):
        if hrs is None:
            hrs = _hours_with_data(m, node_id, p)
        if not hrs:
            rows.append({})
            continue
        f = period_figures(m, node_id, hrs, level=level)
        row = f.row(0, named=True) if len(f) else {}
        if row:
            row["zones"] = (
                zh if zh is not None else sum(len(m.zones(node_id, d, h, with_since=False)) for d, h in hrs)
            )
        rows.append(row)
    return kpis_mod.panel(rows[0], rows[1])


def child_ranking(m, node_id: str, period: Period, hours, zones: pl.DataFrame) -> pl.DataFrame:
    """Children with their indicators and zone(-hour) counts, ranked by volume
    (``Model.child_table`` for one hour)."""
    if period.hour is not None:
        t = m.child_table(node_id, period.day, int(period.hour))
    else:
        t = m.with_zone_counts(period_figures(m, node_id, hours), zones)
        t = t.sort("volume", descending=True, maintain_order=True)
    return t.with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("rank"))


def hex_ids(report: Report) -> list[str]:
    """Hex-string ids of the report's cells (the export edge)."""
    return h3cells.to_str(report.hexes["cell"].to_numpy())
