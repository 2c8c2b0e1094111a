"""Dispatch suggestions: an arrow from each source area to the zone it relieves, with the
number of couriers at its middle.

Arrowheads are two short strokes drawn as lines: marker symbols would need the map
style's sprites, which the offline (tile-less) style does not have. The frame is the
``moves`` frame of ``geo.dispatch.suggest``.
"""

from __future__ import annotations

import numpy as np

from layers.base import DrawContext, Layer, Style

REQUIRED = ("zone_id", "couriers", "src_lat", "src_lng", "dst_lat", "dst_lng")
STYLE = Style(field="couriers", categories={"arrow": "#2166ac"}, opacity=0.9)
#: Arrowhead length as a share of the arrow, and its half-angle (degrees).
HEAD = 0.18
HEAD_ANGLE = 25.0


def arrow_paths(frame, ctx: DrawContext) -> tuple[list, list]:
    """Lat and lng lists of every arrow (shaft and head strokes), separated by None."""
    la0, ln0 = ctx.shift(frame["src_lat"].to_numpy(), frame["src_lng"].to_numpy())
    la1, ln1 = ctx.shift(frame["dst_lat"].to_numpy(), frame["dst_lng"].to_numpy())
    k = np.cos(np.radians((la0 + la1) / 2))  # work in a locally square frame
    dx, dy = (ln1 - ln0) * k, la1 - la0
    lats: list = []
    lngs: list = []
    for i in range(len(la0)):
        lats += [round(float(la0[i]), 6), round(float(la1[i]), 6), None]
        lngs += [round(float(ln0[i]), 6), round(float(ln1[i]), 6), None]
        for sign in (1, -1):
            a = np.radians(180.0 + sign * HEAD_ANGLE)
            hx = HEAD * (dx[i] * np.cos(a) - dy[i] * np.sin(a))
            hy = HEAD * (dx[i] * np.sin(a) + dy[i] * np.cos(a))
            lats += [round(float(la1[i]), 6), round(float(la1[i] + hy), 6), None]
            lngs += [round(float(ln1[i]), 6), round(float(ln1[i] + hx / k[i]), 6), None]
    return lats, lngs


def _traces(frame, ctx: DrawContext) -> list[dict]:
    lats, lngs = arrow_paths(frame, ctx)
    colour = STYLE.categories["arrow"]
    arrows = {
        "type": "scattermap",
        "name": "dispatch_arrows",
        "uid": "dispatch_arrows",
        "mode": "lines",
        "lat": lats,
        "lon": lngs,
        "line": {"width": 3, "color": colour},
        "opacity": STYLE.opacity,
        "hoverinfo": "skip",
        "showlegend": False,
    }
    mid_lat, mid_lng = ctx.shift(
        (frame["src_lat"].to_numpy() + frame["dst_lat"].to_numpy()) / 2,
        (frame["src_lng"].to_numpy() + frame["dst_lng"].to_numpy()) / 2,
    )
    n = frame["couriers"].to_list()
    custom = [[int(z), int(c)] for z, c in zip(frame["zone_id"].to_list(), n, strict=True)]
    labels = {
        "type": "scattermap",
        "name": "dispatch_labels",
        "uid": "dispatch_labels",
        "mode": "markers+text",
        "lat": np.round(mid_lat, 6).tolist(),
        "lon": np.round(mid_lng, 6).tolist(),
        "text": [f"+{int(c)}" for c in n],
        "textposition": "top center",
        "marker": {"size": 8, "color": colour},
        "customdata": custom,
        "hovertemplate": f"{ctx.t('zone')} #%{{customdata[0]}}<br>{ctx.t('couriers_moved')}: "
        f"%{{customdata[1]}}<extra></extra>",
        "showlegend": False,
    }
    return [arrows, labels]


def _folium(frame, ctx: DrawContext):
    import folium

    group = folium.FeatureGroup(name=ctx.t("layer_dispatch"))
    lats, lngs = arrow_paths(frame, ctx)
    line: list = []
    for la, ln in zip(lats, lngs, strict=True):
        if la is None:
            folium.PolyLine(line, color=STYLE.categories["arrow"], weight=3, opacity=STYLE.opacity).add_to(
                group
            )
            line = []
        else:
            line.append((la, ln))
    mid_lat, mid_lng = ctx.shift(
        (frame["src_lat"].to_numpy() + frame["dst_lat"].to_numpy()) / 2,
        (frame["src_lng"].to_numpy() + frame["dst_lng"].to_numpy()) / 2,
    )
    for la, ln, z, c in zip(
        mid_lat, mid_lng, frame["zone_id"].to_list(), frame["couriers"].to_list(), strict=True
    ):
        folium.CircleMarker(
            (float(la), float(ln)),
            radius=4,
            color=STYLE.categories["arrow"],
            fill=True,
            tooltip=f"#{z}: +{c}",
        ).add_to(group)
    return group


LAYER = Layer("dispatch_arrows", REQUIRED, STYLE, _traces, _folium, default_on=False)
