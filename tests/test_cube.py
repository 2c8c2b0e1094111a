"""The cube equals an independent pandas computation on the same raw rows."""

from datetime import datetime

import pandas as pd
import pytest
from h3.api import basic_int as h3i
from polars.testing import assert_frame_equal

from data.store.database import ScopeError

START, END = datetime(2000, 1, 1), datetime(2100, 1, 1)


@pytest.fixture(scope="module")
def raw(small_store):
    pings = small_store.sql("SELECT ts, cell, branch_id, courier_id, vehicle_id FROM pings").to_pandas()
    events = small_store.sql("SELECT ts, cell, branch_id, kind, promised_at FROM parcel_events").to_pandas()
    for f in (pings, events):
        f["hour"] = f["ts"].dt.floor("h")
        f["cell"] = f["cell"].astype("uint64")
    nodes = small_store.nodes().to_pandas()
    return pings, events, nodes


def _expected(pings, events, keys):
    p = pings.groupby(keys).agg(
        pings=("ts", "size"), couriers=("courier_id", "nunique"), vehicles=("vehicle_id", "nunique")
    )
    e = (
        events.assign(
            pickups=events["kind"].eq("pickup"),
            deliveries=events["kind"].eq("delivered"),
            on_time=events["kind"].eq("delivered") & (events["ts"] <= events["promised_at"]),
            late=events["kind"].eq("delivered") & (events["ts"] > events["promised_at"]),
            scans=1,
        )
        .groupby(keys)[["pickups", "deliveries", "on_time", "late", "scans"]]
        .sum()
    )
    out = p.join(e, how="outer").fillna(0).astype("int64").sort_index()
    return out[["pings", "couriers", "vehicles", "pickups", "deliveries", "on_time", "late", "scans"]]


def _got(frame, keys):
    got = frame.to_pandas().set_index(keys).sort_index().astype("int64")
    return got[["pings", "couriers", "vehicles", "pickups", "deliveries", "on_time", "late", "scans"]]


def test_hourly_res9_cube_equals_pandas(small_store, raw):
    pings, events, _ = raw
    got = _got(small_store.cube("hq", START, END, res=9), ["hour", "cell"])
    want = _expected(pings, events, ["hour", "cell"])
    pd.testing.assert_frame_equal(got, want, check_names=False)


@pytest.mark.parametrize("res", [7, 5])
def test_rollup_to_coarser_cells_recounts_distinct(small_store, raw, res):
    pings, events, _ = raw
    for f in (pings, events):
        f[f"c{res}"] = [h3i.cell_to_parent(int(c), res) for c in f["cell"]]
        f[f"c{res}"] = f[f"c{res}"].astype("uint64")
    got = _got(small_store.cube("hq", START, END, res=res).rename({"cell": f"c{res}"}), ["hour", f"c{res}"])
    want = _expected(pings, events, ["hour", f"c{res}"])
    pd.testing.assert_frame_equal(got, want, check_names=False)
    # Summing the finer distinct counts would overcount: the store must not do that.
    summed = small_store.cube("hq", START, END, res=9)["couriers"].sum()
    assert got["couriers"].sum() < summed


def test_whole_period_per_node_up_the_tree(small_store, raw):
    pings, events, nodes = raw
    region_of = dict(zip(nodes["node_id"], nodes["region_id"]))
    for f in (pings, events):
        f["region"] = f["branch_id"].map(region_of)
    south = set(nodes.loc[nodes["parent_id"] == "div-south", "node_id"])
    want = _expected(pings[pings["region"].isin(south)], events[events["region"].isin(south)], ["region"])
    got = small_store.node_figures("div-south", START, END)
    got = got.filter(got["scans"] > 0)
    got = _got(got.rename({"node_id": "region"}).drop("name"), ["region"])
    pd.testing.assert_frame_equal(got, want, check_names=False)
    # every branch of a region: distinct couriers of the region <= sum over its branches
    branches = small_store.node_figures("r-440300", START, END)
    region = got.loc["r-440300"]
    assert branches["pings"].sum() == region["pings"]
    assert branches["couriers"].sum() >= region["couriers"]


def test_scope_limits_the_rows(small_store):
    everything = small_store.cube("hq", START, END, res=7, per_hour=False)
    shenzhen = small_store.cube("r-440300", START, END, res=7, per_hour=False)
    nanshan = small_store.cube("b-440305", START, END, res=9, per_hour=False)
    assert 0 < shenzhen["scans"].sum() < everything["scans"].sum()
    assert 0 < nanshan["scans"].sum() < shenzhen["scans"].sum()
    elsewhere = small_store.cube("r-110000", START, END, res=7)  # Beijing is not in the small demo
    assert elsewhere.is_empty()
    with pytest.raises(ScopeError):
        small_store.cube("r-999999", START, END)
    with pytest.raises(ScopeError):
        small_store.cube("hq' OR 1=1 --", START, END)


def test_scope_check_follows_the_saved_tree(tmp_path):
    from data.store.database import Store
    from geo.hierarchy import load_tree

    with Store(tmp_path / "empty.duckdb") as store:
        with pytest.raises(ScopeError):
            store.check_scope("hq")  # no tree yet
        tree = load_tree()
        store.save_tree(tree[tree["node_id"] != "b-440305"])
        store.check_scope("hq")
        with pytest.raises(ScopeError):
            store.check_scope("b-440305")
        store.save_tree(tree)  # the kept ids are dropped with the old tree
        store.check_scope("b-440305")


