"""Dispatch suggestions: move couriers from cells with spare capacity into peak-load zones.

Pure functions over frames. The moves solve a minimum-cost flow on a bipartite graph
(a transportation problem): sources supply their spare couriers, zones demand the
couriers that bring them down to ``target_ratio``, and each courier moved costs its
street distance. Flow is maximised first (weighted by how loaded the zone is, so the
worst zone is served first when couriers are short), then distance is minimised. The
constraint matrix is totally unimodular, so the simplex solution is whole couriers.

Definitions (courier-hours, as in ``geo.kpis``):

* a cell's couriers present = ``capacity / parcels_per_courier_hour``;
* a zone needs ``ceil(workload / (pph * target_ratio) - couriers)`` more couriers;
* a cell in no zone can spare ``couriers - workload / (pph * source_max_ratio)``
  (after giving them its own ratio stays at or below ``source_max_ratio``), and never
  more than ``1 - source_keep`` of its courier-hours; cells are
  pooled by their parent cell at ``source_res`` in one branch, and a pool in the zone's
  branch or region, within ``max_km``, sends at most the whole couriers of its spare.

A source never gives more than its spare; zone ratios only go down; sources stay at or
below ``source_max_ratio``, which is below ``target_ratio``: the worst ratio never rises.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl

from geo import cells as h3cells

#: Street distance / straight-line distance (as in the demo's couriers).
DETOUR = 1.3
EARTH_KM = 6371.0088

MOVE_COLUMNS = [
    "zone_id",
    "branch_id",
    "source_cell",
    "source_branch_id",
    "zone_cell",
    "couriers",
    "distance_km",
    "src_lat",
    "src_lng",
    "dst_lat",
    "dst_lng",
    "members",
    "parts",
]


@dataclass(frozen=True)
class Rules:
    """Dispatch settings (documented defaults)."""

    #: Zones are relieved down to this load ratio.
    target_ratio: float = 1.0
    #: A source keeps its own ratio at or below this after giving couriers.
    source_max_ratio: float = 0.8
    #: Farthest a courier is sent (street km).
    max_km: float = 6.0
    #: "branch": sources in the zone's branch only; "region": anywhere in its region.
    within: str = "region"
    #: Share of its courier-hours a source keeps whatever its forecast says (a cushion
    #: against a forecast that misses a source's own rush; off by default: on the demo it
    #: costs more relief than it saves).
    source_keep: float = 0.0
    #: Cells with spare couriers are pooled at this resolution (res 7: ~5 km²), so that
    #: fractions of courier-hours in neighbouring cells add up to whole couriers.
    source_res: int = 7


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
        ``cell, workload, capacity, branch_id`` of one hour (``geo.kpis.load_ratio``).
    zones : polars.DataFrame
        ``zone_id, cells`` (``geo.alerts.zones``).

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
        pl.col("cell").sort_by("workload", descending=True).first().alias("zone_cell"),
        pl.col("branch_id").sort_by("workload", descending=True).first(),
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


def sources(
    cells: pl.DataFrame, zones: pl.DataFrame, parcels_per_courier_hour: float, rules: Rules = RULES
) -> pl.DataFrame:
    """Areas with couriers to spare, outside every zone.

    A cell's spare is fractional (courier-hours present beyond what its own work
    needs); cells are pooled by their parent at ``rules.source_res`` within one branch,
    and a pool can send the whole couriers its cells' spare adds up to.

    Returns
    -------
    polars.DataFrame
        ``cell`` (the pool's cell at ``source_res``), ``branch_id``, ``lat``, ``lng``
        (spare-weighted centre), ``workload``, ``couriers``, ``spare`` (whole couriers),
        ``members`` (its cells) and ``parts`` (each member's share of the spare).
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
    g = c.group_by("pool", "branch_id").agg(
        ((pl.col("lat") * pl.col("spare_f")).sum() / pl.col("spare_f").sum()).alias("lat"),
        ((pl.col("lng") * pl.col("spare_f")).sum() / pl.col("spare_f").sum()).alias("lng"),
        pl.col("workload").sum().cast(pl.Float64),
        pl.col("couriers").sum(),
        (pl.col("spare_f").sum() + 1e-9).floor().cast(pl.Int64).alias("spare"),
        pl.col("cell").alias("members"),
        (pl.col("spare_f") / pl.col("spare_f").sum()).alias("parts"),
    )
    return g.filter(pl.col("spare") > 0).rename({"pool": "cell"}).sort("cell", "branch_id")


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


def suggest(
    cells: pl.DataFrame,
    zones: pl.DataFrame,
    parcels_per_courier_hour: float,
    rules: Rules = RULES,
    region_of: dict | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Moves of couriers into the zones of one hour, and each zone's ratio after them.

    Parameters
    ----------
    cells : polars.DataFrame
        ``cell, branch_id, workload, capacity`` of the hour (current or forecast).
    zones : polars.DataFrame
        ``zone_id, cells`` (current or predicted zones of the hour).
    region_of : dict, optional
        Branch id -> region id (needed for ``rules.within == "region"``; without it
        sources must share the zone's branch).

    Returns
    -------
    (moves, summary) : tuple of polars.DataFrame
        ``moves``: :data:`MOVE_COLUMNS`, one row per (source, zone) with couriers > 0.
        ``summary``: :func:`zone_needs` columns plus ``added`` and ``ratio_after``.
    """
    pph = parcels_per_courier_hour
    need = zone_needs(cells, zones, pph, rules)
    src = sources(cells, zones, pph, rules)
    moves = pl.DataFrame(
        schema={
            "zone_id": pl.Int64,
            "branch_id": pl.String,
            "source_cell": pl.UInt64,
            "source_branch_id": pl.String,
            "zone_cell": pl.UInt64,
            "couriers": pl.Int64,
            "distance_km": pl.Float64,
            "src_lat": pl.Float64,
            "src_lng": pl.Float64,
            "dst_lat": pl.Float64,
            "dst_lng": pl.Float64,
            "members": pl.List(pl.UInt64),
            "parts": pl.List(pl.Float64),
        }
    )
    added = np.zeros(len(need), dtype=np.int64)
    if len(need) and len(src) and need["need"].sum() > 0:
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
        allowed = same & (dist <= rules.max_km)
        x = solve(
            src["spare"].to_numpy(),
            need["need"].to_numpy(),
            dist,
            weight=1.0 + need["ratio"].to_numpy() / max(float(need["ratio"].max()), 1e-9),
            allowed=allowed,
        )
        added = x.sum(axis=0)
        si, zi = np.nonzero(x)
        if si.size:
            moves = pl.DataFrame(
                {
                    "zone_id": need["zone_id"].to_numpy()[zi],
                    "branch_id": zb[zi].tolist(),
                    "source_cell": src["cell"].to_numpy()[si],
                    "source_branch_id": sb[si].tolist(),
                    "zone_cell": need["zone_cell"].to_numpy()[zi],
                    "couriers": x[si, zi],
                    "distance_km": dist[si, zi],
                    "src_lat": src["lat"].to_numpy()[si],
                    "src_lng": src["lng"].to_numpy()[si],
                    "dst_lat": need["lat"].to_numpy()[zi],
                    "dst_lng": need["lng"].to_numpy()[zi],
                    "members": [src["members"][int(i)].to_list() for i in si],
                    "parts": [src["parts"][int(i)].to_list() for i in si],
                },
                schema=moves.schema,
            ).sort("zone_id", "distance_km")
    summary = need.with_columns(pl.Series("added", added, dtype=pl.Int64)).with_columns(
        (pl.col("workload") / ((pl.col("couriers") + pl.col("added")) * pph)).alias("ratio_after")
    )
    return moves, summary


def apply(
    cells: pl.DataFrame,
    moves: pl.DataFrame,
    zones: pl.DataFrame,
    parcels_per_courier_hour: float,
    rules: Rules = RULES,
) -> pl.DataFrame:
    """Capacity of each cell after the moves (``cell, workload, capacity``; others kept).

    Sources lose the couriers they send; a zone's couriers go to its cells in
    proportion to each cell's work beyond ``target_ratio`` (all cells alike if none).
    """
    pph = parcels_per_courier_hour
    if moves.is_empty():
        return cells
    out = cells.with_columns(pl.col("cell").cast(pl.UInt64))
    # A pool's couriers leave its cells in proportion to what each could spare.
    gone = (
        moves.select("couriers", pl.col("members").alias("cell"), "parts")
        .explode("cell", "parts")
        .group_by("cell")
        .agg((pl.col("couriers") * pl.col("parts")).sum().alias("gone"))
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
    per_zone = moves.group_by("zone_id").agg(pl.col("couriers").sum().alias("added"))
    got = (
        member.join(per_zone, on="zone_id")
        .group_by("cell")
        .agg((pl.col("part") * pl.col("added")).sum().alias("got"))
    )
    out = out.join(gone, on="cell", how="left", maintain_order="left").join(
        got, on="cell", how="left", maintain_order="left"
    )
    cap = (pl.col("capacity") + pph * (pl.col("got").fill_null(0.0) - pl.col("gone").fill_null(0))).clip(
        lower_bound=0.0
    )
    return out.with_columns(cap.alias("capacity")).drop("gone", "got")


def ratios(cells: pl.DataFrame) -> np.ndarray:
    """Load ratio of each cell from ``workload`` and ``capacity`` (0 without work)."""
    w = cells["workload"].to_numpy().astype(np.float64)
    c = cells["capacity"].to_numpy().astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(w > 0, np.where(c > 0, w / np.where(c > 0, c, 1.0), math.inf), 0.0)
