"""Dispatch suggestions: an arrow from each source (an area, an outlet with idle couriers,
a base with idle vans) to the zone it relieves, with the number moved at its middle.

Couriers and vans are drawn apart: courier arrows blue and thin, van arrows orange and
thick, with the count written "+3" for couriers and "+1 车" (the ``van_short`` text)
for vans; hovering the middle marker names the kind, mode, source, distance and minutes
on the road.
Arrowheads are two short strokes drawn as lines: marker symbols would need the map
style's sprites, which the offline (tile-less) style does not have. The frame is the
``moves`` frame of ``ops.dispatch.suggest`` (``kind``, ``vehicles``, ``mode``,
``source_kind`` and ``distance_km`` are optional: without them every move is couriers).
"""

from __future__ import annotations

import numpy as np
import polars as pl

from layers import escape
from layers.base import DrawContext, Layer, Style

REQUIRED = ("zone_id", "couriers", "src_lat", "src_lng", "dst_lat", "dst_lng")
STYLE = Style(field="kind", categories={"courier": "#2166ac", "vehicle": "#d95f02"}, opacity=0.9)
#: Line width per kind (vans stand out).
WIDTH = {"courier": 3, "vehicle": 5}
#: Trace names per kind: arrows, then labels.
TRACES = {
    "courier": ("dispatch_arrows", "dispatch_labels"),
    "vehicle": ("dispatch_van_arrows", "dispatch_van_labels"),
}
#: Arrowhead length as a share of the arrow, and its half-angle (degrees).
HEAD = 0.18
HEAD_ANGLE = 25.0


def _complete(frame: pl.DataFrame) -> pl.DataFrame:
    """The optional columns, filled for a frame of courier moves only."""
    defaults = {
        "kind": pl.lit("courier"),
        "vehicles": pl.lit(0, dtype=pl.Int64),
        "mode": pl.lit(None, dtype=pl.String),
        "source_kind": pl.lit("area"),
        "source_outlet": pl.lit(None, dtype=pl.String),
        "distance_km": pl.lit(None, dtype=pl.Float64),
        "on_site": pl.lit(None, dtype=pl.Float64),
    }
    return frame.with_columns([v.alias(k) for k, v in defaults.items() if k not in frame.columns])


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


def count_text(kind: str, n: int, ctx: DrawContext) -> str:
    """The label of one arrow: "+3" for couriers, "+1 车" for vans.

    Examples
    --------
    >>> count_text("courier", 3, DrawContext()), count_text("vehicle", 1, DrawContext(text={"van_short": "车"}))
    ('+3', '+1 车')
    """
    return f"+{int(n)}" if kind == "courier" else f"+{int(n)} {ctx.t('van_short')}"


def hover_lines(row: dict, ctx: DrawContext) -> list[str]:
    """The lines of an arrow's label as plain text: zone, what moves (kind and mode),
    from where, how far."""
    vehicle = row["kind"] == "vehicle"
    n = int(row["vehicles"] if vehicle else row["couriers"])
    what = ctx.t("vans_moved" if vehicle else "couriers_moved")
    mode = f" ({ctx.t('mode_' + row['mode'])})" if row.get("mode") else ""
    where = (
        f"{ctx.t('from_outlet')} {row['source_outlet']}"
        if row.get("source_kind") == "outlet" and row.get("source_outlet")
        else ctx.t("from_area")
    )
    km = f" · {row['distance_km']:.1f} km" if row.get("distance_km") is not None else ""
    if row.get("on_site") is not None:
        km += f", {round(60 * (1 - row['on_site']))} min"
    return [f"{ctx.t('zone')} #{int(row['zone_id'])}", f"{what}: {n}{mode}", f"{where}{km}"]


