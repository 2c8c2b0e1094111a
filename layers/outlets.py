"""Outlets: size by courier capacity, colour by load (parcels of the hour / hourly capacity)."""

from __future__ import annotations

import numpy as np

from layers import escape
from layers.base import DrawContext, Layer, Style
from layers.points import folium_points, marker_trace

REQUIRED = ("outlet_id", "name", "lat", "lng", "capacity_couriers", "load")
STYLE = Style(
    field="load", colorscale=((0.0, "#1a9850"), (0.5, "#fee08b"), (1.0, "#d73027")), range=(0.0, 1.5)
)


def sizes(capacity) -> list[float]:
    """Marker size 8..24 px growing with the square root of the courier capacity.

    Examples
    --------
    >>> sizes([0, 16, 64])
    [8.0, 16.0, 24.0]
    """
    c = np.sqrt(np.clip(np.asarray(capacity, dtype=float), 0, None))
    return np.round(8 + 16 * c / max(float(c.max()) if c.size else 1.0, 1.0), 1).tolist()


def _traces(frame, ctx: DrawContext) -> list[dict]:
    custom = [
        [o, escape.plotly(n), int(c), round(float(x), 2)]
        for o, n, c, x in zip(
            frame["outlet_id"].to_list(),
            frame["name"].to_list(),
            frame["capacity_couriers"].to_list(),
            frame["load"].fill_null(0).to_list(),
            strict=True,
        )
    ]
    hover = (
        f"{ctx.t('outlet')} %{{customdata[1]}}<br>{ctx.t('capacity')}: %{{customdata[2]}}<br>"
        f"{ctx.t('load')}: %{{customdata[3]}}<extra></extra>"
    )
    t = marker_trace(frame, ctx, "outlets", STYLE, hover, custom)
    t["marker"]["size"] = sizes(frame["capacity_couriers"].to_numpy())
    return [t]


def _folium(frame, ctx: DrawContext):
    tips = [escape.tooltip(n) for n in frame["name"].to_list()]
    r = [s / 3 for s in sizes(frame["capacity_couriers"].to_numpy())]
    return folium_points(frame, ctx, ctx.t("layer_outlets"), STYLE, tips, radius=r)


LAYER = Layer("outlets", REQUIRED, STYLE, _traces, _folium, trace_depths=(("outlets", 40),))
