# ruff: noqa: F811  (the shared demo fixtures are imported by name and used as arguments)
"""Dispatch suggestions on crafted cases (h3 as the reference for neighbours): sources never
give more than they can spare, the worst ratio never rises, distance and scope limits hold,
idle couriers at outlets and idle vans are sent when they are what can help, no move goes
beyond the radius of its mode; the reserves read from a real store; and the record of
accepted and dismissed suggestions."""

from datetime import datetime

import h3
import numpy as np
import polars as pl
import pytest

from data.store import decisions
from data.store import forecast_reads as fq
from ops import alerts, dispatch
from tests.forecast_support import forecast_demo_path, forecast_settings, forecast_store  # noqa: F401
from views import backtest as bt
from views import forecast as vf

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
    # each courier works in the zone for the part of the hour left after the ride
    km = moves["distance_km"].to_numpy()
    assert moves["on_site"].to_numpy() == pytest.approx(1 - km / dispatch.RULES.ebike_kmh)
    on_site = float((moves["couriers"] * moves["on_site"]).sum())
    assert 4 < on_site < 6  # rides of 2.4 to 3.6 km at 15 km/h
    assert row["ratio_after"] == pytest.approx(100 / ((3 + on_site) * PPH))
    after = dispatch.apply(frame, moves, zones, PPH)
    assert _worst(after) <= _worst(frame)
    # a source keeps its ratio under the rule's maximum
    src = after.filter(pl.col("cell").is_in([_i(c) for c in ring3[:6]]))
    assert (dispatch.ratios(src) <= dispatch.RULES.source_max_ratio + 1e-9).all()
    # what the sources give is what the zone gets, less the minutes on the road
    assert after["capacity"].sum() == pytest.approx(frame["capacity"].sum() - (6 - on_site) * PPH)


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
    decisions.record_decision(empty_store, "r-440300", sz, hour, 1, 2, 3, "accepted", 1.5, user="manager")
    decisions.record_decision(empty_store, "hq", gz, hour, 4, 5, 1, "dismissed")
    assert len(decisions.decisions(empty_store, "hq")) == 2
    mine = decisions.decisions(empty_store, "r-440300")
    assert mine["decision"].to_list() == ["accepted"] and mine["couriers"].to_list() == [3]
    assert decisions.decisions(empty_store, sz, start=hour, end=datetime(2026, 11, 20, 3))[
        "user_name"
    ].to_list() == ["manager"]
    with pytest.raises(PermissionError):
        decisions.record_decision(empty_store, "r-440300", gz, hour, 1, 2, 3, "accepted")
    with pytest.raises(ValueError):
        decisions.record_decision(empty_store, "hq", gz, hour, 1, 2, 3, "maybe")


def test_a_decision_about_vans_is_recorded_in_a_table_made_before_vans(empty_store):
    # the table as it was before vans: the newer columns are added on first use
    empty_store.cursor().execute(
        """CREATE TABLE dispatch_decisions (decided_at TIMESTAMP NOT NULL, scope VARCHAR NOT NULL,
        branch_id VARCHAR NOT NULL, hour TIMESTAMP NOT NULL, source_cell UBIGINT NOT NULL,
        zone_cell UBIGINT NOT NULL, couriers INTEGER NOT NULL, distance_km DOUBLE,
        decision VARCHAR NOT NULL, user_name VARCHAR)"""
    )
    empty_store.cursor().execute(
        "INSERT INTO dispatch_decisions VALUES (TIMESTAMP '2026-11-20 01:00', 'hq', 'b-440305', "
        "TIMESTAMP '2026-11-20 02:00', 1, 2, 3, 1.0, 'accepted', NULL)"
    )
    hour = datetime(2026, 11, 20, 7)
    decisions.record_decision(
        empty_store, "r-440300", "b-440305", hour, 5, 6, 0, "dismissed", 4.2,
        kind="vehicle", mode="van", vehicles=2, source_outlet="h-440300-1",
    )  # fmt: skip
    rows = decisions.decisions(empty_store, "hq").sort("hour")
    assert rows["kind"].to_list() == ["courier", "vehicle"]  # the old row reads as couriers
    van = rows.row(1, named=True)
    assert (van["vehicles"], van["couriers"], van["mode"]) == (2, 0, "van")
    assert van["source_outlet"] == "h-440300-1"
    with pytest.raises(ValueError):
        decisions.record_decision(empty_store, "hq", "b-440305", hour, 5, 6, 0, "accepted", kind="drone")


