"""Reports: numbers equal the dashboard's model, clear errors, data formats (GeoJSON RFC 7946,
CSV, GeoParquet) on the small demo."""

from __future__ import annotations

import argparse
import json

import geopandas as gpd
import numpy as np
import polars as pl
import pytest
import shapely

from cli import export as cli
from config import Settings
from geo import cells as h3cells
from reports import build as rb
from reports import data, write

DAY = "2026-11-20"
REGION = "r-440300"  # Shenzhen
BRANCH = "b-440304"  # Futian


@pytest.fixture(scope="module")
def model(small_model):
    return small_model


@pytest.fixture(scope="module")
def hour_report(small_store, settings, model):
    return rb.build(small_store, settings, REGION, rb.Period(DAY, hour=10), "scans", model=model)


@pytest.fixture(scope="module")
def day_report(small_store, settings, model):
    return rb.build(small_store, settings, REGION, rb.Period(DAY), "load_ratio", model=model)


def _hours(model, node):
    return [(DAY, h) for h in range(24) if model.hour_window(DAY, h)[0] <= model.data_hours(node)[1]]


def test_hour_report_equals_dashboard(hour_report, model):
    r = hour_report
    assert r.res == model.res(REGION) == 7
    dash = model.hex_frame(REGION, DAY, 10, "scans").sort("cell")
    got = r.hexes.sort("cell")
    assert got["cell"].to_list() == dash["cell"].to_list() and len(got) > 10
    for c in ("value", "load_ratio", "workload", "couriers"):
        np.testing.assert_allclose(got[c].to_numpy(), dash[c].to_numpy())
    assert got["node"].to_list() == dash["node"].to_list()
    assert r.kpis == model.kpis(REGION, DAY, 10)
    zones = model.zones(REGION, DAY, 10)
    assert r.zones["zone_id"].to_list() == zones["zone_id"].to_list()[: rb.TOP_ZONES]
    assert r.zones["cells"].to_list() == zones["cells"].to_list()[: rb.TOP_ZONES]
    assert r.zone_hours == len(zones) == next(k["value"] for k in r.kpis if k["key"] == "zones")
    table = model.child_table(REGION, DAY, 10)
    assert r.children["node_id"].to_list() == table["node_id"].to_list()
    assert r.children["volume"].to_list() == table["volume"].to_list()
    assert r.children["rank"].to_list() == list(range(1, len(table) + 1))
    assert set(r.outlines["node_id"]) == set(model.children(REGION)["node_id"].to_list())
    assert r.outlets["outlet_id"].to_list() == model.outlets(REGION, DAY, 10)["outlet_id"].to_list()


def test_day_report_adds_up_the_dashboards_hours(day_report, model):
    r = day_report
    hours = _hours(model, REGION)
    assert len(hours) > 12
    hourly = pl.concat(
        [model.hex_frame(REGION, d, h, "pickups").with_columns(pl.lit(h).alias("h")) for d, h in hours]
    )
    # counts: the sum of the dashboard's hourly hexes; load ratio: the peak of its hourly ratios
    agg = (
        hourly.group_by("cell")
        .agg(pl.col("value").sum().alias("pickups"), pl.col("load_ratio").max())
        .sort("cell")
    )
    got = r.hexes.sort("cell")
    assert got["cell"].to_list() == agg["cell"].to_list()
    np.testing.assert_allclose(got["pickups"].to_numpy(), agg["pickups"].to_numpy())
    np.testing.assert_allclose(got["load_ratio"].to_numpy(), agg["load_ratio"].to_numpy())
    np.testing.assert_allclose(got["value"].to_numpy(), got["load_ratio"].to_numpy())
    # KPI panel: sums of the hourly panels; courier-hours behind parcels per courier-hour
    panels = [{k["key"]: k["value"] for k in model.kpis(REGION, d, h)} for d, h in hours]
    kpi = {k["key"]: k["value"] for k in r.kpis}
    for key in ("pickups", "deliveries", "zones"):
        assert kpi[key] == sum(p[key] or 0 for p in panels), key
    courier_hours = sum(p["couriers"] or 0 for p in panels)
    assert kpi["parcels_per_courier_hour"] == pytest.approx(
        (kpi["pickups"] + kpi["deliveries"]) / courier_hours
    )
    assert kpi["couriers"] <= courier_hours and kpi["couriers"] >= max(p["couriers"] or 0 for p in panels)
    # ranking: volumes and zone counts are the sums of the hourly child tables
    tables = pl.concat(
        [
            model.child_table(REGION, d, h).select("node_id", "volume", pl.col("zones").cast(pl.Int64))
            for d, h in hours
        ]
    )
    want = tables.group_by("node_id").agg(pl.col("volume").sum(), pl.col("zones").sum())
    got = r.children.select("node_id", "volume", "zones").join(want, on="node_id", suffix="_dash")
    assert len(got) == len(r.children) > 0
    assert got["volume"].to_list() == got["volume_dash"].to_list()
    assert got["zones"].to_list() == got["zones_dash"].to_list()
    assert r.children["volume"].is_sorted(descending=True)


