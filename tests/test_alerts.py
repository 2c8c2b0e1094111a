"""Peak-load zones on synthetic grids (h3 as the reference for neighbours) and on the
small demo against its injected surges."""

from datetime import timedelta

import h3
import numpy as np
import polars as pl
import pytest

from ops import alerts

CENTRE = h3.latlng_to_cell(22.54, 114.05, 8)


def _i(c):
    return h3.str_to_int(c)


def _frame(loads: dict, couriers: dict | None = None, baseline: dict | None = None):
    """One row per cell: workload given, load ratio = workload / (couriers x 12)."""
    cells = list(loads)
    cour = [(couriers or {}).get(c, 1) for c in cells]
    work = [float(loads[c]) for c in cells]
    cap = [max(k, 1) * 12.0 for k in cour]
    f = pl.DataFrame(
        {
            "cell": pl.Series([_i(c) for c in cells], dtype=pl.UInt64),
            "workload": work,
            "couriers": cour,
            "capacity": cap,
            "load_ratio": [w / c for w, c in zip(work, cap, strict=True)],
        }
    )
    if baseline is not None:
        f = f.with_columns(pl.Series("baseline", [baseline.get(c) for c in cells], dtype=pl.Float64))
    return f


def test_cluster_joined_isolated_cell_alone_quiet_cells_ignored():
    ring = list(h3.grid_ring(CENTRE, 1))
    far = h3.grid_ring(CENTRE, 5)[0]
    loads = {CENTRE: 40, ring[0]: 30, ring[1]: 25, far: 50}
    loads.update({c: 5 for c in ring[2:]})  # neighbours under the threshold
    flagged = alerts.flag_cells(_frame(loads), ratio_threshold=1.5, baseline_factor=2.0)
    z = alerts.zones(flagged)
    assert sorted(z["n_cells"].to_list()) == [1, 3]
    big = z.filter(pl.col("n_cells") == 3).row(0, named=True)
    assert set(big["cells"]) == {_i(CENTRE), _i(ring[0]), _i(ring[1])}
    assert big["workload"] == 95
    assert big["peak_ratio"] == pytest.approx(40 / 12)
    # severity: excess parcels beyond 1.5 x capacity, most severe first
    assert z["zone_id"].to_list() == [1, 2]
    assert z["excess"][0] >= z["excess"][1]
    assert big["rule"] == "ratio"


def test_two_groups_touching_through_a_cell_become_one():
    a, b = CENTRE, h3.grid_ring(CENTRE, 2)[0]
    bridge = next(c for c in h3.grid_ring(CENTRE, 1) if c in set(h3.grid_ring(b, 1)))
    z = alerts.zones(alerts.flag_cells(_frame({a: 40, b: 40}), 1.5, 2.0))
    assert len(z) == 2
    z = alerts.zones(alerts.flag_cells(_frame({a: 40, b: 40, bridge: 40}), 1.5, 2.0))
    assert z["n_cells"].to_list() == [3]


def test_baseline_rule_and_noise_floor():
    ring = list(h3.grid_ring(CENTRE, 1))
    # plenty of couriers (ratio low) but volume three times the usual
    f = _frame(
        {CENTRE: 90, ring[0]: 9}, couriers={CENTRE: 10, ring[0]: 10}, baseline={CENTRE: 30.0, ring[0]: 3.0}
    )
    flagged = alerts.flag_cells(f, 1.5, 2.0, min_workload=10)
    assert flagged.filter(pl.col("over"))["cell"].to_list() == [_i(CENTRE)]
    row = flagged.filter(pl.col("over")).row(0, named=True)
    assert row["rule"] == "baseline" and row["excess"] == pytest.approx(30.0)
    # no history: the baseline rule stays silent
    f2 = f.with_columns(pl.lit(None, dtype=pl.Float64).alias("baseline"))
    assert not alerts.flag_cells(f2, 1.5, 2.0)["over"].any()


def test_no_zone_when_nothing_over():
    z = alerts.zones(alerts.flag_cells(_frame({CENTRE: 3}), 1.5, 2.0))
    assert z.is_empty() and z.columns == alerts.ZONE_COLUMNS


def test_missing_columns_named():
    with pytest.raises(ValueError, match="load_ratio"):
        alerts.flag_cells(pl.DataFrame({"cell": [1], "workload": [1.0], "capacity": [1.0]}), 1.5, 2.0)


def test_since_follows_a_sequence_of_hours():
    c1, c2 = _i(CENTRE), _i(h3.grid_ring(CENTRE, 1)[0])
    hours = ["07", "08", "09", "10"]
    state = {"07": {c1}, "08": set(), "09": {c2}, "10": {c1, c2}}
    assert alerts.since([c1, c2], hours, state) == "09"
    state["08"] = {c1}
    assert alerts.since([c1, c2], hours, state) == "07"
    assert alerts.since([c1], hours, {"10": {c1}}) == "10"


def test_components_union_find():
    labels = alerts.components(5, np.array([0, 1, 3]), np.array([1, 2, 4]))
    assert labels[0] == labels[1] == labels[2] and labels[3] == labels[4] and labels[0] != labels[3]


def test_demo_surges_raise_alerts_at_their_branch_and_hour(small_store):
    from config import Settings
    from views.model import Model

    model = Model(small_store, Settings.from_env())
    surges = small_store.sql("SELECT * FROM demo_surges ORDER BY start_hour")
    assert len(surges) > 0
    for s in surges.iter_rows(named=True):
        mid = s["start_hour"] + (s["end_hour"] - s["start_hour"]) / 2
        mid = mid.replace(minute=0, second=0, microsecond=0)
        loc = model.local(mid)
        region = model.node(s["branch_id"])["parent_id"]
        z = model.zones(region, loc.date().isoformat(), loc.hour)
        assert s["branch_id"] in z["branch_id"].to_list(), (s, z.select("branch_id", "n_cells", "workload"))
        # and the same branch is calm the hour before the surge starts
        before = model.local(s["start_hour"] - timedelta(hours=1))
        zb = model.zones(region, before.date().isoformat(), before.hour)
        assert (
            zb.filter(pl.col("branch_id") == s["branch_id"])["workload"].sum()
            < z.filter(pl.col("branch_id") == s["branch_id"])["workload"].sum()
        )


def test_zone_rule_is_both_when_both_rules_fire_in_it():
    ring = list(h3.grid_ring(CENTRE, 1))
    # centre short of couriers, neighbour over its baseline with plenty of couriers
    f = _frame(
        {CENTRE: 40, ring[0]: 60}, couriers={CENTRE: 1, ring[0]: 10}, baseline={CENTRE: None, ring[0]: 10.0}
    )
    z = alerts.zones(alerts.flag_cells(f, 1.5, 2.0))
    assert z["rule"].to_list() == ["both"] and z["n_cells"].to_list() == [2]