def test_arrow_layer_draws_each_move_with_its_head_and_count():
    import folium

    from layers import dispatch_arrows
    from layers.base import DrawContext

    layer = dispatch_arrows.LAYER
    ring3 = list(h3.grid_ring(CENTRE, 3))
    frame = _cells({CENTRE: 60, **{c: 2 for c in ring3[:6]}}, {CENTRE: 2, **{c: 4 for c in ring3[:6]}})
    moves, _ = dispatch.suggest(frame, _zones(frame), PPH, dispatch.Rules(source_res=8))
    arrows, labels, van_arrows, van_labels = layer.build(moves, DrawContext())
    assert arrows["uid"] == "dispatch_arrows" and labels["uid"] == "dispatch_labels"
    assert van_arrows["uid"] == "dispatch_van_arrows" and van_arrows["lat"] == []  # couriers only
    assert arrows["lat"].count(None) == 3 * len(moves)  # shaft and two head strokes each
    assert labels["text"] == [f"+{n}" for n in moves["couriers"].to_list()]
    # the shaft ends at the zone; the head strokes start there and point back
    assert arrows["lat"][1] == pytest.approx(moves["dst_lat"][0], abs=1e-6)
    assert arrows["lat"][3] == arrows["lat"][1]
    shifted = layer.build(moves, DrawContext(gcj02=True))[0]
    assert shifted["lon"][0] != arrows["lon"][0]
    group = layer.build_folium(moves, DrawContext())
    assert isinstance(group, folium.FeatureGroup)
    with pytest.raises(ValueError, match="needs columns"):
        layer.build(moves.drop("src_lat"))


def test_van_arrows_are_drawn_apart_with_their_own_colour_label_and_tooltip():
    from layers import dispatch_arrows
    from layers.base import DrawContext

    frame, zones = _zone_only(load=100, couriers=2)
    ring1 = list(h3.grid_ring(CENTRE, 1))[0]
    res = _reserves(
        [
            {"outlet_id": "o-1", "cell": ring1, "kind": "courier", "mode": "ebike", "spare": 2},
            {"outlet_id": "h-1", "cell": ring1, "kind": "vehicle", "mode": "van", "spare": 4},
        ]
    )
    moves, _ = dispatch.suggest(frame, zones, PPH, reserves=res)
    text = {
        "van_short": "车",
        "vans_moved": "调派车辆",
        "couriers_moved": "调派快递员",
        "from_outlet": "来自网点",
        "mode_van": "厢式车",
        "mode_ebike": "电动车",
        "zone": "区域",
    }
    arrows, labels, van_arrows, van_labels = dispatch_arrows.LAYER.build(moves, DrawContext(text=text))
    assert labels["text"] == ["+2"] and van_labels["text"] == ["+2 车"]
    assert van_arrows["line"]["color"] != arrows["line"]["color"]
    assert van_arrows["line"]["width"] > arrows["line"]["width"]
    assert "调派车辆: 2 (厢式车)" in van_labels["hovertext"][0] and "h-1" in van_labels["hovertext"][0]
    assert "调派快递员: 2 (电动车)" in labels["hovertext"][0]
    # ~1.2 km: 5 minutes on an e-bike, 3 in a van
    minutes = round(60 * moves["distance_km"][0] / dispatch.RULES.ebike_kmh)
    assert labels["hovertext"][0].endswith(f"km, {minutes} min") and minutes == 5
    assert van_labels["hovertext"][0].endswith("km, 3 min")
    assert van_arrows["lat"].count(None) == 3 and arrows["lat"].count(None) == 3
    import folium

    m = folium.Map(location=[22.54, 114.05], zoom_start=12, tiles=None)
    dispatch_arrows.LAYER.build_folium(moves, DrawContext(text=text)).add_to(m)
    html = m.get_root().render()
    assert "#d95f02" in html and "#2166ac" in html and "调派车辆: 2 (厢式车)" in html


