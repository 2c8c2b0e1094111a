import h3
import numpy as np
import pytest
from h3.api import basic_int as h3i

from geo import cells


def _random_points(n, seed=0):
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))  # uniform on the sphere
    lng = rng.uniform(-180, 180, n)
    return lat, lng


EDGE_POINTS = [
    (90.0, 0.0), (-90.0, 0.0), (0.0, 180.0), (0.0, -180.0), (89.999, 179.999),
    (0.0, 0.0), (22.5431, 114.0579), (53.56, 123.26), (3.84, 112.0),  # China's north and south tips
    (64.7, 10.536),  # near a pentagon centre (res 0 base cell 4 region)
]


@pytest.mark.parametrize("res", [0, 5, 9, 15])
def test_cells_equal_h3_on_random_points(res):
    lat, lng = _random_points(5000, seed=res)
    got = cells.latlng_to_cells(lat, lng, res)
    want = np.array([h3i.latlng_to_cell(a, b, res) for a, b in zip(lat, lng)], dtype=np.uint64)
    np.testing.assert_array_equal(got, want)


def test_cells_equal_h3_on_edge_points():
    lat, lng = map(np.array, zip(*EDGE_POINTS))
    got = cells.latlng_to_cells(lat, lng, 9)
    want = [h3i.latlng_to_cell(a, b, 9) for a, b in EDGE_POINTS]
    assert got.tolist() == want


def test_pentagon_cells_and_parents():
    pentagons = np.array([h3i.cell_to_center_child(p, 9) for p in h3i.get_pentagons(4)], dtype=np.uint64)
    for res in range(0, 10):
        assert cells.to_parent(pentagons, res).tolist() == [h3i.cell_to_parent(int(c), res) for c in pentagons]


@pytest.mark.parametrize("res", range(0, 10))
def test_parent_bit_operation_equals_h3(res):
    lat, lng = _random_points(2000, seed=42)
    c9 = cells.latlng_to_cells(lat, lng, 9)
    assert cells.to_parent(c9, res).tolist() == [h3i.cell_to_parent(int(c), res) for c in c9]


def test_parent_sql_equals_numpy(tmp_path):
    import duckdb

    lat, lng = _random_points(1000, seed=3)
    c9 = cells.latlng_to_cells(lat, lng, 9)
    con = duckdb.connect(str(tmp_path / "x.duckdb"))
    con.execute("CREATE TABLE t AS SELECT unnest(?::UBIGINT[]) AS cell", [c9.tolist()])
    for res in (4, 7):
        got = [r[0] for r in con.execute(f"SELECT {cells.parent_sql('cell', res)} FROM t").fetchall()]
        assert got == cells.to_parent(c9, res).tolist()


def test_parent_refuses_finer_resolution():
    c = cells.latlng_to_cells([22.5], [114.0], 7)
    with pytest.raises(ValueError, match="res 9"):
        cells.to_parent(c, 9)


def test_string_round_trip_and_bad_ids():
    c = cells.latlng_to_cells([31.23, 39.9], [121.47, 116.4], 9)
    s = cells.to_str(c)
    assert s[0] == h3.latlng_to_cell(31.23, 121.47, 9)
    np.testing.assert_array_equal(cells.from_str(s), c)
    with pytest.raises(ValueError, match="not an H3 cell id: 'zz'"):
        cells.from_str(["zz"])
    with pytest.raises(ValueError, match="not an H3 cell"):
        cells.from_str(["8928308280fffff0"])


def test_centers_and_neighbours():
    c = cells.latlng_to_cells([22.54], [114.05], 9)
    lat, lng = cells.centers(c)
    assert (lat[0], lng[0]) == pytest.approx(h3i.cell_to_latlng(int(c[0])))
    ring = np.array([int(c[0]), *h3i.grid_ring(int(c[0]), 1), *h3i.grid_ring(int(c[0]), 3)[:2]], dtype=np.uint64)
    i, j = cells.neighbours(ring)
    pairs = set(zip(i.tolist(), j.tolist()))
    assert all((0, k) in pairs for k in range(1, 7))  # the centre touches its ring
    assert not any(7 in p or 8 in p for p in pairs if 0 in p)  # ring-3 cells do not touch the centre


def test_boundaries_equal_h3_including_pentagons():
    lat, lng = _random_points(300, seed=5)
    c9 = cells.latlng_to_cells(lat, lng, 9)
    pentagons = np.array([h3i.cell_to_center_child(p, 9) for p in h3i.get_pentagons(4)], dtype=np.uint64)
    every = np.concatenate([c9, pentagons])
    rings = cells.boundaries(every)
    for c, ring in zip(every, rings, strict=True):
        want = [(b, a) for a, b in h3i.cell_to_boundary(int(c))]
        assert ring[0] == ring[-1] and len(ring) == len(want) + 1
        np.testing.assert_allclose(np.array(ring[:-1]), np.array(want), atol=1e-9)
    assert cells.boundaries([]) == []


def test_neighbour_pairs_equal_h3_rings():
    lat = np.random.default_rng(1).normal(22.55, 0.02, 3000)
    lng = np.random.default_rng(2).normal(114.05, 0.02, 3000)
    c9 = np.unique(cells.latlng_to_cells(lat, lng, 9))
    i, j = cells.neighbours(c9)
    index = {int(v): k for k, v in enumerate(c9)}
    want = sorted((k, index[n]) for k, v in enumerate(c9) for n in h3i.grid_ring(int(v), 1) if n in index)
    assert sorted(zip(i.tolist(), j.tolist())) == want and len(want) > 1000


def test_base_bits_pack_and_unpack_cells():
    # the 34 variable bits of a res-9 cell say all of it (the cube packs them with hours)
    import polars as pl

    from geo.cells import BASE_CELL_BITS, base_bits_expr, from_base_bits_expr, latlng_to_cells

    rng = np.random.default_rng(11)
    cells = latlng_to_cells(rng.uniform(-89, 89, 2_000), rng.uniform(-179, 179, 2_000))
    frame = pl.DataFrame({"cell": cells}).select(base_bits_expr("cell").alias("bits"))
    assert frame["bits"].min() >= 0 and frame["bits"].max() < 1 << BASE_CELL_BITS
    back = frame.select(from_base_bits_expr(pl.col("bits")).alias("cell"))["cell"].to_numpy()
    assert (back == cells).all()
