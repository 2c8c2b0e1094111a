"""Shared builder of point layers (couriers, vehicles, outlets)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from layers.base import DrawContext, Style, colour_at


def colours(frame, style: Style) -> list[str]:
    """Marker colour per row: by category, or along the colour scale over the range."""
    if style.categories:
        return [style.categories.get(v, style.null_colour) for v in frame[style.field].to_list()]
    v = np.asarray(frame[style.field].to_list(), dtype=float)
    lo, hi = style.range or (0.0, 1.0)
    return [
        style.null_colour if not np.isfinite(x) else colour_at(style.colorscale, (x - lo) / ((hi - lo) or 1))
        for x in v
    ]


def marker_trace(frame, ctx: DrawContext, name: str, style: Style, hover: str, custom: list, size=8) -> dict:
    la, ln = ctx.shift(frame["lat"].to_numpy(), frame["lng"].to_numpy())
    return {
        "type": "scattermap",
        "name": name,
        "uid": name,
        "mode": "markers",
        "lat": np.round(la, 6).tolist(),
        "lon": np.round(ln, 6).tolist(),
        "marker": {"size": size, "color": colours(frame, style), "opacity": 0.9},
        "customdata": custom,
        "hovertemplate": hover,
        "showlegend": False,
    }


def folium_points(
    frame,
    ctx: DrawContext,
    title: str,
    style: Style,
    tips: list,
    radius: float | Sequence[float] | np.ndarray = 4,
):
    """A folium group of circle markers; ``radius`` (px): one for all, or one per row."""
    import folium

    group = folium.FeatureGroup(name=title)
    la, ln = ctx.shift(frame["lat"].to_numpy(), frame["lng"].to_numpy())
    radii = list(radius) if isinstance(radius, Sequence | np.ndarray) else [radius] * len(la)
    for i, (a, b, c, tip) in enumerate(zip(la, ln, colours(frame, style), tips, strict=True)):
        folium.CircleMarker(
            [float(a), float(b)], radius=radii[i], color=c, fill=True, fill_opacity=0.9, tooltip=tip
        ).add_to(group)
    return group