# -- outlets, vans and travel limits ---------------------------------------------------------------
def _reserves(rows: list[dict]) -> pl.DataFrame:
    """Outlets with idle couriers or vans: (outlet_id, h3 cell, kind, mode, spare[, branch])."""
    out = []
    for r in rows:
        lat, lng = h3.cell_to_latlng(r["cell"])
        out.append(
            {
                "outlet_id": r["outlet_id"],
                "branch_id": r.get("branch_id", "b-1"),
                "cell": _i(r["cell"]),
                "lat": lat,
                "lng": lng,
                "kind": r["kind"],
                "mode": r["mode"],
                "spare": r["spare"],
            }
        )
    return pl.DataFrame(out, schema=dispatch.RESERVE_SCHEMA)


def _zone_only(load=60, couriers=1):
    """One overloaded cell and no cell with couriers to spare."""
    frame = _cells({CENTRE: load}, {CENTRE: couriers})
    zones = _zones(frame)
    assert len(zones) == 1
    return frame, zones


def test_idle_couriers_at_an_outlet_are_sent_and_counted_as_capacity():
    frame, zones = _zone_only()
    near = list(h3.grid_ring(CENTRE, 1))[0]  # ~1.2 street km
    res = _reserves([{"outlet_id": "o-1", "cell": near, "kind": "courier", "mode": "ebike", "spare": 3}])
    moves, summary = dispatch.suggest(frame, zones, PPH, reserves=res)
    assert moves["source_kind"].to_list() == ["outlet"] and moves["source_outlet"].to_list() == ["o-1"]
    assert moves["couriers"].to_list() == [3] and moves["vehicles"].to_list() == [0]  # all its spare, no more
    assert summary["added"].to_list() == [3]
    after = dispatch.apply(frame, moves, zones, PPH)
    # the outlet's idle couriers were counted nowhere: the zone gains them, no cell loses any
    on_site = moves["on_site"][0]
    assert on_site == pytest.approx(1 - moves["distance_km"][0] / dispatch.RULES.ebike_kmh) and on_site < 1
    assert after["capacity"].sum() == pytest.approx(frame["capacity"].sum() + 3 * PPH * on_site)
    assert _worst(after) == pytest.approx(60 / ((1 + 3 * on_site) * PPH))
    # walkers idle at an outlet 3 cells away (~3.6 street km) are beyond a 15-minute walk
    far = list(h3.grid_ring(CENTRE, 3))[0]
    walkers = _reserves([{"outlet_id": "o-2", "cell": far, "kind": "courier", "mode": "walk", "spare": 5}])
    moves, _ = dispatch.suggest(frame, zones, PPH, reserves=walkers)
    assert moves.is_empty()


