"""Dispatch suggestions: move couriers and vans into peak-load zones.

Pure functions over frames. The moves solve minimum-cost flows on bipartite graphs
(transportation problems): sources supply what they can spare, zones demand what
brings them down to ``target_ratio``, and each unit moved costs its street distance.
Flow is maximised first (weighted by how loaded the zone is, so the worst zone is
served first when supply is short), then distance is minimised. The constraint
matrix is totally unimodular, so the simplex solution is whole couriers and vans.

Sources (all outside every zone):

* **areas**: cells whose couriers present exceed what their own work needs, pooled by
  their parent cell at ``source_res`` within one branch, and split by travel mode in
  proportion to the branch's couriers (``mode_mix``);
* **outlets**: couriers based at an outlet who are not on the road in the hour (its
  roster minus the couriers of the outlet seen anywhere that hour);
* **vehicle bases**: vans based at an outlet or hub that are not on the road in the
  hour (its fleet minus the vans seen that hour).

Capacity model (courier-hours, as in ``ops.kpis``):

* a cell's couriers present = ``capacity / parcels_per_courier_hour``;
* a zone needs ``ceil(workload / (pph * target_ratio) - couriers)`` more couriers;
* a cell in no zone can spare ``couriers - workload / (pph * source_max_ratio)``
  (after giving them its own ratio stays at or below ``source_max_ratio``), and never
  more than ``1 - source_keep`` of its courier-hours;
* a van sent to a zone with its driver handles ``vehicle_parcels_per_hour`` parcels
  in the hour (bulk drops at lockers, shops and compounds, and relaying loads to the
  zone's couriers so that they stop riding back to the outlet): its capacity is that
  rate, counted in the zone's capacity beside its couriers';
* whoever is sent works in the zone only for the part of the hour left after the trip
  (``on_site = 1 - km / speed``): the ratio after the moves counts that part only.

Couriers are chosen first (the courier flow); vans then cover what the couriers could
not (the vehicle flow on each zone's remaining work): a van taken off the road is
the dearer move. Every source is limited to what its mode reaches in
``max_minutes`` (``radius_km``: walking, e-bike or van speed on the street).

A source never gives more than its spare; zone ratios only go down; area sources stay
at or below ``source_max_ratio``, below ``target_ratio``; outlet and vehicle sources
are idle, so no cell loses capacity to them: the worst ratio never rises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import cast

import numpy as np
import polars as pl

from geo import cells as h3cells

#: Street distance / straight-line distance (as in the demo's couriers).
DETOUR = 1.3
EARTH_KM = 6371.0088
#: Travel modes of couriers (``couriers.mode``) and of dispatchable vehicles (``vehicles.kind``).
COURIER_MODES = ("walk", "ebike")
VEHICLE_MODES = ("van",)

MOVE_SCHEMA = {
    "zone_id": pl.Int64,
    "branch_id": pl.String,
    "kind": pl.String,  # courier | vehicle
    "mode": pl.String,  # walk | ebike | van
    "source_kind": pl.String,  # area | outlet
    "source_cell": pl.UInt64,
    "source_outlet": pl.String,  # the outlet or hub of an outlet source, else null
    "source_branch_id": pl.String,
    "zone_cell": pl.UInt64,
    "couriers": pl.Int64,
    "vehicles": pl.Int64,
    "distance_km": pl.Float64,
    "src_lat": pl.Float64,
    "src_lng": pl.Float64,
    "dst_lat": pl.Float64,
    "dst_lng": pl.Float64,
    "members": pl.List(pl.UInt64),
    "parts": pl.List(pl.Float64),
    "on_site": pl.Float64,  # share of the hour spent in the zone (the rest on the road)
}
MOVE_COLUMNS = list(MOVE_SCHEMA)

#: Columns of the reserves of outlets and vehicle bases (``data.store.forecast_reads``).
RESERVE_SCHEMA = {
    "outlet_id": pl.String,
    "branch_id": pl.String,
    "cell": pl.UInt64,
    "lat": pl.Float64,
    "lng": pl.Float64,
    "kind": pl.String,
    "mode": pl.String,
    "spare": pl.Int64,
}


@dataclass(frozen=True)
class Rules:
    """Dispatch settings (documented defaults; ``config.Settings`` holds the ones a
    deployment tunes, see :meth:`from_settings`)."""

    #: Zones are relieved down to this load ratio.
    target_ratio: float = 1.0
    #: A source keeps its own ratio at or below this after giving couriers.
    source_max_ratio: float = 0.8
    #: Longest trip to a zone, minutes (a quarter of the hour it relieves).
    max_minutes: float = 15.0
    #: Street speeds (km/h) of the modes: radius = speed x ``max_minutes``.
    walk_kmh: float = 4.5
    ebike_kmh: float = 15.0
    van_kmh: float = 24.0
    #: Hard cap on any move (street km) on top of the radius of its mode; None: none.
    max_km: float | None = None
    #: Parcels a van and its driver handle in an hour in a zone.
    vehicle_parcels_per_hour: float = 36.0
    #: Mode of couriers whose mode is not known (e-bikes carry most urban parcels).
    default_mode: str = "ebike"
    #: "branch": sources in the zone's branch only; "region": anywhere in its region.
    within: str = "region"
    #: Share of its courier-hours a source keeps whatever its forecast says (a cushion
    #: against a forecast that misses a source's own rush; off by default: on the demo it
    #: costs more relief than it saves).
    source_keep: float = 0.0
    #: Cells with spare couriers are pooled at this resolution (res 7: ~5 km²), so that
    #: fractions of courier-hours in neighbouring cells add up to whole couriers.
    source_res: int = 7

    def speed_kmh(self, mode: str) -> float:
        """Street speed of a mode (unknown modes walk)."""
        return {"walk": self.walk_kmh, "ebike": self.ebike_kmh, "van": self.van_kmh}.get(mode, self.walk_kmh)

    def on_site(self, mode: str, km) -> np.ndarray:
        """Share of the hour a courier or van sent ``km`` street km still works in the zone.

        Examples
        --------
        >>> float(Rules().on_site("ebike", 3.75))
        0.75
        """
        return np.clip(1.0 - np.asarray(km, dtype=np.float64) / self.speed_kmh(mode), 0.0, 1.0)

    def radius_km(self, mode: str) -> float:
        """Farthest street km a source of ``mode`` is sent.

        Examples
        --------
        >>> Rules().radius_km("walk"), Rules().radius_km("ebike"), Rules().radius_km("van")
        (1.125, 3.75, 6.0)
        """
        r = self.speed_kmh(mode) * self.max_minutes / 60.0
        return r if self.max_km is None else min(r, self.max_km)

    @classmethod
    def from_settings(cls, settings, **overrides) -> Rules:
        """Rules with the ``dispatch_*`` fields of ``config.Settings`` (where present)."""
        names = {f.name for f in fields(cls)}
        values = {}
        for name in names:
            v = getattr(settings, "dispatch_" + name, None)
            if v is not None:
                values[name] = v
        values.update({k: v for k, v in overrides.items() if k in names})
        return cls(**values)


#: The default rules.
RULES = Rules()


def distance_km(lat1, lng1, lat2, lng2) -> np.ndarray:
    """Street distance estimate: great-circle km times :data:`DETOUR`.

    Examples
    --------
    >>> round(float(distance_km(22.5, 114.0, 22.5, 114.01)[()]), 2)
    1.34
    """
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lng2) - np.asarray(lng1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0, 1))) * DETOUR


def zone_needs(
    cells: pl.DataFrame, zones: pl.DataFrame, parcels_per_courier_hour: float, rules: Rules = RULES
) -> pl.DataFrame:
    """Workload, couriers, ratio and couriers needed of each zone.

    Parameters
    ----------
    cells : polars.DataFrame
        ``cell, workload, capacity, branch_id`` of one hour (``ops.kpis.load_ratio``).
    zones : polars.DataFrame
        ``zone_id, cells`` (``ops.alerts.zones``).

    Returns
    -------
    polars.DataFrame
        ``zone_id, branch_id, zone_cell, lat, lng, workload, couriers, ratio, need``;
        ``branch_id`` and ``zone_cell`` are those of the zone's most loaded cell.
    """
    schema = {
        "zone_id": pl.Int64,
        "branch_id": pl.String,
        "zone_cell": pl.UInt64,
        "lat": pl.Float64,
        "lng": pl.Float64,
        "workload": pl.Float64,
        "couriers": pl.Float64,
        "ratio": pl.Float64,
        "need": pl.Int64,
    }
    if zones.is_empty():
        return pl.DataFrame(schema=schema)
    pph = parcels_per_courier_hour
    member = (
        zones.select("zone_id", pl.col("cells").alias("cell"))
        .explode("cell")
        .with_columns(pl.col("cell").cast(pl.UInt64))
    )
    j = member.join(cells.with_columns(pl.col("cell").cast(pl.UInt64)), on="cell", how="inner")
    agg = j.group_by("zone_id").agg(
        pl.col("workload").sum().cast(pl.Float64),
        (pl.col("capacity").sum() / pph).cast(pl.Float64).alias("couriers"),
        pl.col("cell").sort_by(["workload", "cell"], descending=[True, False]).first().alias("zone_cell"),
        pl.col("branch_id").sort_by(["workload", "cell"], descending=[True, False]).first(),
    )
    lat, lng = h3cells.centers(agg["zone_cell"].to_numpy())
    need = np.ceil(
        agg["workload"].to_numpy() / (pph * rules.target_ratio) - agg["couriers"].to_numpy() - 1e-9
    )
    return (
        agg.with_columns(
            pl.Series("lat", lat),
            pl.Series("lng", lng),
            (pl.col("workload") / (pl.col("couriers") * pph)).alias("ratio"),
            pl.Series("need", np.maximum(need, 0).astype(np.int64)),
        )
        .select(list(schema))
        .sort("zone_id")
    )


def _mode_shares(branches: pl.Series, mode_mix: pl.DataFrame | None, rules: Rules) -> pl.DataFrame:
    """``branch_id, mode, share`` for every branch of ``branches`` (shares sum to 1)."""
    b = pl.DataFrame({"branch_id": branches.unique()})
    known = (
        mode_mix.filter(pl.col("mode").is_in(list(COURIER_MODES)))
        .group_by("branch_id", "mode")
        .agg(pl.col("couriers").sum())
        .with_columns((pl.col("couriers") / pl.col("couriers").sum().over("branch_id")).alias("share"))
        .select("branch_id", "mode", pl.col("share").cast(pl.Float64))
        if mode_mix is not None and len(mode_mix)
        else pl.DataFrame(schema={"branch_id": pl.String, "mode": pl.String, "share": pl.Float64})
    )
    known = known.join(b, on="branch_id", how="semi")
    rest = b.join(known, on="branch_id", how="anti").with_columns(
        pl.lit(rules.default_mode).alias("mode"), pl.lit(1.0).alias("share")
    )
    return pl.concat([known, rest])


def sources(
    cells: pl.DataFrame,
    zones: pl.DataFrame,
    parcels_per_courier_hour: float,
    rules: Rules = RULES,
    mode_mix: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Areas with couriers to spare, outside every zone, per travel mode.

    A cell's spare is fractional (courier-hours present beyond what its own work
    needs); cells are pooled by their parent at ``rules.source_res`` within one branch
    and split by mode in proportion to the branch's couriers (``mode_mix``:
    ``branch_id, mode, couriers``; branches without one count as ``rules.default_mode``);
    a pool can send the whole couriers its cells' spare adds up to in each mode.

    Returns
    -------
    polars.DataFrame
        ``cell`` (the pool's cell at ``source_res``), ``branch_id``, ``mode``, ``lat``,
        ``lng`` (spare-weighted centre), ``workload``, ``couriers``, ``spare`` (whole
        couriers), ``members`` (its cells) and ``parts`` (each member's share of the spare).
    """
    pph = parcels_per_courier_hour
    in_zone = (
        zones.select(pl.col("cells").alias("cell")).explode("cell")["cell"].cast(pl.UInt64)
        if len(zones)
        else pl.Series("cell", [], dtype=pl.UInt64)
    )
    c = cells.with_columns(pl.col("cell").cast(pl.UInt64)).filter(~pl.col("cell").is_in(in_zone.implode()))
    couriers = (c["capacity"] / pph).to_numpy().astype(np.float64)
    spare = np.maximum(
        np.minimum(
            couriers - c["workload"].to_numpy() / (pph * rules.source_max_ratio),
            couriers * (1.0 - rules.source_keep),
        ),
        0.0,
    )
    c = c.with_columns(pl.Series("couriers", couriers), pl.Series("spare_f", spare)).filter(
        pl.col("spare_f") > 0
    )
    lat, lng = h3cells.centers(c["cell"].to_numpy())
    cell = c["cell"].to_numpy()
    pool = (
        h3cells.to_parent(cell, rules.source_res)
        if c.height and rules.source_res < int(h3cells.resolution(cell[:1])[0])
        else cell
    )
    c = c.with_columns(pl.Series("pool", pool, dtype=pl.UInt64), pl.Series("lat", lat), pl.Series("lng", lng))
    c = c.join(_mode_shares(c["branch_id"], mode_mix, rules), on="branch_id").with_columns(
        (pl.col("spare_f") * pl.col("share")).alias("spare_f")
    )
    g = c.group_by("pool", "branch_id", "mode").agg(
        ((pl.col("lat") * pl.col("spare_f")).sum() / pl.col("spare_f").sum()).alias("lat"),
        ((pl.col("lng") * pl.col("spare_f")).sum() / pl.col("spare_f").sum()).alias("lng"),
        pl.col("workload").sum().cast(pl.Float64),
        (pl.col("couriers") * pl.col("share")).sum().alias("couriers"),
        (pl.col("spare_f").sum() + 1e-9).floor().cast(pl.Int64).alias("spare"),
        pl.col("cell").alias("members"),
        (pl.col("spare_f") / pl.col("spare_f").sum()).alias("parts"),
    )
    return g.filter(pl.col("spare") > 0).rename({"pool": "cell"}).sort("cell", "branch_id", "mode")


