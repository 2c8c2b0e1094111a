"""Every registered layer on its contract, and each layer's traces from small frames."""

from datetime import datetime

import h3
import numpy as np
import polars as pl
import pytest
import shapely

from geo.coords import wgs84_to_gcj02
from layers import hexes, registry
from layers.base import DrawContext, Layer, colour_at
from ops import alerts

CENTRE = h3.latlng_to_cell(22.54, 114.05, 9)
RING = list(h3.grid_ring(CENTRE, 1))


def _hex_frame():
    cells = [CENTRE, RING[0], RING[1]]
    return pl.DataFrame(
        {
            "cell": pl.Series([h3.str_to_int(c) for c in cells], dtype=pl.UInt64),
            "value": [10.0, 20.0, 30.0],
            "load_ratio": [0.5, 1.0, 2.0],
            "node": ["福田区", "福田区", "南山区"],
        }
    )


def _zones_frame():
    f = pl.DataFrame(
        {
            "cell": pl.Series([h3.str_to_int(c) for c in [CENTRE, RING[0]]], dtype=pl.UInt64),
            "workload": [40.0, 30.0],
            "couriers": [1, 1],
            "capacity": [12.0, 12.0],
            "load_ratio": [40 / 12, 30 / 12],
        }
    )
    return alerts.zones(alerts.flag_cells(f, 1.5, 2.0))


def _outlines_frame():
    poly = shapely.box(114.0, 22.5, 114.1, 22.6)
    return pl.DataFrame(
        {
            "node_id": ["b-440304", "b-440305"],
            "name": ["福田区", "南山区"],
            "label_lat": [22.55, 22.52],
            "label_lng": [114.05, 113.93],
        }
    ).with_columns(pl.Series("geometry", [poly, shapely.box(113.9, 22.45, 114.0, 22.6)], dtype=pl.Object))


SAMPLES = {
    "hexes": _hex_frame,
    "outlines": _outlines_frame,
    "zones": _zones_frame,
    "outlets": lambda: pl.DataFrame(
        {
            "outlet_id": ["o1", "o2"],
            "name": ["网点1", "网点2"],
            "lat": [22.54, 22.55],
            "lng": [114.05, 114.06],
            "capacity_couriers": [4, 16],
            "load": [0.2, 1.4],
        }
    ),
    "couriers": lambda: pl.DataFrame(
        {
            "courier_id": ["c1", "c2", "c3"],
            "lat": [22.54, 22.55, 22.56],
            "lng": [114.05, 114.06, 114.07],
            "state": ["moving", "stopped", "offline"],
            "ts": [datetime(2026, 11, 20, 2, 30)] * 3,
        }
    ),
    "vehicles": lambda: pl.DataFrame(
        {"vehicle_id": ["v1"], "lat": [22.54], "lng": [114.05], "heading": [90.0], "state": ["moving"]}
    ),
    "dispatch_arrows": lambda: pl.DataFrame(
        {
            "zone_id": [1, 1],
            "couriers": [2, 3],
            "src_lat": [22.50, 22.58],
            "src_lng": [114.00, 114.10],
            "dst_lat": [22.54, 22.54],
            "dst_lng": [114.05, 114.05],
        }
    ),
}


def test_registry_lists_unique_layers_with_samples():
    keys = [layer.key for layer in registry.LAYERS]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(SAMPLES)
    assert set(registry.default_keys()) <= set(keys)
    with pytest.raises(KeyError, match="no layer"):
        registry.get("nope")


@pytest.mark.parametrize("layer", registry.LAYERS, ids=lambda layer: layer.key)
def test_contract(layer: Layer):
    assert layer.required and layer.style is not None
    frame = SAMPLES[layer.key]()
    traces = layer.build(frame, DrawContext())
    assert traces and all(t["type"] in ("scattermap", "choroplethmap") for t in traces)
    assert all("uid" in t for t in traces)
    import folium

    group = layer.build_folium(frame, DrawContext())
    assert isinstance(group, folium.FeatureGroup)
    m = folium.Map(location=[22.54, 114.05], zoom_start=11, tiles=None)
    group.add_to(m)
    assert "L.featureGroup" in m.get_root().render() or "featureGroup" in m.get_root().render()


