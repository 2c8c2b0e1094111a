"""Peak-load zones: the outline of each zone's cells, the selected one highlighted."""

from __future__ import annotations

import numpy as np
import shapely

from geo import cells as h3cells
from layers.base import DrawContext, Layer, Style, lines_from_rings

REQUIRED = ("zone_id", "cells", "n_cells", "workload", "peak_ratio")
STYLE = Style(
    field="peak_ratio",
    colorscale=((0.0, "#d7301f"), (1.0, "#d7301f")),
    categories={"zone": "#d7301f", "selected": "#6a00a8"},
)


def zone_polygon(cells):
    """Union of a zone's hexagons (a shapely geometry)."""
    rings = h3cells.boundaries(np.asarray(cells, dtype=np.uint64))
    return shapely.union_all([shapely.Polygon(r) for r in rings]).buffer(0)


def _rings(geom) -> list:
    out = []
    for poly in getattr(geom, "geoms", [geom]):
        out.append(np.asarray(poly.exterior.coords))
    return out


def _traces(frame, ctx: DrawContext) -> list[dict]:
    normal, chosen = [], []
    for zid, cells in zip(frame["zone_id"].to_list(), frame["cells"].to_list(), strict=True):
        (chosen if ctx.selected is not None and int(zid) == int(ctx.selected) else normal).extend(
            _rings(zone_polygon(cells))
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
            tooltip=f"#{zid}: {n} cells, {w:.0f} parcels",
            style_function=lambda f: {"color": STYLE.categories["zone"], "weight": 3, "fillOpacity": 0.1},
        ).add_to(group)
    return group


LAYER = Layer("zones", REQUIRED, STYLE, _traces, _folium)