def test_vans_are_sent_when_only_vans_can_help():
    frame, zones = _zone_only(load=100, couriers=2)
    hub = list(h3.grid_ring(CENTRE, 4))[0]  # ~4.8 street km: beyond an e-bike's 3.75 km, within a van's 6
    ebikes = {"outlet_id": "o-1", "cell": hub, "kind": "courier", "mode": "ebike", "spare": 9}
    vans = {"outlet_id": "h-1", "cell": hub, "kind": "vehicle", "mode": "van", "spare": 5}
    moves, summary = dispatch.suggest(frame, zones, PPH, reserves=_reserves([ebikes, vans]))
    assert set(moves["kind"]) == {"vehicle"} and moves["source_outlet"].to_list() == ["h-1"]
    # 100 parcels, 2 couriers: 100 - 24 = 76 parcels left, 36 per van -> 3 vans
    assert moves["vehicles"].to_list() == [3] and summary["vehicle_need"].to_list() == [3]
    rules = dispatch.RULES
    on_site = moves["on_site"][0]  # ~4.8 km at 24 km/h: 12 minutes of the hour on the road
    assert on_site == pytest.approx(1 - moves["distance_km"][0] / rules.van_kmh) and 0.75 < on_site < 0.85
    assert summary["ratio_after"][0] == pytest.approx(
        100 / (2 * PPH + 3 * rules.vehicle_parcels_per_hour * on_site)
    )
    after = dispatch.apply(frame, moves, zones, PPH)
    assert _worst(after) == pytest.approx(summary["ratio_after"][0])
    # trucks are line-haul vehicles, never sent to a zone
    trucks = {**vans, "mode": "truck"}
    assert dispatch.suggest(frame, zones, PPH, reserves=_reserves([trucks]))[0].is_empty()


def test_couriers_go_first_and_vans_cover_the_rest():
    frame, zones = _zone_only(load=100, couriers=2)
    ring1 = list(h3.grid_ring(CENTRE, 1))[0]
    res = _reserves(
        [
            {"outlet_id": "o-1", "cell": ring1, "kind": "courier", "mode": "ebike", "spare": 2},
            {"outlet_id": "h-1", "cell": ring1, "kind": "vehicle", "mode": "van", "spare": 4},
        ]
    )
    moves, summary = dispatch.suggest(frame, zones, PPH, reserves=res)
    by_kind = dict(moves.group_by("kind").agg((pl.col("couriers") + pl.col("vehicles")).sum()).iter_rows())
    # 2 couriers leave 100 - 48 = 52 parcels: 2 vans (36 each), not 4
    assert by_kind == {"courier": 2, "vehicle": 2}
    assert summary["ratio_after"][0] <= 1.0 < summary["ratio"][0]
    # enough couriers: no van is taken off the road
    plenty = res.with_columns(
        pl.when(pl.col("kind") == "courier").then(10).otherwise(pl.col("spare")).alias("spare")
    )
    moves, _ = dispatch.suggest(frame, zones, PPH, reserves=plenty)
    assert set(moves["kind"]) == {"courier"} and moves["couriers"].sum() == 7


def test_each_mode_stays_within_its_radius():
    rules = dispatch.RULES
    assert rules.radius_km("walk") < rules.radius_km("ebike") < rules.radius_km("van")
    assert dispatch.Rules(max_minutes=30).radius_km("ebike") == pytest.approx(2 * rules.radius_km("ebike"))
    assert dispatch.Rules(max_km=2.0).radius_km("van") == 2.0
    rules = dispatch.Rules(max_minutes=20)  # a 1.5 km walk reaches the next res-8 cell
    frame, zones = _zone_only(load=400, couriers=1)
    rows = []
    for k in range(1, 9):
        c = list(h3.grid_ring(CENTRE, k))[0]
        for kind, mode in (("courier", "walk"), ("courier", "ebike"), ("vehicle", "van")):
            rows.append({"outlet_id": f"o-{k}-{mode}", "cell": c, "kind": kind, "mode": mode, "spare": 1})
    moves, _ = dispatch.suggest(frame, zones, PPH, rules, reserves=_reserves(rows))
    assert set(moves["mode"]) == {"walk", "ebike", "van"}  # every mode is used within its reach ...
    for r in moves.iter_rows(named=True):  # ... and none beyond it
        assert r["distance_km"] <= rules.radius_km(r["mode"]) + 1e-9, r
    far = moves.group_by("mode").agg(pl.col("distance_km").max())
    assert dict(far.iter_rows())["van"] > rules.radius_km("ebike")


