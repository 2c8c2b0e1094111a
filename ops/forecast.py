"""Workload forecast per cell and per node for the next hours. Pure functions over frames.

The forecast of an hour ``T`` issued at ``t0`` (``T = t0 + (h - 1)`` hours for the
horizon ``h = 1..6``; ``h = 1`` is the hour starting at ``t0``) adds what is already
known to what usually comes on top of it:

``forecast = pipeline + max(baseline - usual pipeline, 0)``

(the pipeline scaled by ``baseline / usual pipeline`` where the pipeline usually
announces more than the hour brings, see :func:`on_top`)

* **pipeline**: parcels the scans already announce. Deliveries: parcels whose newest
  scan names the destination branch and an expected time in ``T`` and that are not
  delivered yet; the branch's count is spread over its cells by their usual share of
  the branch's deliveries at that hour. Pickups: open pickup requests in their cell,
  each spread over the next hours by the request-to-pickup delays seen before
  (conditional on how long it has already waited).
* **baseline**: the mean of the same hour on earlier days (the same weekday when at
  least ``weekday_weeks`` earlier weeks hold data; otherwise the previous
  ``lookback_days`` days that hold data).
* **usual pipeline**: what the pipeline announced, on those same earlier days, the
  same number of hours ahead. Subtracting it keeps the parcels the pipeline knows from
  being counted twice: with an ordinary pipeline the forecast is the baseline; with a
  pipeline three times the usual (a surge on its way) it rises accordingly.

This is the additive "advance bookings" (pickup) method of demand forecasting, applied
to parcels. Capacity present is forecast as the baseline of couriers and pings, and
the load ratio, over-load flags and zones use ``ops.kpis`` and ``ops.alerts`` unchanged,
so predicted zones have exactly the definitions and thresholds of current ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import polars as pl

from ops import alerts as alerts_mod
from ops import kpis as kpis_mod

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
#: Default horizon in hours.
HORIZON = 6


@dataclass(frozen=True)
class Params:
    """Forecast settings (documented defaults)."""

    #: Hours ahead, 1..horizon.
    horizon: int = HORIZON
    #: Earlier days looked at for the baseline when weekdays cannot be matched.
    lookback_days: int = 7
    #: Use same-weekday days only when at least this many earlier weeks hold data.
    weekday_weeks: int = 2


#: The default settings.
PARAMS = Params()


def plan(issued: list[datetime], horizon: int = HORIZON) -> pl.DataFrame:
    """Issue time, horizon and target hour of every forecast to make.

    Examples
    --------
    >>> plan([datetime(2026, 11, 20, 1)], 2)["hour"].to_list()
    [datetime.datetime(2026, 11, 20, 1, 0), datetime.datetime(2026, 11, 20, 2, 0)]
    """
    rows = [(t0, h, t0 + (h - 1) * HOUR) for t0 in issued for h in range(1, horizon + 1)]
    return pl.DataFrame(
        rows,
        schema={"issued": pl.Datetime("us"), "horizon": pl.Int64, "hour": pl.Datetime("us")},
        orient="row",
    )


def candidate_days(params: Params = PARAMS) -> list[int]:
    """Days back that may serve a baseline: 1..lookback and whole weeks up to weekday_weeks.

    Examples
    --------
    >>> candidate_days()
    [1, 2, 3, 4, 5, 6, 7, 14]
    >>> candidate_days(Params(lookback_days=3, weekday_weeks=1))
    [1, 2, 3, 7]
    """
    weeks = [7 * w for w in range(1, max(params.weekday_weeks, 1) + 1)]
    return sorted(set(range(1, params.lookback_days + 1)) | set(weeks))


def past_hours(targets, params: Params = PARAMS) -> list[datetime]:
    """Every earlier hour a baseline of ``targets`` may read (to fetch them in one query).

    Examples
    --------
    >>> [str(t) for t in past_hours([datetime(2026, 1, 15, 9)], Params(lookback_days=2, weekday_weeks=1))]
    ['2026-01-08 09:00:00', '2026-01-13 09:00:00', '2026-01-14 09:00:00']
    """
    ks = candidate_days(params)
    return sorted({t - k * DAY for t in targets for k in ks})


def choose_days(
    targets: pl.DataFrame, present: set, params: Params = PARAMS, weekday: bool = True
) -> pl.DataFrame:
    """The earlier days (``k`` days back) each target hour's baseline averages over.

    Parameters
    ----------
    targets : polars.DataFrame
        ``issued, horizon, hour``.
    present : set of datetime
        Earlier hours holding data in the scope.
    weekday : bool
        Allow the same-weekday rule; ``False`` gives the alerts' baseline (the previous
        ``lookback_days`` days with data).

    Returns
    -------
    polars.DataFrame
        ``issued, horizon, hour, k, n_days``.

    Examples
    --------
    With the same weekday of two earlier weeks in the data, those two days are the
    baseline; without the weekday rule, every day of the last week that holds data:

    >>> t = plan([datetime(2026, 1, 15, 9)], 1)
    >>> present = {datetime(2026, 1, 15, 9) - k * DAY for k in (1, 2, 7, 14)}
    >>> choose_days(t, present)["k"].to_list(), choose_days(t, present, weekday=False)["k"].to_list()
    ([7, 14], [1, 2, 7])
    """
    rows = []
    for t0, h, t in targets.select("issued", "horizon", "hour").iter_rows():
        weeks = [7 * w for w in range(1, params.weekday_weeks + 1) if t - 7 * w * DAY in present]
        if weekday and len(weeks) >= params.weekday_weeks:
            ks = weeks
        else:
            ks = [k for k in range(1, params.lookback_days + 1) if t - k * DAY in present]
        rows.extend((t0, h, t, k, len(ks)) for k in ks)
    return pl.DataFrame(
        rows,
        schema={
            "issued": pl.Datetime("us"),
            "horizon": pl.Int64,
            "hour": pl.Datetime("us"),
            "k": pl.Int64,
            "n_days": pl.Int64,
        },
        orient="row",
    )


def _past(days: pl.DataFrame) -> pl.DataFrame:
    return days.with_columns(
        (pl.col("hour") - pl.duration(days=pl.col("k"))).alias("past_hour"),
        (pl.col("issued") - pl.duration(days=pl.col("k"))).alias("past_issued"),
    )


def seasonal_baseline(
    history: pl.DataFrame, days: pl.DataFrame, keys: list[str], values: list[str]
) -> pl.DataFrame:
    """Mean of ``values`` per ``keys`` over the chosen earlier days of each target.

    A key absent on one of the days counts as 0 on that day.

    Parameters
    ----------
    history : polars.DataFrame
        ``hour``, ``keys`` and ``values`` of earlier hours.
    days : polars.DataFrame
        Output of :func:`choose_days`.

    Returns
    -------
    polars.DataFrame
        ``issued, horizon, hour, *keys, *values``.

    Examples
    --------
    >>> hist = pl.DataFrame({"hour": [datetime(2026, 1, 1, 9), datetime(2026, 1, 2, 9)],
    ...                      "cell": [1, 1], "w": [10.0, 20.0]})
    >>> d = choose_days(plan([datetime(2026, 1, 3, 9)], 1), set(hist["hour"]))
    >>> seasonal_baseline(hist, d, ["cell"], ["w"])["w"].to_list()
    [15.0]
    """
    j = _past(days).join(history.rename({"hour": "past_hour"}), on="past_hour", how="inner")
    return (
        j.group_by("issued", "horizon", "hour", *keys)
        .agg(*[(pl.col(v).sum() / pl.col("n_days").first()).cast(pl.Float64).alias(v) for v in values])
        .sort("issued", "horizon", *keys)
    )


def pickup_shares(age_s: np.ndarray, delays_s: np.ndarray, horizon: int = HORIZON) -> np.ndarray:
    """Chance that an open request of age ``age_s`` is picked up in each of the next hours.

    ``P(h) = (S(a + (h-1)·3600) - S(a + h·3600)) / S(a)`` with ``S`` the share of
    earlier delays longer than its argument. A request older than every delay seen is
    overdue and expected in the first hour.

    Returns
    -------
    numpy.ndarray
        Shape ``(len(age_s), horizon)``; rows sum to at most 1.

    Examples
    --------
    >>> pickup_shares(np.array([0.0]), np.array([1800.0, 5400.0]), 2).tolist()
    [[0.5, 0.5]]
    """
    age = np.asarray(age_s, dtype=np.float64)
    d = np.sort(np.asarray(delays_s, dtype=np.float64))
    out = np.zeros((age.size, horizon))
    if age.size == 0:
        return out
    if d.size == 0:
        out[:, 0] = 1.0
        return out

    def surv(x):
        return 1.0 - np.searchsorted(d, x, side="right") / d.size

    s0 = surv(age)
    edges = age[:, None] + 3600.0 * np.arange(horizon + 1)[None, :]
    s = surv(edges)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(s0[:, None] > 0, (s[:, :-1] - s[:, 1:]) / s0[:, None], 0.0)
    out[s0 <= 0, 0] = 1.0
    return out


def pickup_pipeline(
    open_requests: pl.DataFrame, delays_s: np.ndarray, horizon: int = HORIZON
) -> pl.DataFrame:
    """Expected pickups per cell and hour from the open requests of each issue time.

    Parameters
    ----------
    open_requests : polars.DataFrame
        ``issued, cell, branch_id, age_s``.

    Returns
    -------
    polars.DataFrame
        ``issued, horizon, cell, branch_id, pickups`` (expected counts).

    Examples
    --------
    Two new requests in one cell; earlier pickups took half an hour or an hour and a half:

    >>> o = pl.DataFrame({"issued": [datetime(2026, 1, 15, 9)] * 2, "cell": [5, 5],
    ...                   "branch_id": ["b", "b"], "age_s": [0.0, 0.0]})
    >>> pickup_pipeline(o, np.array([1800.0, 5400.0]), 2).select("horizon", "pickups").rows()
    [(1, 1.0), (2, 1.0)]
    """
    p = pickup_shares(open_requests["age_s"].to_numpy(), delays_s, horizon)
    n = len(open_requests)
    # each request's row once per hour ahead, gathered by index (no Python objects)
    long = (
        open_requests.select(
            pl.col("issued").cast(pl.Datetime("us")),
            pl.col("cell").cast(pl.UInt64),
            pl.col("branch_id").cast(pl.String),
        )[np.repeat(np.arange(n), horizon)]
        .with_columns(
            pl.Series("horizon", np.tile(np.arange(1, horizon + 1), n), dtype=pl.Int64),
            pl.Series("pickups", p.reshape(-1), dtype=pl.Float64),
        )
        .select("issued", "horizon", "cell", "branch_id", "pickups")
    )
    return (
        long.filter(pl.col("pickups") > 0)
        .group_by("issued", "horizon", "cell", "branch_id")
        .agg(pl.col("pickups").sum())
        .sort("issued", "horizon", "cell")
    )


def _usual(frame: pl.DataFrame, days: pl.DataFrame, keys: list[str], value: str) -> pl.DataFrame:
    """Mean over the chosen earlier days of what was known ``horizon`` hours ahead."""
    j = _past(days).join(
        frame.rename({"issued": "past_issued", "hour": "past_hour"}),
        on=["past_issued", "past_hour"],
        how="inner",
    )
    return j.group_by("issued", "horizon", "hour", *keys).agg(
        (pl.col(value).sum() / pl.col("n_days").first()).cast(pl.Float64).alias(value)
    )


_KEY = ["issued", "horizon", "hour"]


def on_top(pipe: pl.Expr, usual: pl.Expr, base: pl.Expr) -> pl.Expr:
    """``pipe * min(1, base / usual) + max(base - usual, 0)``.

    While the pipeline usually announces less than the hour brings (``usual <= base``)
    this is the additive rule, pipeline plus the usual rest. When it usually announces
    more (parcels scanned for a branch but delivered across its border, plans that
    slip), the pipeline is scaled by how much of it usually lands in the hour. Both
    give the baseline back when the pipeline is as usual.

    Examples
    --------
    10 parcels announced where 10 usually are and the baseline is 15: 10 + 5 on top;
    where 20 usually are, half of the announced usually lands: 10 x 15/20.

    >>> f = pl.DataFrame({"pipe": [10.0, 10.0], "usual": [10.0, 20.0], "base": [15.0, 15.0]})
    >>> f.select(on_top(pl.col("pipe"), pl.col("usual"), pl.col("base")))["pipe"].to_list()
    [15.0, 7.5]
    """
    scale = pl.when(usual > base).then(base / usual).otherwise(1.0)
    return pipe * scale + (base - usual).clip(lower_bound=0.0)


def combine(
    targets: pl.DataFrame,
    base: pl.DataFrame,
    pipe_deliveries: pl.DataFrame,
    usual_deliveries: pl.DataFrame,
    pipe_pickups: pl.DataFrame,
    usual_pickups: pl.DataFrame,
) -> pl.DataFrame:
    """Pipeline plus what usually comes on top of it, per (target, cell, branch).

    Parameters
    ----------
    targets : polars.DataFrame
        ``issued, horizon, hour`` (:func:`plan`).
    base : polars.DataFrame
        Baseline per target and ``cell, branch_id``: ``pickups, deliveries, couriers,
        pings`` (:func:`seasonal_baseline`).
    pipe_deliveries, usual_deliveries : polars.DataFrame
        Per target and ``branch_id``: ``parcels`` now and usually at this lead.
    pipe_pickups : polars.DataFrame
        Per target and ``cell, branch_id``: expected ``pickups`` from open requests.
    usual_pickups : polars.DataFrame
        Per target and ``cell, branch_id``: ``pickups`` usually announced at this lead.

    Returns
    -------
    polars.DataFrame
        ``issued, horizon, hour, cell, branch_id, pickups, deliveries, couriers, pings,
        baseline, pipeline``: forecast counts, the baseline workload and the part of
        the forecast already announced.
    """
    base = base.join(targets, on=_KEY, how="semi")
    share = base.with_columns(
        (pl.col("deliveries") / pl.col("deliveries").sum().over(*_KEY, "branch_id"))
        .fill_nan(None)
        .alias("share")
    )
    branch = (
        pipe_deliveries.rename({"parcels": "pd"})
        .join(usual_deliveries.rename({"parcels": "ud"}), on=[*_KEY, "branch_id"], how="full", coalesce=True)
        .join(targets, on=_KEY, how="semi")
    )
    cells = share.join(branch, on=[*_KEY, "branch_id"], how="left").with_columns(
        (pl.col("share").fill_null(0.0) * pl.col("pd").fill_null(0.0)).alias("pd"),
        (pl.col("share").fill_null(0.0) * pl.col("ud").fill_null(0.0)).alias("ud"),
    )
    pick = (
        pipe_pickups.rename({"pickups": "pp"})
        .join(
            usual_pickups.rename({"pickups": "up"}),
            on=[*_KEY, "cell", "branch_id"],
            how="full",
            coalesce=True,
        )
        .join(targets, on=_KEY, how="semi")
    )
    out = cells.join(pick, on=[*_KEY, "cell", "branch_id"], how="full", coalesce=True)
    z = {
        c: pl.col(c).fill_null(0.0).cast(pl.Float64)
        for c in ("pickups", "deliveries", "couriers", "pings", "pd", "ud", "pp", "up")
    }
    return out.select(
        *_KEY,
        "cell",
        "branch_id",
        on_top(z["pp"], z["up"], z["pickups"]).alias("pickups"),
        on_top(z["pd"], z["ud"], z["deliveries"]).alias("deliveries"),
        z["couriers"].alias("couriers"),
        z["pings"].alias("pings"),
        (z["pickups"] + z["deliveries"]).alias("baseline"),
        (z["pp"] + z["pd"]).alias("pipeline"),
        z["pp"].alias("pipeline_pickups"),
    ).sort(*_KEY, "cell", "branch_id")


def by_destination(
    targets: pl.DataFrame,
    days: pl.DataFrame,
    dest_history: pl.DataFrame,
    pipe_deliveries: pl.DataFrame,
    usual_deliveries: pl.DataFrame,
) -> pl.DataFrame:
    """Deliveries per cell from the branches parcels are scanned for, not where they land.

    A parcel scanned for a branch is delivered by that branch's couriers, often across
    its border. From earlier days, each destination branch has a baseline per hour and a
    spread over the cells its parcels were delivered in; the branch's forecast
    (:func:`on_top` of its pipeline) is spread the same way.

    Parameters
    ----------
    dest_history : polars.DataFrame
        ``dest_branch_id, branch_id, hour, cell, parcels`` (and optionally
        ``dest_total`` and ``hour_total``: all deliveries of the destination, and of the
        hour, some outside the frame):
        deliveries of earlier days by destination branch, delivery hour, cell and the
        cell's own branch.

    Returns
    -------
    polars.DataFrame
        ``issued, horizon, hour, cell, branch_id, deliveries, pipeline_deliveries``.
    """
    hour_total = (
        (pl.col("hour_total").first() if "hour_total" in dest_history.columns else pl.col("parcels").sum())
        .cast(pl.Float64)
        .alias("parcels")
    )
    per_hour = dest_history.group_by("hour", "dest_branch_id").agg(hour_total)
    base = seasonal_baseline(per_hour, days, ["dest_branch_id"], ["parcels"]).rename({"parcels": "bd"})
    total = (
        pl.col("dest_total").first() if "dest_total" in dest_history.columns else pl.col("parcels").sum()
    ).alias("total")
    tot = dest_history.group_by("dest_branch_id").agg(total)
    spread = (
        dest_history.group_by("dest_branch_id", "cell", "branch_id")
        .agg(pl.col("parcels").sum())
        .join(tot, on="dest_branch_id")
        .with_columns((pl.col("parcels") / pl.col("total")).alias("share"))
        .drop("parcels", "total")
    )
    b = (
        base.join(
            pipe_deliveries.rename({"branch_id": "dest_branch_id", "parcels": "pd"}),
            on=[*_KEY, "dest_branch_id"],
            how="full",
            coalesce=True,
        )
        .join(
            usual_deliveries.rename({"branch_id": "dest_branch_id", "parcels": "ud"}),
            on=[*_KEY, "dest_branch_id"],
            how="full",
            coalesce=True,
        )
        .join(targets, on=_KEY, how="semi")
        .with_columns(pl.col("bd", "pd", "ud").fill_null(0.0).cast(pl.Float64))
    )
    b = b.with_columns(
        on_top(pl.col("pd"), pl.col("ud"), pl.col("bd")).alias("f"),
        (
            pl.col("pd")
            * pl.when(pl.col("ud") > pl.col("bd")).then(pl.col("bd") / pl.col("ud")).otherwise(1.0)
        ).alias("pk"),
    )
    cells = b.join(spread, on="dest_branch_id", how="inner")
    return cells.group_by(*_KEY, "cell", "branch_id").agg(
        (pl.col("f") * pl.col("share")).sum().alias("deliveries"),
        (pl.col("pk") * pl.col("share")).sum().alias("pipeline_deliveries"),
    )


def forecast(inputs: dict, params: Params = PARAMS) -> pl.DataFrame:
    """Forecast per (target, cell, branch) from the frames of
    ``views.forecast.forecast_inputs``.

    Returns the frame of :func:`combine` plus ``alert_baseline`` (the alerts' baseline
    of the hour: mean of the previous days with data, no weekday rule).
    """
    targets = plan(inputs["issued"], params.horizon)
    hist = inputs["history"]
    present = set(inputs["present"])
    days = choose_days(targets, present, params)
    keys = ["cell", "branch_id"]
    base = seasonal_baseline(hist, days, keys, ["pickups", "deliveries", "couriers", "pings"])
    with_h = inputs["pipeline"].with_columns(
        ((pl.col("hour") - pl.col("issued")).dt.total_hours() + 1).cast(pl.Int64).alias("horizon")
    )
    pipe_d = with_h.join(targets, on=_KEY, how="semi")
    past_d = inputs["pipeline_past"].select("issued", "hour", "branch_id", "parcels")
    usual_d = _usual(past_d, days, ["branch_id"], "parcels")
    pp = pickup_pipeline(inputs["open_pickups"], inputs["delays"], params.horizon).join(
        targets, on=["issued", "horizon"], how="left"
    )
    usual_p = _usual(inputs["known_pickups"], days, keys, "parcels").rename({"parcels": "pickups"})
    out = combine(targets, base, pipe_d, usual_d, pp, usual_p)
    dest = inputs.get("dest_history")
    if dest is not None and not dest.is_empty():
        d = by_destination(targets, days, dest, pipe_d, usual_d)
        out = (
            out.drop("deliveries")
            .join(d, on=[*_KEY, "cell", "branch_id"], how="full", coalesce=True)
            .with_columns(
                pl.col(
                    "pickups",
                    "deliveries",
                    "couriers",
                    "pings",
                    "baseline",
                    "pipeline_pickups",
                    "pipeline_deliveries",
                ).fill_null(0.0)
            )
            .with_columns((pl.col("pipeline_pickups") + pl.col("pipeline_deliveries")).alias("pipeline"))
            .drop("pipeline_deliveries")
        )
    out = out.drop("pipeline_pickups")
    alert_days = choose_days(targets, present, params, weekday=False)
    hist_w = (
        hist.with_columns((pl.col("pickups") + pl.col("deliveries")).cast(pl.Float64).alias("w"))
        .group_by("hour", "cell")
        .agg(pl.col("w").sum())
    )
    ab = seasonal_baseline(hist_w, alert_days, ["cell"], ["w"]).rename({"w": "alert_baseline"})
    return out.join(ab, on=[*_KEY, "cell"], how="left")


def baseline_only(fc: pl.DataFrame) -> pl.DataFrame:
    """The baseline-only forecast in the same shape (the backtest's reference).

    The baseline's split between pickups and deliveries is not kept, so the whole
    baseline workload is put under ``deliveries``.
    """
    return fc.with_columns(
        pl.lit(0.0).alias("pickups"), pl.col("baseline").alias("deliveries"), pl.lit(0.0).alias("pipeline")
    )


def cells_of(fc: pl.DataFrame) -> pl.DataFrame:
    """Per (target, cell): counts summed over the branches sharing the cell."""
    return (
        fc.group_by(*_KEY, "cell")
        .agg(
            pl.col("pickups", "deliveries", "couriers", "pings", "baseline", "pipeline").sum(),
            pl.col("alert_baseline").first()
            if "alert_baseline" in fc.columns
            else pl.lit(None).alias("alert_baseline"),
            # ties go to the first branch id: the same answer on every run
            pl.col("branch_id")
            .sort_by([pl.col("deliveries") + pl.col("pickups"), "branch_id"], descending=[True, False])
            .first(),
        )
        .sort(*_KEY, "cell")
    )


def load_and_flags(
    cells: pl.DataFrame,
    rates: dict,
    parcels_per_courier_hour: float,
    ratio_threshold: float,
    baseline_factor: float,
    min_workload: float,
) -> pl.DataFrame:
    """Load ratio and over-load flags of each forecast hour, with the dashboard's rules.

    Parameters
    ----------
    cells : polars.DataFrame
        :func:`cells_of` output.
    rates : dict
        Target hour -> forecast pings per actor per hour (None: distinct couriers as is).

    Returns
    -------
    polars.DataFrame
        ``cells`` plus ``workload, capacity, load_ratio, over, rule, excess``.
    """
    parts = []
    # flag_cells reads the alerts' baseline from ``baseline``: swap names around the call.
    swapped = cells.rename({"baseline": "seasonal_baseline", "alert_baseline": "baseline"})
    for (_t0, _h, t), g in swapped.group_by(*_KEY, maintain_order=True):
        lr = kpis_mod.load_ratio(g, parcels_per_courier_hour, rates.get(t))
        parts.append(
            alerts_mod.flag_cells(lr, ratio_threshold, baseline_factor, min_workload).rename(
                {"baseline": "alert_baseline", "seasonal_baseline": "baseline"}
            )
        )
    if not parts:
        return cells.with_columns(
            *(
                pl.lit(None, dtype=pl.Float64).alias(c)
                for c in ("workload", "capacity", "load_ratio", "excess")
            ),
            pl.lit(False).alias("over"),
            pl.lit(None, dtype=pl.String).alias("rule"),
        )
    return pl.concat(parts).sort(*_KEY, "cell")


def nodes_of(
    fc: pl.DataFrame,
    branch_couriers: pl.DataFrame,
    parcels_per_courier_hour: float,
    closure: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Forecast per node: workload, forecast couriers present, load ratio.

    Parameters
    ----------
    branch_couriers : polars.DataFrame
        Per target and ``branch_id``: baseline distinct ``couriers`` of the branch.
    closure : polars.DataFrame, optional
        ``ancestor_id, branch_id`` (``node_branches`` inside the scope): rolls the
        branches up to every node holding them. Without it, branches only. Couriers of a
        node are the sum over its branches (a courier works in one branch).

    Returns
    -------
    polars.DataFrame
        ``issued, horizon, hour, node_id, workload, baseline, pipeline, couriers,
        capacity, load_ratio``.
    """
    w = fc.group_by(*_KEY, "branch_id").agg(
        (pl.col("pickups") + pl.col("deliveries")).sum().alias("workload"),
        pl.col("baseline").sum(),
        pl.col("pipeline").sum(),
    )
    out = w.join(branch_couriers, on=[*_KEY, "branch_id"], how="full", coalesce=True).with_columns(
        pl.col("workload", "baseline", "pipeline", "couriers").fill_null(0.0)
    )
    if closure is None:
        out = out.rename({"branch_id": "node_id"})
    else:
        out = (
            out.join(closure.rename({"ancestor_id": "node_id"}), on="branch_id")
            .group_by(*_KEY, "node_id")
            .agg(pl.col("workload", "baseline", "pipeline", "couriers").sum())
        )
    cap = pl.col("couriers") * parcels_per_courier_hour
    return (
        out.with_columns(
            cap.alias("capacity"),
            pl.when(cap > 0).then(pl.col("workload") / cap).otherwise(None).alias("load_ratio"),
        )
        .select(*_KEY, "node_id", "workload", "baseline", "pipeline", "couriers", "capacity", "load_ratio")
        .sort(*_KEY, "node_id")
    )


# -- predicted alerts ---------------------------------------------------------------------------
def _zone_branch(zones: pl.DataFrame, cells: pl.DataFrame) -> pl.Series:
    """Branch of each zone: the branch of its most loaded cell."""
    member = zones.select("zone_id", pl.col("cells").alias("cell")).explode("cell")
    best = (
        member.join(cells.select(pl.col("cell").cast(pl.UInt64), "branch_id", "workload"), on="cell")
        .group_by("zone_id")
        .agg(pl.col("branch_id").sort_by(["workload", "cell"], descending=[True, False]).first())
    )
    return zones.select("zone_id").join(best, on="zone_id", how="left", maintain_order="left")["branch_id"]


def predicted_zones(flagged: pl.DataFrame) -> pl.DataFrame:
    """Zones of every forecast hour: :data:`ops.alerts.ZONE_COLUMNS` plus ``branch_id``
    (that of the zone's most loaded cell), ``issued, horizon, hour``."""
    parts = []
    for (t0, h, t), g in flagged.group_by(*_KEY, maintain_order=True):
        z = alerts_mod.zones(g)
        if len(z):
            z = z.with_columns(_zone_branch(z, g))
            parts.append(
                z.with_columns(
                    pl.lit(t0).cast(pl.Datetime("us")).alias("issued"),
                    pl.lit(h).cast(pl.Int64).alias("horizon"),
                    pl.lit(t).cast(pl.Datetime("us")).alias("hour"),
                )
            )
    if not parts:
        return alerts_mod.zones(flagged.head(0)).with_columns(
            pl.lit(None, dtype=pl.String).alias("branch_id"),
            pl.lit(None, dtype=pl.Datetime("us")).alias("issued"),
            pl.lit(None, dtype=pl.Int64).alias("horizon"),
            pl.lit(None, dtype=pl.Datetime("us")).alias("hour"),
        )
    return pl.concat(parts)


def predicted_alerts(zones: pl.DataFrame) -> pl.DataFrame:
    """One alert per predicted zone of one issue time, with its expected start.

    Zones of consecutive hours that share cells are the same alert: it starts at the
    first hour it is predicted for. Alerts whose zone is over load now (horizon 1)
    are left to the current alerts only if the caller filters ``start > issued``.

    Returns
    -------
    polars.DataFrame
        ``issued, alert_id, branch_id, start, end, hours, n_cells, peak_ratio, workload,
        excess, lat, lng, cells, rule``; ``end`` is the start of the last predicted hour.
    """
    cols = {
        "issued": pl.Datetime("us"),
        "alert_id": pl.Int64,
        "branch_id": pl.String,
        "start": pl.Datetime("us"),
        "end": pl.Datetime("us"),
        "hours": pl.Int64,
        "n_cells": pl.Int64,
        "peak_ratio": pl.Float64,
        "workload": pl.Float64,
        "excess": pl.Float64,
        "lat": pl.Float64,
        "lng": pl.Float64,
        "cells": pl.List(pl.UInt64),
        "rule": pl.String,
    }
    rows = []
    for (t0,), g in zones.sort("issued", "hour", "zone_id").group_by("issued", maintain_order=True):
        alerts: list[dict] = []
        for z in g.iter_rows(named=True):
            cells = set(int(c) for c in z["cells"])
            match = next((a for a in alerts if a["_cells"] & cells and a["end"] < z["hour"]), None)
            if match is None:
                alerts.append(
                    {
                        "issued": t0,
                        "branch_id": z["branch_id"],
                        "start": z["hour"],
                        "end": z["hour"],
                        "hours": 1,
                        "peak_ratio": z["peak_ratio"],
                        "workload": z["workload"],
                        "excess": z["excess"],
                        "lat": z["lat"],
                        "lng": z["lng"],
                        "rule": z["rule"],
                        "_cells": cells,
                    }
                )
            else:
                match["_cells"] |= cells
                match["end"] = z["hour"]
                match["hours"] += 1
                match["peak_ratio"] = max(match["peak_ratio"], z["peak_ratio"])
                if z["excess"] > match["excess"]:
                    match.update(
                        workload=z["workload"],
                        excess=z["excess"],
                        lat=z["lat"],
                        lng=z["lng"],
                        rule=z["rule"],
                        branch_id=z["branch_id"],
                    )
        for a in alerts:
            c = sorted(a.pop("_cells"))
            rows.append({**a, "n_cells": len(c), "cells": c})
    if not rows:
        return pl.DataFrame(schema=cols)
    out = pl.DataFrame(rows).with_columns(pl.col("cells").cast(pl.List(pl.UInt64)))
    out = out.sort(["issued", "start", "excess"], descending=[False, False, True]).with_columns(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("issued").alias("alert_id")
    )
    return out.select(list(cols)).cast({k: v for k, v in cols.items() if k != "cells"})


def resolve(alerts: pl.DataFrame, actual_over: dict, newest_complete: datetime | None) -> pl.DataFrame:
    """Mark each predicted alert confirmed, missed or pending.

    Parameters
    ----------
    alerts : polars.DataFrame
        :func:`predicted_alerts` output.
    actual_over : dict
        Hour -> set of cells actually over load in that hour (same resolution).
    newest_complete : datetime or None
        Start of the newest hour whose data is complete; later hours are pending.

    Returns
    -------
    polars.DataFrame
        ``alerts`` plus ``status`` and ``confirmed_at`` (the first hour of the alert's
        window in which one of its cells was really over load).

    Examples
    --------
    >>> a = pl.DataFrame({"start": [datetime(2026, 1, 1, 9)], "end": [datetime(2026, 1, 1, 9)],
    ...                   "cells": [[5]]})
    >>> resolve(a, {datetime(2026, 1, 1, 9): {5}}, datetime(2026, 1, 1, 9))["status"].to_list()
    ['confirmed']
    """
    status, when = [], []
    for start, end, cells in alerts.select("start", "end", "cells").iter_rows():
        cs = set(int(c) for c in cells)
        hit, t = None, start
        while t <= end:
            if cs & actual_over.get(t, set()):
                hit = t
                break
            t += HOUR
        status.append(
            "confirmed"
            if hit is not None
            else ("pending" if newest_complete is None or end > newest_complete else "missed")
        )
        when.append(hit)
    return alerts.with_columns(
        pl.Series("status", status, dtype=pl.String), pl.Series("confirmed_at", when, dtype=pl.Datetime("us"))
    )


def wape(forecast_values: np.ndarray, actual_values: np.ndarray) -> float | None:
    """Weighted absolute percentage error ``sum|F - A| / sum A`` (None when nothing happened).

    Examples
    --------
    >>> wape(np.array([8.0, 12.0]), np.array([10.0, 10.0]))
    0.2
    """
    a = np.asarray(actual_values, dtype=np.float64)
    f = np.asarray(forecast_values, dtype=np.float64)
    total = a.sum()
    return None if total <= 0 else float(np.abs(f - a).sum() / total)


def ping_rates(rates: pl.DataFrame, days: pl.DataFrame) -> dict:
    """Target hour -> forecast pings per actor per hour (scope-wide rows of ``rates``)."""
    scope_rows = rates.filter(pl.col("branch_id").is_null()).select("hour", "pings", "actors")
    b = seasonal_baseline(scope_rows, days, [], ["pings", "actors"])
    return {t: (p / a if a else None) for t, p, a in b.select("hour", "pings", "actors").iter_rows()}


def branch_couriers(rates: pl.DataFrame, days: pl.DataFrame) -> pl.DataFrame:
    """Per target and branch: the baseline of distinct couriers present."""
    rows = rates.filter(pl.col("branch_id").is_not_null()).select("hour", "branch_id", "couriers")
    return seasonal_baseline(rows, days, ["branch_id"], ["couriers"])


def predict(
    inputs: dict,
    parcels_per_courier_hour: float,
    ratio_threshold: float,
    baseline_factor: float,
    min_workload: float = 0.0,
    params: Params = PARAMS,
    with_baseline_only: bool = False,
) -> dict:
    """Forecast, load ratio, flags, zones and predicted alerts in one call.

    Parameters
    ----------
    inputs : dict
        ``views.forecast.forecast_inputs`` output.
    parcels_per_courier_hour, ratio_threshold, baseline_factor, min_workload : float
        The dashboard's settings (``config.Settings``) and alert floor.

    Returns
    -------
    dict
        ``cells`` (flagged cells per target), ``nodes`` (per node inside the scope:
        branches and the nodes above them, see :func:`nodes_of`), ``zones``
        (per target hour), ``alerts`` (:func:`predicted_alerts`) and, with
        ``with_baseline_only``, ``baseline_cells`` flagged the same way; with the
        reserves in ``inputs``, ``reserves`` (idle couriers and vans expected at each
        outlet per target, ``ops.dispatch.reserve_forecast``) and ``mode_mix``.
    """
    fc = forecast(inputs, params)
    targets = plan(inputs["issued"], params.horizon)
    days = choose_days(targets, set(inputs["present"]), params)
    rates = ping_rates(inputs["rates"], days)
    args = (parcels_per_courier_hour, ratio_threshold, baseline_factor, min_workload)
    flagged = load_and_flags(cells_of(fc), rates, *args)
    # Without earlier days there is no capacity to compare with: no prediction.
    known = days.select("issued", "horizon").unique().with_columns(pl.lit(True).alias("_known"))
    flagged = (
        flagged.join(known, on=["issued", "horizon"], how="left", maintain_order="left")
        .with_columns((pl.col("over") & pl.col("_known").fill_null(False)).alias("over"))
        .drop("_known")
    )
    zones = predicted_zones(flagged)
    out = {
        "forecast": fc,
        "cells": flagged,
        "rates": rates,
        "nodes": nodes_of(
            fc, branch_couriers(inputs["rates"], days), parcels_per_courier_hour, inputs.get("closure")
        ),
        "zones": zones,
        "alerts": predicted_alerts(zones),
    }
    if "reserve_roster" in inputs:
        from ops import dispatch

        out["reserves"] = dispatch.reserve_forecast(inputs["reserve_roster"], inputs["reserve_seen"], days)
        out["mode_mix"] = inputs.get("mode_mix")
    if with_baseline_only:
        out["baseline_cells"] = load_and_flags(cells_of(baseline_only(fc)), rates, *args)
    return out
