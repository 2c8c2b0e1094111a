"""Dispatch suggestions on crafted cases (h3 as the reference for neighbours): sources never
give more than they can spare, the worst ratio never rises, distance and scope limits hold;
and the record of accepted and dismissed suggestions."""

from datetime import datetime

import h3
import numpy as np
import polars as pl
import pytest

from data import forecast_queries as fq
from geo import alerts, dispatch

PPH = 12.0
CENTRE = h3.latlng_to_cell(22.54, 114.05, 8)


def _i(c):
    return h3.str_to_int(c)


def _cells(loads: dict, couriers: dict, branch: dict | None = None) -> pl.DataFrame:
    cells = list(loads)
    return pl.DataFrame(
        {
            "cell": pl.Series([_i(c) for c in cells], dtype=pl.UInt64),
            "branch_id": [(branch or {}).get(c, "b-1") for c in cells],
            "workload": [float(loads[c]) for c in cells],
            "capacity": [float(couriers.get(c, 0)) * PPH for c in cells],
        }
    )


def _zones(frame: pl.DataFrame) -> pl.DataFrame:
    f = frame.with_columns(
        (pl.col("workload") / pl.col("capacity")).alias("load_ratio"),
        (pl.col("capacity") / PPH).alias("couriers"),
    )
    return alerts.zones(alerts.flag_cells(f, 1.5, 2.0))


def _worst(frame: pl.DataFrame) -> float:
    return float(dispatch.ratios(frame).max())


def test_solve_prefers_near_sources_and_respects_supply_and_demand():
    x = dispatch.solve(np.array([2, 5]), np.array([4, 1]), np.array([[1.0, 9.0], [2.0, 3.0]]))
    assert (x.sum(axis=1) <= [2, 5]).all() and (x.sum(axis=0) <= [4, 1]).all()
    assert x.sum() == 5  # every demanded courier found
    assert x[0, 0] == 2  # the near source serves the first sink fully
    blocked = dispatch.solve(np.array([3]), np.array([3]), np.array([[1.0]]), allowed=np.array([[False]]))
    assert blocked.sum() == 0


def test_short_supply_goes_to_the_worst_zone_first():
    x = dispatch.solve(np.array([2]), np.array([2, 2]), np.array([[1.0, 1.0]]), weight=np.array([1.2, 2.0]))
    assert x.tolist() == [[0, 2]]


def test_a_zone_is_relieved_from_spare_cells_nearby():
    ring1 = list(h3.grid_ring(CENTRE, 1))
    ring3 = list(h3.grid_ring(CENTRE, 3))
    loads = {CENTRE: 60, ring1[0]: 40}
    couriers = {CENTRE: 2, ring1[0]: 1}
    loads.update({c: 2 for c in ring3[:6]})
    couriers.update({c: 4 for c in ring3[:6]})
    frame = _cells(loads, couriers)
    zones = _zones(frame)
    assert len(zones) == 1
    moves, summary = dispatch.suggest(frame, zones, PPH, dispatch.Rules(source_res=8))
    assert len(moves) > 0
    spare = {
        int(r["cell"]): r["spare"]
        for r in dispatch.sources(frame, zones, PPH, dispatch.Rules(source_res=8)).iter_rows(named=True)
    }
    sent = moves.group_by("source_cell").agg(pl.col("couriers").sum())
    for cell, n in sent.iter_rows():
        assert n <= spare[int(cell)]
    row = summary.row(0, named=True)
    # 100 parcels and 3 couriers: 9 couriers are needed to reach ratio 1.0
    assert row["need"] == 6 and row["added"] == 6
    assert row["ratio_after"] == pytest.approx(100 / (9 * PPH))
    after = dispatch.apply(frame, moves, zones, PPH)
    assert _worst(after) <= _worst(frame)
    # a source keeps its ratio under the rule's maximum
    src = after.filter(pl.col("cell").is_in([_i(c) for c in ring3[:6]]))
    assert (dispatch.ratios(src) <= dispatch.RULES.source_max_ratio + 1e-9).all()
    assert after["capacity"].sum() == pytest.approx(frame["capacity"].sum())


def test_far_sources_and_other_regions_are_not_used():
    far = list(h3.grid_ring(CENTRE, 12))[0]  # ~ 12 cells away, beyond 6 km of street
    other = list(h3.grid_ring(CENTRE, 2))[0]
    loads = {CENTRE: 60, far: 0, other: 0}
    couriers = {CENTRE: 1, far: 10, other: 10}
    frame = _cells(loads, couriers, branch={other: "b-2"})
    zones = _zones(frame)
    region = {"b-1": "r-1", "b-2": "r-2"}
    moves, summary = dispatch.suggest(frame, zones, PPH, dispatch.Rules(source_res=8), region_of=region)
    assert moves.is_empty() and summary["added"].to_list() == [0]
    region["b-2"] = "r-1"  # same region: the neighbour branch may help
    moves, _ = dispatch.suggest(frame, zones, PPH, dispatch.Rules(source_res=8), region_of=region)
    assert set(moves["source_cell"].to_list()) == {_i(other)}
    moves, _ = dispatch.suggest(
        frame, zones, PPH, dispatch.Rules(source_res=8, within="branch"), region_of=region
    )
    assert moves.is_empty()


