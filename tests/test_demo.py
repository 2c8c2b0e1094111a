from datetime import date

import numpy as np
import pytest

from data.demo import generator as demo
from data.store.database import Store
from tests.conftest import DEMO_END


@pytest.fixture(scope="module")
def network(small_demo_path):
    with Store(small_demo_path, read_only=True) as store:
        yield (
            {
                name: store.sql(f"SELECT * FROM {name} ORDER BY 1")
                for name in ("outlets", "couriers", "vehicles", "devices")
            },
            store.sql("SELECT * FROM demo_surges"),
        )


def test_same_seed_same_day_same_data(network):
    net, surges = network
    a = demo.generate_day(net, date(2026, 11, 20), demo.SIZES["small"], 7, surges)
    b = demo.generate_day(net, date(2026, 11, 20), demo.SIZES["small"], 7, surges)
    c = demo.generate_day(net, date(2026, 11, 20), demo.SIZES["small"], 8, surges)
    assert a[0].equals(b[0]) and a[1].equals(b[1])
    assert not a[0].equals(c[0])


def test_network_is_deterministic(tmp_path, tree, small_store):
    with Store(tmp_path / "x.duckdb") as store:
        store.save_tree(tree)
        net = demo.build_network(store, demo.SIZES["small"], seed=7)
    for name in ("outlets", "couriers", "vehicles"):
        again = small_store.sql(f"SELECT * FROM {name} ORDER BY 1")
        assert net[name].sort(net[name].columns[0]).select(again.columns).equals(again), name


def test_couriers_never_jump_faster_than_their_mode(small_store):
    speeds = small_store.sql("""
        WITH p AS (SELECT courier_id, ts, lat, lng, lag(ts) OVER w AS pts, lag(lat) OVER w AS plat,
                          lag(lng) OVER w AS plng
                   FROM pings WHERE courier_id IS NOT NULL WINDOW w AS (PARTITION BY courier_id ORDER BY ts))
        SELECT c.mode, max(111320 * sqrt(power(lat - plat, 2) + power((lng - plng) * cos(radians(lat)), 2))
                           / (epoch(ts) - epoch(pts))) AS top, count(*) AS n
        FROM p JOIN couriers c USING (courier_id)
        WHERE pts IS NOT NULL AND epoch(ts) - epoch(pts) < 600 GROUP BY 1""")
    top = dict(zip(speeds["mode"], speeds["top"]))
    # straight-line speed between fixes <= street speed, plus GPS noise (6 m sd, 56 s apart at least)
    noise = 6 * 6 * np.sqrt(2) / 56
    assert top["walk"] <= demo.MODE_MAX_SPEED["walk"] + noise
    assert top["ebike"] <= demo.MODE_MAX_SPEED["ebike"] + noise
    assert top["walk"] > 1.0 and top["ebike"] > 3.0  # they do move


def test_volumes_and_kinds(small_store):
    counts = small_store.counts()
    assert counts["couriers"] == 400 and counts["pings"] > 500_000 and counts["parcel_events"] > 200_000
    kinds = dict(small_store.sql("SELECT kind, count(*) FROM parcel_events GROUP BY 1").rows())
    assert set(kinds) == {"pickup_request", "pickup", "arrival", "out_for_delivery", "delivered"}
    late = small_store.scalar("SELECT sum(late) / sum(deliveries) FROM cube_hourly")
    assert 0.02 < late < 0.5  # on time is real: some parcels miss their promise


def test_demand_has_morning_and_afternoon_peaks():
    prof = demo.hourly_profile()
    assert prof.argmax() in (10, 11)
    assert prof[15] > prof[13] and prof[15] > prof[18]
    assert prof[3] < 0.1


def test_surges_raise_the_workload_where_and_when_they_happen(small_store):
    day_surges = small_store.sql(
        "SELECT * FROM demo_surges WHERE start_hour >= ?", [demo._local_midnight_utc(DEMO_END).astype(object)]
    )
    assert len(day_surges) >= 1
    compared = 0
    for s in day_surges.iter_rows(named=True):
        inside = small_store.scalar(
            """
            SELECT sum(pickups + deliveries) / sum(couriers) FROM cube_hourly
            WHERE branch_id = ? AND hour >= ? AND hour < ?""",
            [s["branch_id"], s["start_hour"], s["end_hour"]],
        )
        before = small_store.scalar(
            """
            SELECT sum(pickups + deliveries) / sum(couriers) FROM cube_hourly
            WHERE branch_id = ? AND hour >= ? - INTERVAL 24 HOUR AND hour < ? - INTERVAL 24 HOUR""",
            [s["branch_id"], s["start_hour"], s["end_hour"]],
        )
        if before is None:
            continue
        surged_yesterday = small_store.scalar(
            "SELECT count(*) FROM demo_surges WHERE branch_id = ? AND start_hour < ? - INTERVAL 12 HOUR "
            "AND end_hour > ? - INTERVAL 24 HOUR",
            [s["branch_id"], s["start_hour"], s["start_hour"]],
        )
        if surged_yesterday == 0:
            assert inside > 1.6 * before, s
            compared += 1
    assert compared >= 1  # at least one surge had a calm day before it to compare with


def test_unknown_size_is_refused(empty_store):
    with pytest.raises(ValueError, match="unknown demo size"):
        demo.generate(empty_store, size="huge")
    assert empty_store.scalar("SELECT count(*) FROM couriers") == 0  # nothing was generated
