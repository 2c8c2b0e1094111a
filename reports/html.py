"""The interactive HTML report: one self-contained folium page.

Leaflet's script and style sheet (with its control images as data URIs) are inlined
from the ``xstatic-leaflet`` package, the version folium itself loads, so the file
opens with no network at all. folium's other default assets (jQuery, Bootstrap, Font
Awesome, awesome-markers) are not used by these layers and are left out.

The hex layer is built here rather than by ``layers.hexes``' folium builder because a
report needs per-hex tooltips and properties; colours come from the same style data
(``layers.hexes.METRIC_STYLES``) and helpers, so the two agree.
"""

from __future__ import annotations

import base64
import html as html_mod
import re
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl

from geo import cells as h3cells
from layers import registry
from layers.base import DrawContext, colour_at, value_range
from layers.hexes import METRIC_STYLES
from reports.build import Report
from reports.text import strings

#: CSS class of every hex path (tests count them).
HEX_CLASS = "emap-hex"
#: Decimals kept in coordinates (~1 m) and in values.
COORD_DECIMALS = 5
LEGEND_STEPS = 5


@cache
def leaflet_assets() -> tuple[str, str]:
    """``(leaflet.js, leaflet.css)`` with the CSS images inlined as data URIs."""
    import xstatic.pkg.leaflet as xs

    base = Path(xs.BASE_DIR)
    js = (base / "leaflet.js").read_text(encoding="utf-8")
    css = (base / "leaflet.css").read_text(encoding="utf-8")

    def inline(match: re.Match) -> str:
        img = base / match.group(1)
        data = base64.b64encode(img.read_bytes()).decode("ascii")
        return f"url(data:image/png;base64,{data})"

    css = re.sub(r"url\((images/[\w\-.]+\.png)\)", inline, css)
    js = re.sub(r"//# sourceMappingURL=\S+", "", js)
    return js, css