@pytest.mark.parametrize("layer", registry.LAYERS, ids=lambda layer: layer.key)
def test_missing_columns_give_a_clear_error(layer: Layer):
    frame = SAMPLES[layer.key]().drop(layer.required[0])
    with pytest.raises(ValueError, match=f"layer '{layer.key}' needs columns .*{layer.required[0]}"):
        layer.build(frame)
    with pytest.raises(ValueError, match=layer.required[0]):
        layer.build_folium(frame)


def test_hex_trace_cells_values_and_colours():
    (t,) = registry.get("hexes").build(
        _hex_frame(), DrawContext(metric="pickups", text={"metric_pickups": "Pickups"})
    )
    assert t["locations"] == [CENTRE, RING[0], RING[1]]
    assert t["z"] == [10.0, 20.0, 30.0]
    assert [f["id"] for f in t["geojson"]["features"]] == t["locations"]
    assert t["colorscale"] == [list(s) for s in hexes.SEQUENTIAL]
    assert t["zmin"] == 0.0 and t["zmax"] == pytest.approx(np.percentile([10, 20, 30], 95))
    assert t["customdata"][2] == [RING[1], "南山区", 30.0, 2.0]
    assert "Pickups" in t["colorbar"]["title"]["text"]
    ring = t["geojson"]["features"][0]["geometry"]["coordinates"][0]
    assert len(ring) == 7 and ring[0] == ring[-1]
    lat, lng = h3.cell_to_latlng(CENTRE)
    assert abs(np.mean([p[0] for p in ring[:-1]]) - lng) < 1e-3
    assert abs(np.mean([p[1] for p in ring[:-1]]) - lat) < 1e-3


def test_load_ratio_metric_uses_fixed_range():
    (t,) = hexes.traces(_hex_frame(), DrawContext(metric="load_ratio"))
    assert (t["zmin"], t["zmax"]) == (0.0, 3.0) and t["colorscale"][0][1] == hexes.RATIO[0][1]


def test_hex_geometry_shifted_to_gcj02():
    plain = hexes.geojson([h3.str_to_int(CENTRE)])
    shifted = hexes.geojson([h3.str_to_int(CENTRE)], DrawContext(gcj02=True))
    p0 = plain["features"][0]["geometry"]["coordinates"][0][0]
    p1 = shifted["features"][0]["geometry"]["coordinates"][0][0]
    lat, lng = wgs84_to_gcj02([p0[1]], [p0[0]])
    assert p1 == pytest.approx([round(lng[0], 5), round(lat[0], 5)], abs=3e-5)


def test_values_only_update_is_small():
    v = hexes.values(_hex_frame())
    assert set(v) == {"locations", "z", "customdata", "zmin", "zmax"}
    assert "geojson" not in v


def test_couriers_coloured_by_state():
    (t,) = registry.get("couriers").build(SAMPLES["couriers"]())
    style = registry.get("couriers").style
    assert t["marker"]["color"] == [style.categories[s] for s in ("moving", "stopped", "offline")]


def test_outlets_sized_by_capacity_coloured_by_load():
    (t,) = registry.get("outlets").build(SAMPLES["outlets"]())
    assert t["marker"]["size"][0] < t["marker"]["size"][1]
    style = registry.get("outlets").style
    assert t["marker"]["color"][1] == colour_at(style.colorscale, 1.4 / 1.5)


def test_vehicle_heading_points_east():
    heading, dots = registry.get("vehicles").build(SAMPLES["vehicles"]())
    assert heading["lon"][1] > heading["lon"][0] and heading["lat"][1] == pytest.approx(heading["lat"][0])
    assert dots["lat"] == [22.54]


def test_zones_outline_selected_zone_apart():
    z = _zones_frame()
    normal, chosen = registry.get("zones").build(z, DrawContext(selected=1))
    assert normal["lat"] == [] and len(chosen["lat"]) > 7
    normal, chosen = registry.get("zones").build(z, DrawContext())
    assert len(normal["lat"]) > 7 and chosen["lat"] == []


def test_outlines_fill_lines_and_labels():
    fill, lines, labels = registry.get("outlines").build(_outlines_frame())
    assert fill["locations"] == ["b-440304", "b-440305"]
    assert labels["text"] == ["福田区", "南山区"] and labels["customdata"][0][0] == "b-440304"
    assert lines["lat"].count(None) == 2