def _empty_moves() -> pl.DataFrame:
    return pl.DataFrame(schema=MOVE_SCHEMA)


def solve(
    supply: np.ndarray,
    demand: np.ndarray,
    cost: np.ndarray,
    weight: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """Whole units moved from each source to each sink: the minimum-cost flow that moves
    as much as possible (weighted by ``weight`` per sink) and then as little distance.

    Parameters
    ----------
    supply : (S,) array of int
        Units each source can give.
    demand : (Z,) array of int
        Units each sink can take.
    cost : (S, Z) array of float
        Cost of one unit from source to sink.
    weight : (Z,) array of float, optional
        Priority of each sink (default 1).
    allowed : (S, Z) array of bool, optional
        Pairs that may carry flow.

    Returns
    -------
    numpy.ndarray
        ``(S, Z)`` int array; row sums <= supply, column sums <= demand.

    Examples
    --------
    >>> solve(np.array([2, 2]), np.array([3]), np.array([[1.0], [5.0]])).tolist()
    [[2], [1]]
    """
    from scipy.optimize import linprog

    supply = np.asarray(supply, dtype=np.int64)
    demand = np.asarray(demand, dtype=np.int64)
    cost = np.asarray(cost, dtype=np.float64)
    s, z = cost.shape
    out = np.zeros((s, z), dtype=np.int64)
    ok = np.ones((s, z), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool).copy()
    ok &= (supply[:, None] > 0) & (demand[None, :] > 0) & np.isfinite(cost)
    si, zi = np.nonzero(ok)
    if si.size == 0:
        return out
    w = np.ones(z) if weight is None else np.asarray(weight, dtype=np.float64)
    # A unit of flow is worth more than any distance: maximise weighted flow, then cut cost.
    big = (float(cost[ok].max()) + 1.0) * 10.0
    c = cost[si, zi] - big * w[zi]
    n = si.size
    rows = np.concatenate([si, s + zi])
    cols = np.concatenate([np.arange(n), np.arange(n)])
    from scipy.sparse import csr_array

    a = csr_array((np.ones(2 * n), (rows, cols)), shape=(s + z, n))
    b = np.concatenate([supply, demand]).astype(np.float64)
    res = linprog(c, A_ub=a, b_ub=b, bounds=(0, None), method="highs-ds")
    if res.status != 0:
        raise RuntimeError(f"dispatch optimisation failed: {res.message}")
    x = np.rint(res.x).astype(np.int64)
    out[si, zi] = x
    # Rounding can never push a total over its bound when the solution is a vertex, but
    # keep the guarantee explicit.
    assert (out.sum(axis=1) <= supply).all() and (out.sum(axis=0) <= demand).all()
    return out


def _source_frame(src: pl.DataFrame, kind: str, source_kind: str) -> pl.DataFrame:
    """Area or outlet sources on one schema for :func:`_flow`."""
    if source_kind == "area":
        return src.select(
            pl.lit(kind).alias("kind"),
            "mode",
            pl.lit("area").alias("source_kind"),
            pl.col("cell").cast(pl.UInt64),
            pl.lit(None, dtype=pl.String).alias("source_outlet"),
            "branch_id",
            "lat",
            "lng",
            "spare",
            "members",
            "parts",
        )
    return src.select(
        pl.lit(kind).alias("kind"),
        "mode",
        pl.lit("outlet").alias("source_kind"),
        pl.col("cell").cast(pl.UInt64),
        pl.col("outlet_id").alias("source_outlet"),
        "branch_id",
        pl.col("lat").cast(pl.Float64),
        pl.col("lng").cast(pl.Float64),
        pl.col("spare").cast(pl.Int64),
        pl.lit([], dtype=pl.List(pl.UInt64)).alias("members"),
        pl.lit([], dtype=pl.List(pl.Float64)).alias("parts"),
    )


def _flow(
    src: pl.DataFrame,
    need: pl.DataFrame,
    demand: np.ndarray,
    rules: Rules,
    region_of: dict | None,
) -> tuple[np.ndarray, pl.DataFrame]:
    """Solve one transportation problem; returns the units per zone and the move rows."""
    added = np.zeros(len(need), dtype=np.int64)
    if not len(need) or not len(src) or demand.sum() <= 0:
        return added, _empty_moves()
    dist = distance_km(
        src["lat"].to_numpy()[:, None],
        src["lng"].to_numpy()[:, None],
        need["lat"].to_numpy()[None, :],
        need["lng"].to_numpy()[None, :],
    )
    sb = src["branch_id"].to_numpy().astype(object)
    zb = need["branch_id"].to_numpy().astype(object)
    if rules.within == "region" and region_of is not None:
        sr = np.array([region_of.get(b) for b in sb], dtype=object)
        zr = np.array([region_of.get(b) for b in zb], dtype=object)
        same = (sr[:, None] == zr[None, :]) & (sr[:, None] != None)  # noqa: E711
    else:
        same = sb[:, None] == zb[None, :]
    radius = np.array([rules.radius_km(m) for m in src["mode"].to_list()], dtype=np.float64)
    allowed = same & (dist <= radius[:, None])
    x = solve(
        src["spare"].to_numpy(),
        demand,
        dist,
        weight=1.0 + need["ratio"].to_numpy() / max(float(cast(float, need["ratio"].max())), 1e-9),
        allowed=allowed,
    )
    added = x.sum(axis=0)
    si, zi = np.nonzero(x)
    if not si.size:
        return added, _empty_moves()
    vehicle = src["kind"].to_numpy()[si] == "vehicle"
    n = x[si, zi]
    moves = pl.DataFrame(
        {
            "zone_id": need["zone_id"].to_numpy()[zi],
            "branch_id": zb[zi].tolist(),
            "kind": src["kind"].to_numpy()[si].tolist(),
            "mode": src["mode"].to_numpy()[si].tolist(),
            "source_kind": src["source_kind"].to_numpy()[si].tolist(),
            "source_cell": src["cell"].to_numpy()[si],
            "source_outlet": [src["source_outlet"][int(i)] for i in si],
            "source_branch_id": sb[si].tolist(),
            "zone_cell": need["zone_cell"].to_numpy()[zi],
            "couriers": np.where(vehicle, 0, n),
            "vehicles": np.where(vehicle, n, 0),
            "distance_km": dist[si, zi],
            "src_lat": src["lat"].to_numpy()[si],
            "src_lng": src["lng"].to_numpy()[si],
            "dst_lat": need["lat"].to_numpy()[zi],
            "dst_lng": need["lng"].to_numpy()[zi],
            "members": [src["members"][int(i)].to_list() for i in si],
            "parts": [src["parts"][int(i)].to_list() for i in si],
            "on_site": [
                float(rules.on_site(m, d))
                for m, d in zip(src["mode"].to_numpy()[si], dist[si, zi], strict=True)
            ],
        },
        schema=MOVE_SCHEMA,
    )
    return added, moves


def suggest(
    cells: pl.DataFrame,
    zones: pl.DataFrame,
    parcels_per_courier_hour: float,
    rules: Rules = RULES,
    region_of: dict | None = None,
    reserves: pl.DataFrame | None = None,
    mode_mix: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Moves of couriers and vans into the zones of one hour, and each zone's ratio after.

    Parameters
    ----------
    cells : polars.DataFrame
        ``cell, branch_id, workload, capacity`` of the hour (current or forecast).
    zones : polars.DataFrame
        ``zone_id, cells`` (current or predicted zones of the hour).
    region_of : dict, optional
        Branch id -> region id (needed for ``rules.within == "region"``; without it
        sources must share the zone's branch).
    reserves : polars.DataFrame, optional
        Idle couriers of outlets and idle vans of their bases in the hour
        (:data:`RESERVE_SCHEMA`, ``kind`` courier or vehicle, ``spare`` whole units).
    mode_mix : polars.DataFrame, optional
        ``branch_id, mode, couriers``: how the couriers of each branch travel.

    Returns
    -------
    (moves, summary) : tuple of polars.DataFrame
        ``moves``: :data:`MOVE_COLUMNS`, one row per (source, zone) with couriers or
        vehicles > 0, nearest first within a zone. ``summary``: :func:`zone_needs`
        columns plus ``added`` (couriers), ``vehicles_added``, ``vehicle_need`` (vans
        the zone still needed after the couriers), ``capacity_added`` (parcels per
        hour, counting only the part of the hour each spends in the zone: the rest is
        the trip) and ``ratio_after``.
    """
    pph = parcels_per_courier_hour
    vph = rules.vehicle_parcels_per_hour
    # Equal-cost alternatives are common (pools at the same distance): a fixed row order
    # makes the solver's choice, and so the suggestions, the same on every run.
    # Forecast figures that differ in the last bits (sums taken in another order) are the
    # same figures: round them off, and order zones by their place rather than their id.
    cells = cells.with_columns(pl.col("workload", "capacity").cast(pl.Float64).round(9)).sort("cell")
    need = zone_needs(cells, zones, pph, rules).sort("zone_cell")
    res = reserves if reserves is not None else pl.DataFrame(schema=RESERVE_SCHEMA)
    res = res.filter(pl.col("spare") > 0)
    courier_src = pl.concat(
        [
            _source_frame(sources(cells, zones, pph, rules, mode_mix), "courier", "area"),
            _source_frame(res.filter(pl.col("kind") == "courier"), "courier", "outlet"),
        ]
    )
    added, m1 = _flow(courier_src, need, need["need"].to_numpy(), rules, region_of)
    # What the couriers leave undone (they work only the part of the hour they are
    # there), in vans (whole vans: a van is sent or not).
    got = _on_site_capacity(m1, need, pph, vph)
    left = need["workload"].to_numpy() - rules.target_ratio * (pph * need["couriers"].to_numpy() + got)
    vneed = np.maximum(np.ceil(left / (vph * rules.target_ratio) - 1e-9), 0).astype(np.int64)
    vehicle_src = _source_frame(
        res.filter((pl.col("kind") == "vehicle") & pl.col("mode").is_in(list(VEHICLE_MODES))),
        "vehicle",
        "outlet",
    )
    vadded, m2 = _flow(vehicle_src, need, vneed, rules, region_of)
    moves = pl.concat([m1, m2]).sort("zone_id", "kind", "distance_km")
    summary = need.with_columns(
        pl.Series("added", added, dtype=pl.Int64),
        pl.Series("vehicles_added", vadded, dtype=pl.Int64),
        pl.Series("vehicle_need", vneed, dtype=pl.Int64),
        pl.Series("capacity_added", _on_site_capacity(moves, need, pph, vph)),
    ).with_columns(
        (pl.col("workload") / (pl.col("couriers") * pph + pl.col("capacity_added"))).alias("ratio_after")
    )
    return moves, summary


def _on_site_capacity(moves: pl.DataFrame, need: pl.DataFrame, pph: float, vph: float) -> np.ndarray:
    """Capacity the moves bring to each zone of ``need`` (its order): couriers x pph and
    vans x vph, times the share of the hour each spends in the zone."""
    if moves.is_empty():
        return np.zeros(len(need))
    per = moves.group_by("zone_id").agg(
        ((pl.col("couriers") * pph + pl.col("vehicles") * vph) * pl.col("on_site")).sum().alias("cap")
    )
    j = need.select("zone_id").join(per, on="zone_id", how="left", maintain_order="left")
    return j["cap"].fill_null(0.0).to_numpy().astype(np.float64)


def apply(
    cells: pl.DataFrame,
    moves: pl.DataFrame,
    zones: pl.DataFrame,
    parcels_per_courier_hour: float,
    rules: Rules = RULES,
) -> pl.DataFrame:
    """Capacity of each cell after the moves (``cell, workload, capacity``; others kept).

    Area sources lose the couriers they send (for the whole hour); idle couriers and
    vans of outlets were counted nowhere and leave no cell. A zone's added capacity
    (couriers x ``pph`` plus vans x ``vehicle_parcels_per_hour``, each times
    ``on_site``, the part of the hour left after the trip) goes to its cells in
    proportion to each cell's work beyond ``target_ratio`` (all cells alike if none).
    """
    pph = parcels_per_courier_hour
    if moves.is_empty():
        return cells
    m = moves
    if "vehicles" not in m.columns:
        m = m.with_columns(pl.lit(0, dtype=pl.Int64).alias("vehicles"))
    if "on_site" not in m.columns:
        m = m.with_columns(pl.lit(1.0).alias("on_site"))
    out = cells.with_columns(pl.col("cell").cast(pl.UInt64))
    # A pool's couriers leave its cells in proportion to what each could spare.
    area = m.filter(pl.col("members").list.len() > 0)
    gone = (
        area.select("couriers", pl.col("members").alias("cell"), "parts")
        .explode("cell", "parts")
        .group_by("cell")
        .agg((pl.col("couriers") * pl.col("parts")).sum().alias("gone"))
        if len(area)
        else pl.DataFrame(schema={"cell": pl.UInt64, "gone": pl.Float64})
    )
    member = (
        zones.select("zone_id", pl.col("cells").alias("cell"))
        .explode("cell")
        .with_columns(pl.col("cell").cast(pl.UInt64))
        .join(out.select("cell", "workload", "capacity"), on="cell")
    )
    member = member.with_columns(
        (pl.col("workload") - pl.col("capacity") * rules.target_ratio).clip(lower_bound=0.0).alias("ex")
    )
    member = member.with_columns(
        pl.when(pl.col("ex").sum().over("zone_id") > 0)
        .then(pl.col("ex") / pl.col("ex").sum().over("zone_id"))
        .otherwise(1.0 / pl.len().over("zone_id"))
        .alias("part")
    )
    per_zone = m.group_by("zone_id").agg(
        ((pl.col("couriers") * pph + pl.col("vehicles") * rules.vehicle_parcels_per_hour) * pl.col("on_site"))
        .sum()
        .cast(pl.Float64)
        .alias("added")
    )
    got = (
        member.join(per_zone, on="zone_id")
        .group_by("cell")
        .agg((pl.col("part") * pl.col("added")).sum().alias("got"))
    )
    out = out.join(gone, on="cell", how="left", maintain_order="left").join(
        got, on="cell", how="left", maintain_order="left"
    )
    cap = (pl.col("capacity") + pl.col("got").fill_null(0.0) - pph * pl.col("gone").fill_null(0.0)).clip(
        lower_bound=0.0
    )
    return out.with_columns(cap.alias("capacity")).drop("gone", "got")


def reserve_forecast(roster: pl.DataFrame, seen: pl.DataFrame, days: pl.DataFrame) -> pl.DataFrame:
    """Idle couriers and vans of each outlet expected in each target hour.

    Parameters
    ----------
    roster : polars.DataFrame
        ``outlet_id, branch_id, cell, lat, lng, kind, mode, roster``: couriers and
        vehicles based at each outlet or hub.
    seen : polars.DataFrame
        ``hour, outlet_id, kind, mode, seen``: how many of them were on the road in
        earlier hours.
    days : polars.DataFrame
        ``issued, horizon, hour, k, n_days`` (``ops.forecast.choose_days``); a target
        without earlier days gets no reserves (nothing says who will be idle).

    Returns
    -------
    polars.DataFrame
        ``issued, horizon, hour`` and :data:`RESERVE_SCHEMA` (``spare``: the roster
        minus the mean seen on the road, rounded down).

    Examples
    --------
    >>> from datetime import datetime
    >>> r = pl.DataFrame({"outlet_id": ["o1"], "branch_id": ["b"], "cell": [1], "lat": [0.0],
    ...                   "lng": [0.0], "kind": ["courier"], "mode": ["ebike"], "roster": [10]})
    >>> s = pl.DataFrame({"hour": [datetime(2026, 1, 1, 9)], "outlet_id": ["o1"],
    ...                   "kind": ["courier"], "mode": ["ebike"], "seen": [7]})
    >>> d = pl.DataFrame({"issued": [datetime(2026, 1, 2, 9)], "horizon": [1],
    ...                   "hour": [datetime(2026, 1, 2, 9)], "k": [1], "n_days": [1]})
    >>> reserve_forecast(r, s, d)["spare"].to_list()
    [3]
    """
    keys = ["outlet_id", "kind", "mode"]
    j = (
        days.with_columns((pl.col("hour") - pl.duration(days=pl.col("k"))).alias("past_hour"))
        .join(seen.rename({"hour": "past_hour"}), on="past_hour", how="inner")
        .group_by("issued", "horizon", "hour", *keys)
        .agg((pl.col("seen").sum() / pl.col("n_days").first()).alias("seen"))
    )
    targets = days.select("issued", "horizon", "hour").unique()
    return (
        targets.join(roster, how="cross")
        .join(j, on=["issued", "horizon", "hour", *keys], how="left")
        .with_columns(
            (pl.col("roster") - pl.col("seen").fill_null(0.0) + 1e-9)
            .floor()
            .clip(lower_bound=0)
            .cast(pl.Int64)
            .alias("spare")
        )
        .filter(pl.col("spare") > 0)
        .select("issued", "horizon", "hour", *[pl.col(c).cast(t) for c, t in RESERVE_SCHEMA.items()])
        .sort("issued", "horizon", "outlet_id", "kind", "mode")
    )


def ratios(cells: pl.DataFrame) -> np.ndarray:
    """Load ratio of each cell from ``workload`` and ``capacity`` (0 without work).

    Examples
    --------
    >>> ratios(pl.DataFrame({"workload": [24.0, 5.0, 0.0], "capacity": [12.0, 0.0, 0.0]})).tolist()
    [2.0, inf, 0.0]
    """
    w = cells["workload"].to_numpy().astype(np.float64)
    c = cells["capacity"].to_numpy().astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(w > 0, np.where(c > 0, w / np.where(c > 0, c, 1.0), math.inf), 0.0)