def test_pings_and_events_carry_cells_and_branches(small_store):
    sample = small_store.sql("SELECT lat, lng, cell, branch_id FROM pings USING SAMPLE 500 ROWS").to_pandas()
    want = [h3i.latlng_to_cell(a, b, 9) for a, b in zip(sample["lat"], sample["lng"])]
    assert sample["cell"].astype("uint64").tolist() == want
    assert sample["branch_id"].str.startswith("b-").all()
    assert (
        small_store.scalar("SELECT count(*) FROM parcel_events WHERE cell IS NULL OR branch_id IS NULL") == 0
    )


def _actor_rows(rng, ts, corner, size, branch, couriers, vans, prefix):
    """Rows at ``ts`` in a square of ``size`` degrees from ``corner``, each by one of
    ``couriers`` couriers or ``vans`` vans (ids ``{prefix}c-N`` / ``{prefix}v-N``)."""
    import polars as pl

    from geo.cells import latlng_to_cells

    n = len(ts)
    lat, lng = corner[0] + rng.uniform(0, size, n), corner[1] + rng.uniform(0, size, n)
    actor = rng.integers(0, couriers + vans, n)
    return pl.DataFrame(
        {
            "ts": ts,
            "cell": latlng_to_cells(lat, lng),
            "branch_id": branch,
            "courier_id": [f"{prefix}c-{a}" if a < couriers else None for a in actor],
            "vehicle_id": [f"{prefix}v-{a}" if a >= couriers else None for a in actor],
        }
    )


@pytest.mark.parametrize("years", [0, 40])  # one day: packed pairs; 40 years: the pair fallback
def test_cube_share_of_a_batch_equals_pandas(years):
    # cube_parts packs hour and cell (and, for presence, the actor) into integers: the
    # counts and distinct actors must be what a plain group-by on the columns gives,
    # including hours before 1970.
    import numpy as np
    import polars as pl

    from data.store.database import cube_parts

    # Category codes are shared across the process: with 100,000 held, an actor code
    # needs 17 bits, and 40 years of hours no longer fit beside it (the fallback).
    held = pl.Series([f"x-{i}" for i in range(100_000)]).cast(pl.Categorical)
    rng = np.random.default_rng(5)
    n = 5_000
    base = np.datetime64("2026-11-20T00:00:00", "us")
    ts = base + rng.integers(0, 86_400, n).astype("timedelta64[s]")
    if years:
        ts[: n // 2] -= np.timedelta64(years * 365 * 86_400, "s")  # back to 1986, and some to 1969
        ts[:10] = np.datetime64("1969-12-31T22:30:00", "us")
    rows = _actor_rows(rng, ts, (22.5, 113.9), 0.05, "b-1", couriers=50, vans=10, prefix="")
    delta, presence = cube_parts("pings", rows)
    frame = rows.to_pandas()
    frame["hour"] = (frame["ts"].astype("int64") // 3_600_000_000).astype("int32")
    want = frame.groupby(["hour", "cell"]).size().rename("pings").reset_index()
    got = delta.to_pandas()[["hour", "cell", "pings"]]
    pd.testing.assert_frame_equal(
        got.sort_values(["hour", "cell"]).reset_index(drop=True), want, check_dtype=False
    )
    frame["actor_id"] = frame["courier_id"].fillna(frame["vehicle_id"])
    want_p = frame[["hour", "cell", "actor_id"]].drop_duplicates().sort_values(["hour", "cell", "actor_id"])
    got_p = presence.with_columns(pl.col("actor_id").cast(pl.String)).to_pandas()
    assert (got_p["is_vehicle"] == got_p["actor_id"].str.startswith("v-")).all()
    pd.testing.assert_frame_equal(
        got_p[["hour", "cell", "actor_id"]].sort_values(["hour", "cell", "actor_id"]).reset_index(drop=True),
        want_p.reset_index(drop=True),
        check_dtype=False,
    )
    assert len(held) == 100_000


def test_cube_shares_of_batches_fold_to_the_share_of_all_rows():
    # A file's cube share is worked out batch by batch and folded: the fold must give
    # what one share of all its rows gives (sums per cell-hour, distinct actors across
    # batches: an actor seen in a cell-hour in two batches counts once).
    import numpy as np
    import polars as pl

    from data.store.database import CubeShare, cube_share

    rng = np.random.default_rng(11)
    n = 6_000
    base = np.datetime64("2026-11-20T00:00:00", "us")
    ts = base + rng.integers(0, 6 * 3_600, n).astype("timedelta64[s]")
    rows = _actor_rows(rng, ts, (31.2, 121.4), 0.02, "b-310101", couriers=30, vans=10, prefix="fold-")
    whole = cube_share("pings", rows)
    folded = CubeShare.fold([cube_share("pings", rows.slice(i, 1_000)) for i in range(0, n, 1_000)])

    def frames(share):
        delta, presence = share.unpacked()
        counts = share.actor_counts().sort("key")
        return (
            delta.sort("hour", "cell"),
            presence.with_columns(pl.col("actor_id").cast(pl.String)).sort("hour", "cell", "actor_id"),
            counts,
        )

    for got, want in zip(frames(folded), frames(whole), strict=True):
        assert_frame_equal(got, want)
    delta, presence = whole.unpacked()
    assert delta["pings"].sum() == n
    assert presence.height < n  # actors were seen in the same cell-hour more than once