def test_area_couriers_split_by_mode_and_walkers_stay_near():
    ring1 = list(h3.grid_ring(CENTRE, 1))
    ring3 = list(h3.grid_ring(CENTRE, 3))
    loads = {CENTRE: 90, **{c: 0 for c in ring1[:1] + ring3[:1]}}
    couriers = {CENTRE: 1, ring1[0]: 4, ring3[0]: 4}
    frame = _cells(loads, couriers)
    zones = _zones(frame)
    mix = pl.DataFrame({"branch_id": ["b-1", "b-1"], "mode": ["walk", "ebike"], "couriers": [1, 1]})
    rules = dispatch.Rules(source_res=8, max_minutes=20)  # walk 1.5 km, e-bike 5 km
    src = dispatch.sources(frame, zones, PPH, rules, mode_mix=mix)
    assert dict(src.group_by("mode").agg(pl.col("spare").sum()).iter_rows()) == {"walk": 4, "ebike": 4}
    moves, _ = dispatch.suggest(frame, zones, PPH, rules, mode_mix=mix)
    walked = moves.filter(pl.col("mode") == "walk")
    # walkers come only from the neighbour cell; the cell 3 rings out sends e-bikes only
    assert set(walked["source_cell"].to_list()) == {_i(ring1[0])}
    assert moves.filter(pl.col("source_cell") == _i(ring3[0]))["mode"].to_list() == ["ebike"]


def test_random_cases_with_outlets_and_vans_never_overdraw_nor_worsen_nor_go_too_far():
    rng = np.random.default_rng(11)
    disk = [c for k in range(7) for c in (h3.grid_ring(CENTRE, k) if k else [CENTRE])]
    rules = dispatch.Rules()
    mix = pl.DataFrame({"branch_id": ["b-1", "b-1"], "mode": ["walk", "ebike"], "couriers": [1, 2]})
    moved = {"area": 0, "outlet": 0, "vehicle": 0}
    for case in range(30):
        pick = rng.choice(len(disk), size=30, replace=False)
        cells = [disk[i] for i in pick]
        loads = {c: int(rng.choice([0, 3, 8, 20, 45, 90])) for c in cells}
        couriers = {c: int(rng.integers(0, 6)) for c in cells}
        couriers = {c: max(k, 1) if loads[c] else k for c, k in couriers.items()}
        frame = _cells(loads, couriers)
        zones = _zones(frame)
        outlets = [disk[i] for i in rng.choice(len(disk), size=4, replace=False)]
        res = _reserves(
            [
                {
                    "outlet_id": f"o-{j}",
                    "cell": c,
                    "kind": kind,
                    "mode": mode,
                    "spare": int(rng.integers(0, 4)),
                }
                for j, c in enumerate(outlets)
                for kind, mode in (("courier", "walk"), ("courier", "ebike"), ("vehicle", "van"))
            ]
        )
        src = dispatch.sources(frame, zones, PPH, rules, mode_mix=mix)
        moves, summary = dispatch.suggest(frame, zones, PPH, rules, reserves=res, mode_mix=mix)
        if len(moves):
            area = moves.filter(pl.col("source_kind") == "area")
            sent = area.group_by("source_cell", "mode").agg(pl.col("couriers").sum())
            spare = {(c, m): n for c, m, n in src.select("cell", "mode", "spare").iter_rows()}
            assert all(n <= spare[(c, m)] for c, m, n in sent.iter_rows()), case
            at = moves.filter(pl.col("source_kind") == "outlet").group_by("source_outlet", "kind", "mode")
            given = at.agg((pl.col("couriers") + pl.col("vehicles")).sum().alias("n"))
            have = {
                (o, k, m): n for o, k, m, n in res.select("outlet_id", "kind", "mode", "spare").iter_rows()
            }
            assert all(n <= have[(o, k, m)] for o, k, m, n in given.iter_rows()), case
            for r in moves.iter_rows(named=True):
                assert r["distance_km"] <= rules.radius_km(r["mode"]) + 1e-9, (case, r)
            moved["area"] += int(area["couriers"].sum())
            moved["outlet"] += int(moves.filter(pl.col("source_kind") == "outlet")["couriers"].sum())
            moved["vehicle"] += int(moves["vehicles"].sum())
        assert (summary["added"] <= summary["need"]).all()
        assert (summary["vehicles_added"] <= summary["vehicle_need"]).all()
        assert (summary["ratio_after"] <= summary["ratio"] + 1e-9).all()
        after = dispatch.apply(frame, moves, zones, PPH, rules)
        assert _worst(after) <= _worst(frame) + 1e-9, case
    assert all(n > 0 for n in moved.values()), moved  # the cases exercise every kind of source


