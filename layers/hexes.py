"""H3 hex layer: one choropleth of the selected metric.

Geometry and values are separate so that the geometry (a GeoJSON of every cell the
view may show) is sent once and later updates carry only ids and values
(:func:`values`), as ``dash.Patch`` of the trace.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from geo import cells as h3cells
from layers import escape
from layers.base import DrawContext, Layer, Style, colour_at, value_range

SEQUENTIAL = ((0.0, "#fff7bc"), (0.25, "#fec44f"), (0.5, "#fe9929"), (0.75, "#d95f0e"), (1.0, "#993404"))
RATIO = ((0.0, "#1a9850"), (0.33, "#a6d96a"), (0.5, "#ffffbf"), (0.66, "#fdae61"), (1.0, "#d73027"))

#: Style per metric (the layer's default style is the sequential one).
METRIC_STYLES = {
    "pickups": Style("pickups", SEQUENTIAL),
    "deliveries": Style("deliveries", SEQUENTIAL),
    "scans": Style("scans", SEQUENTIAL),
    "pings": Style("pings", SEQUENTIAL),
    "couriers": Style("couriers", SEQUENTIAL),
    # 0 .. 3 with the default threshold 1.5 in the middle of the scale.
    "load_ratio": Style("load_ratio", RATIO, range=(0.0, 3.0)),
}
METRICS = tuple(METRIC_STYLES)
REQUIRED = ("cell", "value", "load_ratio", "node")


def geojson(cells, ctx: DrawContext | None = None) -> dict:
    """FeatureCollection of cell hexagons, feature ``id`` = hex string of the cell.

    Examples
    --------
    >>> feature = geojson(h3cells.from_str(["89411caa05bffff"]))["features"][0]
    >>> feature["id"], len(feature["geometry"]["coordinates"][0])
    ('89411caa05bffff', 7)
    """
    ctx = ctx or DrawContext()
    cells = np.asarray(cells, dtype=np.uint64)
    ids = h3cells.to_str(cells)
    feats = []
    for cid, ring in zip(ids, h3cells.boundaries(cells), strict=True):
        arr = np.asarray(ring)
        la, ln = ctx.shift(arr[:, 1], arr[:, 0])
        coords = np.round(np.column_stack([ln, la]), 5).tolist()
        feats.append({"type": "Feature", "id": cid, "geometry": {"type": "Polygon", "coordinates": [coords]}})
    return {"type": "FeatureCollection", "features": feats}


def values(frame: pl.DataFrame, ctx: DrawContext | None = None) -> dict:
    """The per-update part of the hex trace: locations, z, customdata, colour range.

    Examples
    --------
    Names from data are escaped for plotly's hover text:

    >>> f = pl.DataFrame({"cell": h3cells.from_str(["89411caa05bffff"]), "value": [12],
    ...                   "load_ratio": [1.234], "node": ["<b>Futian</b>"]})
    >>> values(f, DrawContext(metric="pickups"))
    {'locations': ['89411caa05bffff'], 'z': [12.0], 'customdata': [['89411caa05bffff', '&lt;b&gt;Futian&lt;/b&gt;', 12.0, 1.23]], 'zmin': 0.0, 'zmax': 12.0}
    """
    ctx = ctx or DrawContext()
    style = METRIC_STYLES.get(ctx.metric, METRIC_STYLES["scans"])
    z = frame["value"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    lo, hi = value_range(z, style)
    ratio = np.round(frame["load_ratio"].cast(pl.Float64).fill_null(0).to_numpy(), 2)
    ids = h3cells.to_str(frame["cell"].to_numpy())
    custom = [
        list(r)
        for r in zip(
            ids,
            [escape.plotly(n) for n in frame["node"].fill_null("").to_list()],
            np.round(z, 2).tolist(),
            ratio.tolist(),
            strict=True,
        )
    ]
    return {"locations": ids, "z": np.round(z, 3).tolist(), "customdata": custom, "zmin": lo, "zmax": hi}


def _traces(frame: pl.DataFrame, ctx: DrawContext, geometry: dict | None = None) -> list[dict]:
    style = METRIC_STYLES.get(ctx.metric, METRIC_STYLES["scans"])
    v = values(frame, ctx)
    hover = (
        f"{ctx.t('cell')}: %{{customdata[0]}}<br>{ctx.t('node')}: %{{customdata[1]}}<br>"
        f"{ctx.t('metric_' + ctx.metric)}: %{{customdata[2]}}<br>"
        f"{ctx.t('load_ratio')}: %{{customdata[3]}}<extra></extra>"
    )
    return [
        {
            "type": "choroplethmap",
            "name": "hexes",
            "uid": "hexes",
            "geojson": geometry if geometry is not None else geojson(frame["cell"].to_numpy(), ctx),
            "featureidkey": "id",
            **v,
            "colorscale": [list(s) for s in style.colorscale],
            "marker": {"opacity": style.opacity, "line": {"width": 0.3, "color": "#ffffff"}},
            "colorbar": {
                "title": {"text": ctx.t("metric_" + ctx.metric)},
                "thickness": 12,
                "len": 0.5,
                "x": 0.99,
                "xanchor": "right",
                "y": 0.02,
                "yanchor": "bottom",
            },
            "hovertemplate": hover,
        }
    ]


def _folium(frame: pl.DataFrame, ctx: DrawContext):
    import folium

    style = METRIC_STYLES.get(ctx.metric, METRIC_STYLES["scans"])
    gj = geojson(frame["cell"].to_numpy(), ctx)
    z = frame["value"].cast(pl.Float64).to_numpy()
    lo, hi = value_range(z, style)
    colour = {
        f["id"]: (
            style.null_colour
            if not np.isfinite(val)
            else colour_at(style.colorscale, (val - lo) / (hi - lo or 1))
        )
        for f, val in zip(gj["features"], z, strict=True)
    }
    group = folium.FeatureGroup(name=ctx.t("layer_hexes"))
    folium.GeoJson(
        gj,
        style_function=lambda f: {
            "fillColor": colour.get(f["id"], style.null_colour),
            "fillOpacity": style.opacity,
            "weight": 0.3,
            "color": "#ffffff",
        },
    ).add_to(group)
    return group


LAYER = Layer("hexes", REQUIRED, METRIC_STYLES["scans"], _traces, _folium, trace_depths=(("hexes", 10),))


def traces(frame: pl.DataFrame, ctx: DrawContext | None = None, geometry: dict | None = None) -> list[dict]:
    """Hex traces, optionally reusing a prebuilt ``geometry`` (see :func:`geojson`)."""
    LAYER.check(frame)
    return _traces(frame, ctx or DrawContext(), geometry)
