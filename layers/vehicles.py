"""Vehicles: latest fix in the window with a short stroke pointing along the heading.

The heading is a line segment rather than a rotated icon: icons need the map
style's sprites, which the offline (tile-less) style does not have.
"""

from __future__ import annotations

import numpy as np

from layers import escape
from layers.base import DrawContext, Layer, Style
from layers.points import folium_points, marker_trace

REQUIRED = ("vehicle_id", "lat", "lng", "heading", "state")
STYLE = Style(field="state", categories={"moving": "#2c7fb8", "stopped": "#41b6c4", "offline": "#7f7f7f"})
#: Length of the heading stroke in degrees of latitude (~400 m).
STROKE = 0.004


def _traces(frame, ctx: DrawContext) -> list[dict]:
    # customdata[0] stays the raw id (what a click hands on); the hover shows [2], escaped
    custom = [
        [v, escape.plotly(ctx.t("state_" + s)), escape.plotly(v)]
        for v, s in zip(frame["vehicle_id"].to_list(), frame["state"].to_list(), strict=True)
    ]
    hover = f"{ctx.t('vehicle')} %{{customdata[2]}}<br>%{{customdata[1]}}<extra></extra>"
    dots = marker_trace(frame, ctx, "vehicles", STYLE, hover, custom, size=10)
    lat = frame["lat"].to_numpy().astype(float)
    lng = frame["lng"].to_numpy().astype(float)
    h = np.radians(np.nan_to_num(frame["heading"].cast(float).to_numpy(), nan=0.0))
    lat2 = lat + STROKE * np.cos(h)
    lng2 = lng + STROKE * np.sin(h) / np.cos(np.radians(lat))
    la1, ln1 = ctx.shift(lat, lng)
    la2, ln2 = ctx.shift(lat2, lng2)
    lats, lngs = [], []
    for a, b, c, d in zip(la1, ln1, la2, ln2, strict=True):
        lats += [round(float(a), 6), round(float(c), 6), None]
        lngs += [round(float(b), 6), round(float(d), 6), None]
    heading = {
        "type": "scattermap",
        "name": "vehicle_heading",
        "uid": "vehicle_heading",
        "mode": "lines",
        "lat": lats,
        "lon": lngs,
        "line": {"width": 2, "color": STYLE.categories["moving"]},
        "hoverinfo": "skip",
        "showlegend": False,
    }
    return [heading, dots]


def _folium(frame, ctx: DrawContext):
    tips = [
        escape.tooltip(f"{v} {s}")
        for v, s in zip(frame["vehicle_id"].to_list(), frame["state"].to_list(), strict=True)
    ]
    return folium_points(frame, ctx, ctx.t("layer_vehicles"), STYLE, tips, radius=5)


LAYER = Layer(
    "vehicles",
    REQUIRED,
    STYLE,
    _traces,
    _folium,
    trace_depths=(("vehicle_heading", 50), ("vehicles", 51)),
    default_on=False,
)
