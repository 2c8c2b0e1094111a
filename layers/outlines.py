"""Territory outlines of the current node's children, with their names.

Three traces: a nearly transparent fill (what a click on a territory hits, hover
gives the name), the outline on top of the hexes, and text labels. Chinese names are
drawn with the browser's fonts; Latin letters and digits come from the glyphs served
from ``assets/glyphs`` (``assets/map-style.json``, built by ``tools/make_glyphs.py``).
"""

from __future__ import annotations

import numpy as np
import shapely

from layers import escape
from layers.base import DrawContext, Layer, Style, lines_from_rings

REQUIRED = ("node_id", "name", "label_lat", "label_lng", "geometry")
#: Font stack of the map's label glyphs (``assets/glyphs/<GLYPH_FONT>/``).
GLYPH_FONT = "Open Sans Regular"
STYLE = Style(field=None, colorscale=((0.0, "#3366cc"), (1.0, "#3366cc")), opacity=0.05)


def _rings(geom) -> list:
    out = []
    for poly in getattr(geom, "geoms", [geom]):
        if poly.is_empty or poly.geom_type != "Polygon":
            continue
        out.append(np.asarray(poly.exterior.coords))
    return out


def _feature(node_id, geom, ctx: DrawContext) -> dict:
    polys = []
    for ring in _rings(geom):
        la, ln = ctx.shift(ring[:, 1], ring[:, 0])
        polys.append([np.round(np.column_stack([ln, la]), 5).tolist()])
    return {"type": "Feature", "id": node_id, "geometry": {"type": "MultiPolygon", "coordinates": polys}}


def _traces(frame, ctx: DrawContext) -> list[dict]:
    ids = list(frame["node_id"])
    names = [str(n) for n in frame["name"]]
    # hover labels read HTML; the map's text labels are drawn as plain glyphs
    shown = [escape.plotly(n) for n in names]
    geoms = list(frame["geometry"])
    gj = {
        "type": "FeatureCollection",
        "features": [_feature(i, g, ctx) for i, g in zip(ids, geoms, strict=True)],
    }
    rings = [r for g in geoms for r in _rings(g)]
    lats, lngs = lines_from_rings(rings, ctx)
    la, ln = ctx.shift(
        np.asarray(frame["label_lat"], dtype=float), np.asarray(frame["label_lng"], dtype=float)
    )
    return [
        {
            "type": "choroplethmap",
            "name": "territories",
            "uid": "territories",
            "geojson": gj,
            "featureidkey": "id",
            "locations": ids,
            "z": [1] * len(ids),
            "customdata": [[i, n] for i, n in zip(ids, shown, strict=True)],
            "colorscale": [[0, "#3366cc"], [1, "#3366cc"]],
            "showscale": False,
            "marker": {"opacity": STYLE.opacity, "line": {"width": 0}},
            "hovertemplate": "%{customdata[1]}<extra></extra>",
        },
        {
            "type": "scattermap",
            "name": "outlines",
            "uid": "outlines",
            "mode": "lines",
            "lat": lats,
            "lon": lngs,
            "line": {"width": 1.5, "color": "#3a4a6b"},
            "hoverinfo": "skip",
            "showlegend": False,
        },
        {
            "type": "scattermap",
            "name": "labels",
            "uid": "labels",
            "mode": "text+markers",
            "lat": np.round(la, 5).tolist(),
            "lon": np.round(ln, 5).tolist(),
            "text": names,
            "customdata": [[i, n] for i, n in zip(ids, shown, strict=True)],
            "marker": {"size": 4, "color": "#3a4a6b"},
            # the font stack of the glyphs in assets/glyphs (no remote glyph server)
            "textfont": {"size": 12, "color": "#1f2a44", "family": GLYPH_FONT},
            "textposition": "top center",
            "hovertemplate": "%{customdata[1]}<extra></extra>",
            "showlegend": False,
        },
    ]


def _folium(frame, ctx: DrawContext):
    import folium

    group = folium.FeatureGroup(name=ctx.t("layer_outlines"))
    for node_id, name, geom, lat, lng in zip(
        frame["node_id"],
        frame["name"],
        frame["geometry"],
        frame["label_lat"],
        frame["label_lng"],
        strict=True,
    ):
        folium.GeoJson(
            _feature(node_id, geom, ctx),
            tooltip=escape.tooltip(name),
            style_function=lambda f: {"fill": False, "color": "#3a4a6b", "weight": 1.5},
        ).add_to(group)
        la, ln = ctx.shift([lat], [lng])
        folium.Marker(
            [float(la[0]), float(ln[0])],
            icon=folium.DivIcon(html=f'<div style="font-size:12px;color:#1f2a44">{escape.html(name)}</div>'),
        ).add_to(group)
    return group


LAYER = Layer(
    "outlines",
    REQUIRED,
    STYLE,
    _traces,
    _folium,
    trace_depths=(("territories", 0), ("outlines", 20), ("labels", 21)),
)


def bounds(frame) -> tuple[float, float, float, float]:
    """(lng_min, lat_min, lng_max, lat_max) of the territories.

    Examples
    --------
    >>> bounds({"geometry": [shapely.box(114.0, 22.5, 114.1, 22.6), shapely.box(113.9, 22.4, 114.0, 22.6)]})
    (113.9, 22.4, 114.1, 22.6)
    """
    box = shapely.total_bounds(np.asarray(frame["geometry"]))
    lng_min, lat_min, lng_max, lat_max = (float(v) for v in box)
    return lng_min, lat_min, lng_max, lat_max