def test_random_crafted_cases_never_overdraw_a_source_nor_worsen_the_worst_ratio():
    rng = np.random.default_rng(3)
    disk = [c for k in range(5) for c in (h3.grid_ring(CENTRE, k) if k else [CENTRE])]
    moved = 0
    for case in range(25):
        pick = rng.choice(len(disk), size=25, replace=False)
        cells = [disk[i] for i in pick]
        loads = {c: int(rng.choice([0, 3, 8, 20, 45])) for c in cells}
        couriers = {c: int(rng.integers(0, 6)) for c in cells}
        couriers = {c: max(k, 1) if loads[c] else k for c, k in couriers.items()}
        frame = _cells(loads, couriers)
        zones = _zones(frame)
        for res in (8, 7):
            rules = dispatch.Rules(source_res=res)
            src = dispatch.sources(frame, zones, PPH, rules)
            moves, summary = dispatch.suggest(frame, zones, PPH, rules)
            moved += int(moves["couriers"].sum()) if len(moves) else 0
            if len(moves):
                sent = dict(moves.group_by("source_cell").agg(pl.col("couriers").sum()).iter_rows())
                spare = dict(src.select("cell", "spare").iter_rows())
                assert all(n <= spare[c] for c, n in sent.items()), case
            assert (summary["added"] <= summary["need"]).all()
            assert (summary["ratio_after"] <= summary["ratio"] + 1e-9).all()
            after = dispatch.apply(frame, moves, zones, PPH, rules)
            assert _worst(after) <= _worst(frame) + 1e-9, case
            # every cell that gave couriers stays at or under the sources' limit
            gave = after.join(frame.select("cell", pl.col("capacity").alias("before")), on="cell").filter(
                pl.col("capacity") < pl.col("before") - 1e-9
            )
            assert (dispatch.ratios(gave) <= rules.source_max_ratio + 1e-9).all()
    assert moved > 0  # the cases do exercise moves


def test_no_zone_no_moves():
    frame = _cells({CENTRE: 5}, {CENTRE: 3})
    moves, summary = dispatch.suggest(frame, _zones(frame), PPH)
    assert moves.is_empty() and summary.is_empty()


def test_decisions_are_recorded_and_read_within_scope(empty_store):
    branches = empty_store.sql(
        "SELECT node_id, region_id FROM nodes WHERE level = 'branch' AND region_id IN "
        "('r-440300', 'r-440100') ORDER BY node_id"
    )
    sz = branches.filter(pl.col("region_id") == "r-440300")["node_id"][0]
    gz = branches.filter(pl.col("region_id") == "r-440100")["node_id"][0]
    hour = datetime(2026, 11, 20, 2)
    fq.record_decision(empty_store, "r-440300", sz, hour, 1, 2, 3, "accepted", 1.5, user="manager")
    fq.record_decision(empty_store, "hq", gz, hour, 4, 5, 1, "dismissed")
    assert len(fq.decisions(empty_store, "hq")) == 2
    mine = fq.decisions(empty_store, "r-440300")
    assert mine["decision"].to_list() == ["accepted"] and mine["couriers"].to_list() == [3]
    assert fq.decisions(empty_store, sz, start=hour, end=datetime(2026, 11, 20, 3))[
        "user_name"
    ].to_list() == ["manager"]
    with pytest.raises(PermissionError):
        fq.record_decision(empty_store, "r-440300", gz, hour, 1, 2, 3, "accepted")
    with pytest.raises(ValueError):
        fq.record_decision(empty_store, "hq", gz, hour, 1, 2, 3, "maybe")


def test_arrow_layer_draws_each_move_with_its_head_and_count():
    import folium

    from layers import dispatch_arrows
    from layers.base import DrawContext

    layer = dispatch_arrows.LAYER
    ring3 = list(h3.grid_ring(CENTRE, 3))
    frame = _cells({CENTRE: 60, **{c: 2 for c in ring3[:6]}}, {CENTRE: 2, **{c: 4 for c in ring3[:6]}})
    moves, _ = dispatch.suggest(frame, _zones(frame), PPH, dispatch.Rules(source_res=8))
    arrows, labels = layer.build(moves, DrawContext())
    assert arrows["uid"] == "dispatch_arrows" and labels["uid"] == "dispatch_labels"
    assert arrows["lat"].count(None) == 3 * len(moves)  # shaft and two head strokes each
    assert labels["text"] == [f"+{n}" for n in moves["couriers"].to_list()]
    # the shaft ends at the zone; the head strokes start there and point back
    assert arrows["lat"][1] == pytest.approx(moves["dst_lat"][0], abs=1e-6)
    assert arrows["lat"][3] == arrows["lat"][1]
    shifted, _ = layer.build(moves, DrawContext(gcj02=True))
    assert shifted["lon"][0] != arrows["lon"][0]
    group = layer.build_folium(moves, DrawContext())
    assert isinstance(group, folium.FeatureGroup)
    with pytest.raises(ValueError, match="needs columns"):
        layer.build(moves.drop("src_lat"))