def test_unknown_node_and_empty_period(small_store, settings, small_demo_path, capsys, tmp_path):
    with pytest.raises(rb.ReportError, match="unknown node 'b-999999'"):
        rb.build(small_store, settings, "b-999999", rb.Period(DAY), "scans")
    with pytest.raises(rb.EmptyPeriodError, match=r"r-440300 .*2026-01-05"):
        rb.build(small_store, settings, REGION, rb.Period("2026-01-05"), "scans")
    with pytest.raises(rb.ReportError, match="unknown metric"):
        rb.build(small_store, settings, REGION, rb.Period(DAY), "volume")
    with pytest.raises(rb.ReportError, match="hour must be"):
        rb.Period(DAY, hour=24)

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    local = Settings.from_env({}, data_dir=small_demo_path.parent, db_name=small_demo_path.name)
    out = tmp_path / "x.csv"
    assert cli.run(parser.parse_args(["--node", "nope", "--date", DAY, "--out", str(out)]), local) != 0
    assert "unknown node 'nope'" in capsys.readouterr().err
    assert (
        cli.run(parser.parse_args(["--node", REGION, "--date", "2026-01-05", "--out", str(out)]), local) != 0
    )
    err = capsys.readouterr().err
    assert "r-440300" in err and "2026-01-05" in err and not out.exists()
    assert (
        cli.run(parser.parse_args(["--node", BRANCH, "--date", DAY, "--hour", "9", "--out", str(out)]), local)
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    csv = pl.read_csv(out)
    assert len(csv) > 0 and csv["metric"].unique().to_list() == ["scans"]


def test_geojson_is_rfc7946_and_round_trips(day_report, tmp_path):
    r = day_report
    path = write(r, "geojson", tmp_path / "day.geojson")
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    assert len(doc["features"]) == len(r.hexes)
    lng0, lat0, lng1, lat1 = doc["bbox"]
    assert lng0 < lng1 and lat0 < lat1
    ids = rb.hex_ids(r)
    for f, cid in zip(doc["features"], ids, strict=True):
        assert f["type"] == "Feature" and f["id"] == cid == f["properties"]["cell"]
        geom = f["geometry"]
        assert geom["type"] == "Polygon" and len(geom["coordinates"]) == 1
        ring = geom["coordinates"][0]
        assert ring[0] == ring[-1] and len(ring) >= 7
        assert all(-180 <= x <= 180 and -90 <= y <= 90 for x, y in ring)
        poly = shapely.geometry.shape(geom)
        assert poly.is_valid and poly.exterior.is_ccw  # RFC 7946: exterior counter-clockwise
        # the hexagon holds its cell's centre
        assert poly.contains(shapely.Point(f["properties"]["lng"], f["properties"]["lat"]))
    back = gpd.read_file(path)
    assert back.crs.to_epsg() == 4326
    assert back["cell"].tolist() == ids
    np.testing.assert_allclose(back["value"].to_numpy(), r.hexes["value"].to_numpy())
    np.testing.assert_allclose(back["pickups"].to_numpy(), r.hexes["pickups"].to_numpy())
    # area of a res-7 hexagon, about 5.2 km²
    area = back.to_crs(back.estimate_utm_crs()).area.mean() / 1e6
    assert area == pytest.approx(h3cells.area_km2(7), rel=0.15)


def test_csv_and_geoparquet(day_report, tmp_path):
    r = day_report
    csv = pl.read_csv(write(r, "csv", tmp_path / "day.csv"))
    assert csv.columns[:5] == ["cell", "lat", "lng", "node", "value"]
    cells = h3cells.from_str(csv["cell"].to_list())
    assert cells.tolist() == r.hexes["cell"].to_list()
    lat, lng = h3cells.centers(cells)
    np.testing.assert_allclose(csv["lat"].to_numpy(), lat, atol=1e-6)
    np.testing.assert_allclose(csv["lng"].to_numpy(), lng, atol=1e-6)
    np.testing.assert_allclose(csv["value"].to_numpy(), r.hexes["value"].to_numpy(), rtol=1e-9)
    gdf = gpd.read_parquet(write(r, "parquet", tmp_path / "day.parquet"))
    assert gdf.crs.to_epsg() == 4326 and len(gdf) == len(r.hexes)
    assert gdf["cell"].tolist() == csv["cell"].to_list()
    assert gdf.geometry.is_valid.all() and gdf.geometry.exterior.is_ccw.all()
    assert data.table(r)["value"].to_list() == gdf["value"].tolist()


def test_html_size_budget_of_a_full_branch(small_store, settings, model):
    """A branch-day whose 7,057 res-9 cells all hold data (a district of ~740 km²) stays
    under 1 MB: the hex layer's compact encoding is what keeps big branches emailable."""
    import h3

    from reports import html as html_report

    r = rb.build(small_store, settings, BRANCH, rb.Period(DAY), "scans", model=model)
    centre = h3.latlng_to_cell(22.54, 114.05, 9)
    cells = np.array(sorted(h3.str_to_int(c) for c in h3.grid_disk(centre, 48)), dtype=np.uint64)
    n = len(cells)
    rng = np.random.default_rng(1)
    counts = {c: rng.integers(0, 500, n) for c in rb.HEX_COUNTS}
    r.hexes = pl.DataFrame(
        {
            "cell": cells,
            "node": [None] * n,
            "value": counts["scans"].astype(float),
            **counts,
            "workload": (counts["pickups"] + counts["deliveries"]).astype(float),
            "load_ratio": rng.random(n) * 3,
        }
    ).select(rb.HEX_COLUMNS)
    page = html_report.render(r)
    assert n == 7057 and len(page.encode("utf-8")) <= 1024 * 1024
