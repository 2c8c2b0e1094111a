"""Key performance indicators and the per-cell load ratio. Pure functions over frames.

Load ratio
----------
``load_ratio = workload / capacity`` for one cell and one hour, with
``workload = pickups + deliveries`` and
``capacity = effective couriers x parcels_per_courier_hour``.

*Effective couriers are courier-hours present, not heads.* A courier crossing five
cells in an hour is counted (distinctly) in all five but works one hour in total.
When a ping rate is known (pings per actor per hour in the scope, from the cube), the
courier-hours spent in a cell are ``pings / ping_rate`` and the effective couriers are
``min(distinct couriers, courier-hours)``. Without a ping rate, distinct couriers are
used as they are.

*Cells with workload but no courier seen in them.* Dividing by zero is avoided and
the cell is not written off as "infinitely" overloaded: its effective couriers are
the mean number of couriers over its 7-cell disc (the cell and its six neighbours:
couriers next door serve it), and never fewer than one courier. A cell with couriers
uses its own count. Cells with no workload have ratio 0.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from geo import cells as h3cells

#: Indicators of the KPI panel, in display order.
KPI_KEYS = (
    "pickups",
    "deliveries",
    "on_time_rate",
    "couriers",
    "parcels_per_courier_hour",
    "vehicles",
    "zones",
)


def load_ratio(
    frame: pl.DataFrame, parcels_per_courier_hour: float, ping_rate: float | None = None
) -> pl.DataFrame:
    """Add ``workload``, ``capacity`` and ``load_ratio`` to a cube frame of one hour.

    Parameters
    ----------
    frame : polars.DataFrame
        One row per cell: ``cell``, ``pickups``, ``deliveries``, ``couriers``.
    parcels_per_courier_hour : float
        Parcels one courier handles in one hour.
    ping_rate : float, optional
        Pings per actor per hour (needs a ``pings`` column); see the module notes.

    Examples
    --------
    >>> f = pl.DataFrame({"cell": [617700169958293503], "pickups": [20], "deliveries": [4],
    ...                   "couriers": [2]})
    >>> load_ratio(f, 12.0)["load_ratio"].to_list()
    [1.0]

    A cell with work and no courier seen in it borrows the mean of its 7-cell disc: two
    of its neighbours have 7 couriers each, so it counts (0 + 7 + 7) / 7 = 2 couriers.

    >>> import h3
    >>> ring = [h3.str_to_int(n) for n in h3.grid_ring("89411caa05bffff", 1)]
    >>> f = pl.DataFrame({"cell": [h3.str_to_int("89411caa05bffff")] + ring[:2],
    ...                   "pickups": [14, 0, 0], "deliveries": [0, 0, 0], "couriers": [0, 7, 7]})
    >>> load_ratio(f, 7.0)["load_ratio"].to_list()
    [1.0, 0.0, 0.0]
    """
    missing = {"cell", "pickups", "deliveries", "couriers"} - set(frame.columns)
    if missing:
        raise ValueError(f"load_ratio needs columns {sorted(missing)}")
    if parcels_per_courier_hour <= 0:
        raise ValueError("parcels_per_courier_hour must be positive")
    workload = (frame["pickups"] + frame["deliveries"]).to_numpy().astype(np.float64)
    couriers = frame["couriers"].to_numpy().astype(np.float64)
    if ping_rate is not None and ping_rate > 0 and "pings" in frame.columns:
        couriers = np.minimum(couriers, frame["pings"].to_numpy().astype(np.float64) / ping_rate)
    effective = couriers.copy()
    empty = (couriers == 0) & (workload > 0)
    if empty.any():
        src, dst = h3cells.neighbours(frame["cell"].to_numpy())
        keep = empty[src]
        disc = couriers.copy()  # the cell itself (0 here) ...
        np.add.at(disc, src[keep], couriers[dst[keep]])  # ... plus its neighbours
        effective[empty] = disc[empty] / 7.0
    effective = np.where(workload > 0, np.maximum(effective, 1.0), effective)
    capacity = effective * parcels_per_courier_hour
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(workload > 0, workload / capacity, 0.0)
    return frame.with_columns(
        pl.Series("workload", workload),
        pl.Series("capacity", capacity),
        pl.Series("load_ratio", ratio),
    )


def indicators(figures: pl.DataFrame) -> pl.DataFrame:
    """Indicators per row of a figures frame (``store.node_figures`` shape).

    Adds ``volume``, ``on_time_rate`` (None when nothing was delivered) and
    ``parcels_per_courier_hour`` (None without couriers) for the figures of one hour.

    Examples
    --------
    >>> f = pl.DataFrame({"pickups": [30, 5], "deliveries": [10, 0], "on_time": [8, 0],
    ...                   "late": [2, 0], "couriers": [4, 0]})
    >>> indicators(f).select("volume", "on_time_rate", "parcels_per_courier_hour").rows()
    [(40, 0.8, 10.0), (5, None, None)]
    """
    return figures.with_columns(
        (pl.col("pickups") + pl.col("deliveries")).alias("volume"),
        pl.when(pl.col("on_time") + pl.col("late") > 0)
        .then(pl.col("on_time") / (pl.col("on_time") + pl.col("late")))
        .otherwise(None)
        .alias("on_time_rate"),
        pl.when(pl.col("couriers") > 0)
        .then((pl.col("pickups") + pl.col("deliveries")) / pl.col("couriers"))
        .otherwise(None)
        .alias("parcels_per_courier_hour"),
    )


def change(now, before):
    """Relative change ``now / before - 1``; None when it is undefined.

    Examples
    --------
    >>> round(change(120, 100), 6), change(5, 0), change(None, 3)
    (0.2, None, None)
    """
    if now is None or before is None or before == 0:
        return None
    return float(now) / float(before) - 1.0


def panel(now: dict, before: dict) -> list[dict]:
    """The KPI panel: one entry per indicator with its value and change vs ``before``.

    Parameters
    ----------
    now, before : dict
        One row of :func:`indicators` each (plus ``zones``), for the selected hour and
        the same hour of the previous day (``before`` may be empty).

    Returns
    -------
    list of dict
        ``{"key", "value", "before", "change"}`` in :data:`KPI_KEYS` order.

    Examples
    --------
    >>> rows = panel({"pickups": 120, "zones": 2}, {"pickups": 100})
    >>> [r["key"] for r in rows] == list(KPI_KEYS)
    True
    >>> rows[-1]
    {'key': 'zones', 'value': 2, 'before': None, 'change': None}
    """
    out = []
    for key in KPI_KEYS:
        v, b = now.get(key), before.get(key)
        out.append({"key": key, "value": v, "before": b, "change": change(v, b)})
    return out