def hex_geojson(report: Report, t: dict) -> tuple[dict, dict]:
    """The hex FeatureCollection (RFC 7946 order, id = cell hex string, rounded
    properties) and the fill colour of each id."""
    frame = report.hexes
    style = METRIC_STYLES[report.metric]
    cells = frame["cell"].to_numpy()
    ids = h3cells.to_str(cells)
    z = frame["value"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    lo, hi = value_range(z, style)
    ratio = frame["load_ratio"].cast(pl.Float64).fill_null(0).to_numpy()
    nodes = frame["node"].fill_null("").to_list()
    feats, colour = [], {}
    for cid, ring, v, r, n in zip(ids, h3cells.boundaries(cells), z, ratio, nodes, strict=True):
        coords = np.round(np.asarray(ring), COORD_DECIMALS).tolist()
        props = {"cell": cid, "value": None if not np.isfinite(v) else round(float(v), 2),
                 "load_ratio": round(float(r), 2)}
        if n:
            props["node"] = n
        feats.append({"type": "Feature", "id": cid, "properties": props,
                      "geometry": {"type": "Polygon", "coordinates": [coords]}})
        colour[cid] = style.null_colour if not np.isfinite(v) else colour_at(style.colorscale, (v - lo) / (hi - lo or 1))
    return {"type": "FeatureCollection", "features": feats}, colour


def _hex_layer(report: Report, t: dict):
    import folium

    style = METRIC_STYLES[report.metric]
    gj, colour = hex_geojson(report, t)
    group = folium.FeatureGroup(name=t["layer_hexes"])
    fields = ["cell", "node", "value", "load_ratio"] if report.hexes["node"].is_not_null().any() \
        else ["cell", "value", "load_ratio"]
    alias = {"cell": t["cell"], "node": t["node"], "value": t["metric_" + report.metric],
             "load_ratio": t["load_ratio"]}
    folium.GeoJson(
        gj, name=t["layer_hexes"],
        style_function=lambda f: {"fillColor": colour.get(f["id"], style.null_colour),
                                  "fillOpacity": style.opacity, "weight": 0.4, "color": "#ffffff",
                                  "className": HEX_CLASS},
        tooltip=folium.GeoJsonTooltip(fields=fields, aliases=[alias[f] for f in fields], sticky=True),
    ).add_to(group)
    return group


def legend_html(report: Report, t: dict) -> str:
    """The colour legend of the hex layer (a fixed box at the bottom left)."""
    style = METRIC_STYLES[report.metric]
    z = report.hexes["value"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    lo, hi = value_range(z, style)
    rows = []
    for i in range(LEGEND_STEPS):
        a = lo + (hi - lo) * i / LEGEND_STEPS
        b = lo + (hi - lo) * (i + 1) / LEGEND_STEPS
        c = colour_at(style.colorscale, (a - lo) / (hi - lo or 1))
        top = "+" if i == LEGEND_STEPS - 1 else ""
        rows.append(f'<div><i style="background:{c}"></i>{_num(a)} – {_num(b)}{top}</div>')
    rows.append(f'<div><i style="background:{style.null_colour}"></i>{t["legend_null"]}</div>')
    title = html_mod.escape(t["metric_" + report.metric])
    return (f'<div class="emap-legend" id="emap-legend"><b>{title}</b>{"".join(rows)}'
            f'<div class="emap-legend-note">{t["layer_zones"]}: <span style="color:#d7301f">▬</span></div></div>')


def title_html(report: Report, t: dict) -> str:
    n = report.node
    path = " › ".join(html_mod.escape(p["name"]) for p in report.path)
    return (f'<div class="emap-title" id="emap-title"><b>{html_mod.escape(n["name"])}</b> '
            f'<span>{html_mod.escape(report.period.label())} ({html_mod.escape(t["local_time"])})</span><br>'
            f'<small>{path} · {html_mod.escape(t["metric_" + report.metric])} · H3 res {report.res} · '
            f'{t["generated"]} {report.generated_at:%Y-%m-%d %H:%M}</small></div>')


_CSS = """
.emap-legend, .emap-title { position: absolute; z-index: 1000; background: rgba(255,255,255,0.92);
  padding: 6px 10px; border-radius: 4px; box-shadow: 0 1px 4px rgba(0,0,0,0.3);
  font: 12px/1.4 "Noto Sans CJK SC", "Noto Sans SC", "Microsoft YaHei", sans-serif; color: #1f2a44; }
.emap-title { top: 10px; left: 50%; transform: translateX(-50%); text-align: center; font-size: 14px; }
.emap-title small { font-size: 11px; color: #555; }
.emap-legend { bottom: 24px; left: 10px; }
.emap-legend i { display: inline-block; width: 14px; height: 12px; margin-right: 6px; vertical-align: middle;
  opacity: 0.85; }
.emap-legend b { display: block; margin-bottom: 3px; }
.emap-legend-note { margin-top: 3px; }
.leaflet-marker-icon.empty > div { white-space: nowrap; transform: translateX(-50%); }
.leaflet-container { background: #f4f6f8; font-family: "Noto Sans CJK SC", "Noto Sans SC", sans-serif; }
"""


def _num(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 10 and v != int(v) else f"{v:,.0f}"


def folium_map(report: Report, lang: str = "zh", static: bool = False):
    """The report's folium map. ``static``: for images (no controls, no tile option)."""
    import folium
    from branca.element import Element

    t = strings(lang)
    ctx = DrawContext(text=t, metric=report.metric)
    lng0, lat0, lng1, lat1 = report.bounds
    m = folium.Map(location=[(lat0 + lat1) / 2, (lng0 + lng1) / 2], zoom_start=8, tiles=None,
                   control_scale=not static, zoom_control=not static, prefer_canvas=False)
    # No CDN: every asset the page needs is inlined below.
    m.default_js = []
    m.default_css = []
    js, css = leaflet_assets()
    root = m.get_root()
    root.header.add_child(Element(f"<style>{css}</style>"), name="leaflet_css")
    root.header.add_child(Element(f"<script>{js}</script>"), name="leaflet_js")
    root.header.add_child(Element(f"<style>{_CSS}</style>"), name="emap_css")
    root.title = f"EMAP · {report.title}"
    if not static:
        folium.TileLayer("OpenStreetMap", name=t["tiles"], overlay=True, show=False,
                         attr="© OpenStreetMap contributors").add_to(m)
    _hex_layer(report, t).add_to(m)
    if len(report.outlines):
        registry.get("outlines").build_folium(report.outlines, ctx).add_to(m)
    registry.get("zones").build_folium(report.zones, ctx).add_to(m)
    if len(report.outlets):
        registry.get("outlets").build_folium(report.outlets, ctx).add_to(m)
    m.fit_bounds([[lat0, lng0], [lat1, lng1]], padding=(10, 10))
    root.html.add_child(Element(title_html(report, t) + legend_html(report, t)), name="emap_overlays")
    if not static:
        folium.LayerControl(collapsed=False).add_to(m)
    return m


def render(report: Report, lang: str = "zh", static: bool = False) -> str:
    """The whole page as a string (one self-contained file)."""
    return folium_map(report, lang=lang, static=static).get_root().render()
