"""Courier positions: the latest fix of each courier in the window, coloured by state."""

from __future__ import annotations

from layers import escape
from layers.base import DrawContext, Layer, Style
from layers.points import folium_points, marker_trace

REQUIRED = ("courier_id", "lat", "lng", "state", "ts")
STYLE = Style(field="state", categories={"moving": "#1b9e77", "stopped": "#e6ab02", "offline": "#7f7f7f"})


def _traces(frame, ctx: DrawContext) -> list[dict]:
    states = [ctx.t("state_" + s) for s in frame["state"].to_list()]
    # customdata[0] stays the raw id (what a click hands on); the hover shows [3], escaped
    custom = [
        [c, escape.plotly(s), str(t)[:16], escape.plotly(c)]
        for c, s, t in zip(frame["courier_id"].to_list(), states, frame["ts"].to_list(), strict=True)
    ]
    hover = f"{ctx.t('courier')} %{{customdata[3]}}<br>%{{customdata[1]}}<br>%{{customdata[2]}} UTC<extra></extra>"
    return [marker_trace(frame, ctx, "couriers", STYLE, hover, custom, size=6)]


def _folium(frame, ctx: DrawContext):
    tips = [
        escape.tooltip(f"{c} ({s})")
        for c, s in zip(frame["courier_id"].to_list(), frame["state"].to_list(), strict=True)
    ]
    return folium_points(frame, ctx, ctx.t("layer_couriers"), STYLE, tips, radius=3)


LAYER = Layer(
    "couriers", REQUIRED, STYLE, _traces, _folium, trace_depths=(("couriers", 60),), default_on=False
)