def hover_text(row: dict, ctx: DrawContext) -> str:
    """:func:`hover_lines` as plotly hover text (escaped, one line per ``<br>``).

    Examples
    --------
    Untranslated (no ``ctx.text``), so the labels show their keys:

    >>> row = {"zone_id": 1, "kind": "courier", "couriers": 3, "vehicles": 0, "mode": "ebike",
    ...        "source_kind": "outlet", "source_outlet": "<i>Futian 2</i>", "distance_km": 2.345,
    ...        "on_site": 0.75}
    >>> hover_text(row, DrawContext()).split("<br>")
    ['zone #1', 'couriers_moved: 3 (mode_ebike)', 'from_outlet &lt;i&gt;Futian 2&lt;/i&gt; · 2.3 km, 15 min']
    """
    return "<br>".join(escape.plotly(line) for line in hover_lines(row, ctx))


def _kind_traces(frame: pl.DataFrame, kind: str, ctx: DrawContext) -> list[dict]:
    names = TRACES[kind]
    colour = STYLE.categories[kind]
    lats, lngs = arrow_paths(frame, ctx)
    arrows = {
        "type": "scattermap",
        "name": names[0],
        "uid": names[0],
        "mode": "lines",
        "lat": lats,
        "lon": lngs,
        "line": {"width": WIDTH[kind], "color": colour},
        "opacity": STYLE.opacity,
        "hoverinfo": "skip",
        "showlegend": False,
    }
    mid_lat, mid_lng = ctx.shift(
        (frame["src_lat"].to_numpy() + frame["dst_lat"].to_numpy()) / 2,
        (frame["src_lng"].to_numpy() + frame["dst_lng"].to_numpy()) / 2,
    )
    rows = frame.to_dicts()
    n = [r["vehicles"] if kind == "vehicle" else r["couriers"] for r in rows]
    labels = {
        "type": "scattermap",
        "name": names[1],
        "uid": names[1],
        "mode": "markers+text",
        "lat": np.round(mid_lat, 6).tolist(),
        "lon": np.round(mid_lng, 6).tolist(),
        "text": [count_text(kind, c, ctx) for c in n],
        "textposition": "top center",
        "textfont": {"color": colour},
        "marker": {"size": 10 if kind == "vehicle" else 8, "color": colour},
        "customdata": [[int(r["zone_id"]), int(c)] for r, c in zip(rows, n, strict=True)],
        "hovertext": [hover_text(r, ctx) for r in rows],
        "hovertemplate": "%{hovertext}<extra></extra>",
        "showlegend": False,
    }
    return [arrows, labels]


def _traces(frame, ctx: DrawContext) -> list[dict]:
    f = _complete(frame)
    out = []
    for kind in TRACES:
        out += _kind_traces(f.filter(pl.col("kind") == kind), kind, ctx)
    return out


def _folium(frame, ctx: DrawContext):
    import folium

    f = _complete(frame)
    group = folium.FeatureGroup(name=ctx.t("layer_dispatch"))
    for kind in TRACES:
        part = f.filter(pl.col("kind") == kind)
        colour = STYLE.categories[kind]
        lats, lngs = arrow_paths(part, ctx)
        line: list = []
        for la, ln in zip(lats, lngs, strict=True):
            if la is None:
                folium.PolyLine(line, color=colour, weight=WIDTH[kind], opacity=STYLE.opacity).add_to(group)
                line = []
            else:
                line.append((la, ln))
        mid_lat, mid_lng = ctx.shift(
            (part["src_lat"].to_numpy() + part["dst_lat"].to_numpy()) / 2,
            (part["src_lng"].to_numpy() + part["dst_lng"].to_numpy()) / 2,
        )
        for la, ln, row in zip(mid_lat, mid_lng, part.to_dicts(), strict=True):
            folium.CircleMarker(
                (float(la), float(ln)),
                radius=5 if kind == "vehicle" else 4,
                color=colour,
                fill=True,
                tooltip=escape.tooltip(" · ".join(hover_lines(row, ctx))),
            ).add_to(group)
    return group


LAYER = Layer(
    "dispatch_arrows",
    REQUIRED,
    STYLE,
    _traces,
    _folium,
    trace_depths=(
        ("dispatch_arrows", 70),
        ("dispatch_labels", 71),
        ("dispatch_van_arrows", 72),
        ("dispatch_van_labels", 73),
    ),
    default_on=False,
)