def test_reserve_forecast_is_the_roster_minus_the_usual_on_the_road():
    from datetime import timedelta

    t = datetime(2026, 11, 20, 7)
    roster = pl.DataFrame(
        {
            "outlet_id": ["o-1", "h-1"],
            "branch_id": ["b-1", "b-1"],
            "cell": pl.Series([1, 2], dtype=pl.UInt64),
            "lat": [22.5, 22.6],
            "lng": [114.0, 114.1],
            "kind": ["courier", "vehicle"],
            "mode": ["ebike", "van"],
            "roster": [10, 6],
        }
    )
    seen = pl.DataFrame(
        {
            "hour": [t - timedelta(days=1), t - timedelta(days=2), t - timedelta(days=1)],
            "outlet_id": ["o-1", "o-1", "h-1"],
            "kind": ["courier", "courier", "vehicle"],
            "mode": ["ebike", "ebike", "van"],
            "seen": [9, 6, 6],
        }
    )
    days = pl.DataFrame({"issued": [t, t], "horizon": [1, 1], "hour": [t, t], "k": [1, 2], "n_days": [2, 2]})
    r = dispatch.reserve_forecast(roster, seen, days)
    # couriers: 10 - (9 + 6) / 2 = 2.5 -> 2 idle; vans: 6 - (6 + 0) / 2 = 3 idle
    assert dict(r.select("outlet_id", "spare").iter_rows()) == {"o-1": 2, "h-1": 3}
    assert dispatch.reserve_forecast(roster, seen, days.head(0)).is_empty()  # no history, no reserves


def test_reserves_read_from_the_store(forecast_store, forecast_settings):
    day = bt.newest_day(forecast_store, "hq", forecast_settings.local_tz)
    hours = vf.day_hours(day, forecast_settings.local_tz)
    roster = fq.reserve_roster(forecast_store, "r-440300", 8)
    total = forecast_store.sql(
        "SELECT count(*) AS n FROM couriers c JOIN nodes b ON b.node_id = c.branch_id WHERE b.region_id = 'r-440300'"
    )["n"][0]
    assert roster.filter(pl.col("kind") == "courier")["roster"].sum() == total
    assert set(roster.filter(pl.col("kind") == "vehicle")["mode"]) == {"van"}
    seen = fq.reserve_seen(forecast_store, "r-440300", hours)
    j = seen.join(roster, on=["outlet_id", "kind", "mode"])
    assert len(j) == len(seen) and (j["seen"] <= j["roster"]).all()
    idle = vf.actual_reserves(forecast_store, "r-440300", hours, 8)
    vans_idle = {h: int(f.filter(pl.col("kind") == "vehicle")["spare"].sum()) for h, f in idle.items()}
    # vans leave their hubs at 06:00 local and come back one by one in the afternoon
    assert vans_idle[hours[10]] < vans_idle[hours[17]]
    mix = fq.mode_mix(forecast_store, "r-440300")
    assert set(mix["mode"]) == {"walk", "ebike"} and mix["couriers"].sum() == total
