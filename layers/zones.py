"""Peak-load zones: the outline of each zone's cells, the selected one highlighted."""

from __future__ import annotations

import numpy as np
import shapely

from geo import cells as h3cells
from layers import escape
from layers.base import DrawContext, Layer, Style, lines_from_rings

REQUIRED = ("zone_id", "cells", "n_cells", "workload", "peak_ratio")
STYLE = Style(
    field="peak_ratio",
    colorscale=((0.0, "#d7301f"), (1.0, "#d7301f")),
    categories={"zone": "#d7301f", "selected": "#6a00a8"},
)


def zone_polygon(cells):
    """Union of a zone's hexagons (a shapely geometry).

    Examples
    --------
    A cell and its six neighbours: one polygon with 18 corners (the first repeated).

    >>> import h3
    >>> from geo.cells import from_str
    >>> outline = zone_polygon(from_str(h3.grid_disk("89411caa05bffff", 1)))
    >>> outline.geom_type, len(outline.exterior.coords)
    ('Polygon', 19)
    """
    return zone_polygons([cells])[0]


def zone_polygons(zones) -> list:
    """:func:`zone_polygon` of many zones: one boundary computation for all their cells."""
    arrays = [np.asarray(c, dtype=np.uint64) for c in zones]
    if not arrays:
        return []
    hexes = [shapely.Polygon(r) for r in h3cells.boundaries(np.concatenate(arrays))]
    out, start = [], 0
    for a in arrays:
        part = hexes[start : start + a.size]
        start += a.size
        # one hexagon is already its own outline; unions of several are cleaned of slivers
        out.append(part[0] if len(part) == 1 else shapely.union_all(part).buffer(0))
    return out


def _rings(geom) -> list:
    out = []
    for poly in getattr(geom, "geoms", [geom]):
        out.append(np.asarray(poly.exterior.coords))
    return out


def _traces(frame, ctx: DrawContext) -> list[dict]:
    normal, chosen = [], []
    polygons = zone_polygons(frame["cells"].to_list())
    for zid, polygon in zip(frame["zone_id"].to_list(), polygons, strict=True):
        (chosen if ctx.selected is not None and int(zid) == int(ctx.selected) else normal).extend(
            _rings(polygon)
        )
    out = []
    for name, rings, colour, width in (
        ("zones", normal, STYLE.categories["zone"], 2.5),
        ("zone_selected", chosen, STYLE.categories["selected"], 5),
    ):
        lats, lngs = lines_from_rings(rings, ctx)
        out.append(
            {
                "type": "scattermap",
                "name": name,
                "uid": name,
                "mode": "lines",
                "lat": lats,
                "lon": lngs,
                "line": {"width": width, "color": colour},
                "hoverinfo": "skip",
                "showlegend": False,
            }
        )
    return out


def _folium(frame, ctx: DrawContext):
    import folium

    group = folium.FeatureGroup(name=ctx.t("layer_zones"))
    for zid, cells, n, w in zip(
        frame["zone_id"], frame["cells"], frame["n_cells"], frame["workload"], strict=True
    ):
        folium.GeoJson(
            shapely.geometry.mapping(zone_polygon(cells)),
            tooltip=escape.tooltip(f"#{zid}: {n} cells, {w:.0f} parcels"),
            style_function=lambda f: {"color": STYLE.categories["zone"], "weight": 3, "fillOpacity": 0.1},
        ).add_to(group)
    return group


LAYER = Layer("zones", REQUIRED, STYLE, _traces, _folium, trace_depths=(("zones", 30), ("zone_selected", 31)))
