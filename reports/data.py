"""Data exports of the hex aggregates: GeoJSON (RFC 7946), CSV and GeoParquet.

Every format carries the same columns: ``cell`` (H3 id as a hex string), ``lat`` and
``lng`` of the cell centre (WGS-84), ``node`` (child unit holding the cell), ``value``
(the report's metric) and the counts of :data:`reports.build.HEX_COLUMNS`. GeoJSON
polygons follow RFC 7946: WGS-84 longitude/latitude, exterior rings counter-clockwise,
no ``crs`` member.

In the CSV, text cells that a spreadsheet would read as a formula (starting with
``= + - @``, a tab or a carriage return; a unit's name, say) are prefixed with a single
quote (``layers.escape.csv_cell``); GeoJSON and GeoParquet keep the values as they are.

Examples
--------
A report of one cell (built by hand here; :func:`reports.build.build` makes them from
the store) whose unit's name reads as a formula:

>>> from datetime import datetime
>>> import geopandas as gpd
>>> from reports.build import Period
>>> report = Report(
...     node={"node_id": "b-440304", "name": "Futian"}, path=[], period=Period("2026-11-20", hour=9),
...     metric="pickups", res=9, generated_at=datetime(2026, 11, 20, 10),
...     hexes=pl.DataFrame({"cell": h3cells.from_str(["89411caa05bffff"]),
...                         "node": ['=HYPERLINK("http://x")'], "value": [12], "pickups": [12]}),
...     outlines=gpd.GeoDataFrame(), outlets=pl.DataFrame(), zones=pl.DataFrame(), zone_hours=1,
...     kpis=[], children=pl.DataFrame(), bounds=(114.0, 22.5, 114.1, 22.6))
>>> render(report, "csv").decode().splitlines()
['cell,lat,lng,node,value,pickups,metric', '89411caa05bffff,22.543835,114.058913,"\\'=HYPERLINK(""http://x"")",12.0,12,pickups']
>>> feature = geojson(report)["features"][0]
>>> feature["id"], feature["properties"]["node"], len(feature["geometry"]["coordinates"][0])
('89411caa05bffff', '=HYPERLINK("http://x")', 7)
"""

from __future__ import annotations

import io

import numpy as np
import orjson
import polars as pl
import shapely

from geo import cells as h3cells
from layers import escape
from reports.build import Report

#: Decimals of exported coordinates (~0.1 m).
COORD_DECIMALS = 6


def table(report: Report) -> pl.DataFrame:
    """The exported columns, one row per cell (``cell`` as a hex string)."""
    f = report.hexes
    lat, lng = h3cells.centers(f["cell"].to_numpy())
    return f.select(
        pl.Series("cell", h3cells.to_str(f["cell"].to_numpy()), dtype=pl.String),
        pl.Series("lat", np.round(lat, COORD_DECIMALS)),
        pl.Series("lng", np.round(lng, COORD_DECIMALS)),
        "node",
        pl.col("value").cast(pl.Float64),
        *[c for c in f.columns if c not in ("cell", "node", "value")],
    ).with_columns(pl.lit(report.metric).alias("metric"))


def polygons(report: Report) -> np.ndarray:
    """Shapely hexagons of the cells, exterior rings counter-clockwise (RFC 7946)."""
    rings = h3cells.boundaries(report.hexes["cell"].to_numpy())
    polys = (
        shapely.polygons([np.round(np.asarray(r), COORD_DECIMALS) for r in rings])
        if rings
        else np.array([], dtype=object)
    )
    return shapely.orient_polygons(polys, exterior_cw=False) if len(polys) else polys


def geojson(report: Report) -> dict:
    """RFC 7946 FeatureCollection of the cells with their values as properties."""
    t = table(report)
    feats = []
    for row, poly in zip(t.iter_rows(named=True), polygons(report), strict=True):
        coords = [[list(p) for p in poly.exterior.coords]]
        feats.append(
            {
                "type": "Feature",
                "id": row["cell"],
                "properties": row,
                "geometry": {"type": "Polygon", "coordinates": coords},
            }
        )
    lng0, lat0, lng1, lat1 = report.bounds
    return {
        "type": "FeatureCollection",
        "bbox": [lng0, lat0, lng1, lat1],
        "name": report.file_stem(),
        "features": feats,
    }


def geodataframe(report: Report):
    """The cells as a GeoDataFrame in EPSG:4326."""
    import geopandas as gpd

    return gpd.GeoDataFrame(table(report).to_pandas(), geometry=polygons(report), crs="EPSG:4326")


def render(report: Report, fmt: str) -> bytes:
    """Bytes of the ``geojson``, ``csv`` or ``parquet`` export."""
    if fmt == "geojson":
        return orjson.dumps(geojson(report), option=orjson.OPT_SERIALIZE_NUMPY)
    if fmt == "csv":
        return escape.csv_frame(table(report)).write_csv().encode("utf-8")
    if fmt == "parquet":
        buf = io.BytesIO()
        geodataframe(report).to_parquet(buf, index=False)
        return buf.getvalue()
    raise ValueError(f"not a data format: {fmt!r}")
