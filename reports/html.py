"""The interactive HTML report: one self-contained folium page.

Leaflet's script and style sheet (with its control images as data URIs) are inlined
from the ``xstatic-leaflet`` package, the version folium itself loads, so the file
opens with no network at all. folium's other default assets (jQuery, Bootstrap, Font
Awesome, awesome-markers) are not used by these layers and are left out.

The hex layer is built here rather than by ``layers.hexes``' folium builder because a
report needs per-hex tooltips and a compact encoding (:class:`HexLayer`; a branch-day
stays under 1 MB); colours come from the same style data (``layers.hexes.METRIC_STYLES``)
and helpers, so the two agree.

Names from data are text (``layers.escape``), and the page carries a
Content-Security-Policy that lets only its own inline scripts and style sheets run,
each named by its SHA-256 hash computed as the page is put together
(:func:`content_security_policy`): no ``'unsafe-inline'`` script, nothing remote but the
optional OpenStreetMap tile images of the interactive page.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
from branca.element import MacroElement
from jinja2 import Template

from geo import cells as h3cells
from layers import escape, registry
from layers.base import DrawContext, colour_at, value_range
from layers.hexes import METRIC_STYLES
from reports.build import Report
from views.text import strings

#: CSS class of every hex path (tests count them).
HEX_CLASS = "emap-hex"
#: Decimals kept in coordinates (~1 m) and in values.
COORD_DECIMALS = 5


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


class HexLayer(MacroElement):
    """The hex layer as compact arrays turned into Leaflet polygons in the browser.

    A GeoJSON feature per hex costs ~400 bytes in a folium page; here a hex costs
    ~120: its ring as integer steps of 1e-5 degrees (~1 m) from the first vertex, its
    values, and indexes into a table of colours and a table of unit names. Tooltips
    are built on hover.
    """

    _template = Template("""{% macro script(this, kwargs) %}
    (function (d, group) {
        function tip(i) {
            var rows = [[d.labels[0], d.ids[i]]];
            if (d.node[i] >= 0) rows.push([d.labels[1], d.names[d.node[i]]]);
            rows.push([d.labels[2], d.v[i] === null ? '–' : d.v[i]], [d.labels[3], d.r[i]]);
            return '<table>' + rows.map(function (r) {
                return '<tr><th>' + r[0] + '</th><td>' + r[1] + '</td></tr>'; }).join('') + '</table>';
        }
        for (var i = 0; i < d.ids.length; i++) {
            var a = d.xy[i], x = a[0], y = a[1], pts = [[y / 1e5, x / 1e5]];
            for (var k = 2; k < a.length; k += 2) { x += a[k]; y += a[k + 1]; pts.push([y / 1e5, x / 1e5]); }
            L.polygon(pts, {className: d.cls, fillColor: d.colours[d.c[i]], fillOpacity: d.opacity,
                            weight: 0.4, color: '#ffffff'})
             .bindTooltip((function (j) { return function () { return tip(j); }; })(i),
                          {sticky: true, className: 'foliumtooltip'})
             .addTo(group);
        }
    })({{ this.payload }}, {{ this._parent.get_name() }});
    {% endmacro %}""")

    def __init__(self, payload: str):
        super().__init__()
        self._name = "HexLayer"
        self.payload = payload


def hex_payload(report: Report, t: dict) -> dict:
    """The arrays :class:`HexLayer` draws: ids, values, colours, names and rings."""
    frame = report.hexes
    style = METRIC_STYLES[report.metric]
    cells = frame["cell"].to_numpy()
    z = frame["value"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    lo, hi = value_range(z, style)
    colours = [
        colour_at(style.colorscale, (v - lo) / (hi - lo or 1)) if np.isfinite(v) else style.null_colour
        for v in z
    ]
    palette = sorted(set(colours))
    names = sorted({n for n in frame["node"].to_list() if n})
    index = {n: i for i, n in enumerate(names)}
    rings = []
    for ring in h3cells.boundaries(cells):
        q = np.rint(np.asarray(ring[:-1]) * 10**COORD_DECIMALS).astype(np.int64)
        steps = np.vstack([q[:1], np.diff(q, axis=0)])
        rings.append(steps.ravel().tolist())
    return {
        "ids": h3cells.to_str(cells),
        "xy": rings,
        "cls": HEX_CLASS,
        "opacity": style.opacity,
        "v": [None if not np.isfinite(v) else round(float(v), 2) for v in z],
        "r": np.round(frame["load_ratio"].cast(pl.Float64).fill_null(0).to_numpy(), 2).tolist(),
        "node": [index.get(n, -1) if n else -1 for n in frame["node"].to_list()],
        "names": [escape.html(n) for n in names],
        "c": [palette.index(c) for c in colours],
        "colours": palette,
        "labels": [escape.html(t[k]) for k in ("cell", "node", "metric_" + report.metric, "load_ratio")],
    }


def _hex_layer(report: Report, t: dict):
    import folium

    group = folium.FeatureGroup(name=t["layer_hexes"])
    group.add_child(HexLayer(escape.script_json(hex_payload(report, t), separators=(",", ":"))))
    return group


def legend_html(report: Report, t: dict) -> str:
    """The colour legend of the hex layer (a fixed box at the bottom left)."""
    style = METRIC_STYLES[report.metric]
    z = report.hexes["value"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    lo, hi = value_range(z, style)
    # one row per stop of the scale: colour_at picks the nearest stop at or below
    stops = list(style.colorscale)
    rows = []
    for i, (stop, colour) in enumerate(stops):
        a = lo + (hi - lo) * stop
        label = (
            f"{_num(a)} – {_num(lo + (hi - lo) * stops[i + 1][0])}" if i + 1 < len(stops) else f"≥ {_num(a)}"
        )
        rows.append(f'<div><i style="background:{escape.html(colour)}"></i>{escape.html(label)}</div>')
    rows.append(
        f'<div><i style="background:{escape.html(style.null_colour)}"></i>{escape.html(t["legend_null"])}</div>'
    )
    title = escape.html(t["metric_" + report.metric])
    return (
        f'<div class="emap-legend" id="emap-legend"><b>{title}</b>{"".join(rows)}'
        f'<div class="emap-legend-note">{escape.html(t["layer_zones"])}: '
        '<span style="color:#d7301f">▬</span></div></div>'
    )


def title_html(report: Report, t: dict) -> str:
    """The title box: node name, period, breadcrumb, metric and generation time."""
    n = report.node
    e = escape.html
    path = " › ".join(e(p["name"]) for p in report.path)
    return (
        f'<div class="emap-title" id="emap-title"><b>{e(n["name"])}</b> '
        f"<span>{e(report.period.label())} ({e(t['local_time'])})</span><br>"
        f"<small>{path} · {e(t['metric_' + report.metric])} · H3 res {report.res} · "
        f"{e(t['generated'])} {report.generated_at:%Y-%m-%d %H:%M}</small></div>"
    )


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
    m = folium.Map(
        location=[(lat0 + lat1) / 2, (lng0 + lng1) / 2],
        zoom_start=8,
        tiles=None,
        control_scale=not static,
        zoom_control=not static,
        prefer_canvas=False,
        zoom_snap=0.25,
        # an image is taken once the page has loaded: no zoom or fade animation to wait for
        zoom_animation=not static,
        fade_animation=not static,
        marker_zoom_animation=not static,
    )
    # No CDN: every asset the page needs is inlined below.
    m.default_js = []
    m.default_css = []
    js, css = leaflet_assets()
    root = m.get_root()
    root.header.add_child(Element(f"<style>{css}</style>"), name="leaflet_css")
    root.header.add_child(Element(f"<script>{js}</script>"), name="leaflet_js")
    root.header.add_child(Element(f"<style>{_CSS}</style>"), name="emap_css")
    if not static:
        folium.TileLayer(
            "OpenStreetMap", name=t["tiles"], overlay=True, show=False, attr="© OpenStreetMap contributors"
        ).add_to(m)
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


#: Origin of the tile images of the interactive page's optional OpenStreetMap layer.
TILE_ORIGIN = "https://tile.openstreetmap.org"
_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
_STYLE = re.compile(r"<style>(.*?)</style>", re.S)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(scripts=(), styles=(), img_src: tuple[str, ...] = ("data:",)) -> str:
    """The page's Content-Security-Policy: nothing by default, the given inline scripts
    and style sheets by their SHA-256 hashes, images from ``img_src``.

    Style attributes stay allowed (``style-src-attr``): Leaflet and the legend position
    and colour elements with them, and with no remote image or font source a style
    cannot fetch anything.

    Examples
    --------
    >>> content_security_policy(["1"]).split("; ")[:2]
    ["default-src 'none'", "script-src 'sha256-a4ayc/80/OGda4BO/1o/V0etpOqiLx1JwB5S3beHW0s='"]
    """
    script = " ".join(dict.fromkeys(_sha256(s) for s in scripts)) or "'none'"
    style = " ".join(dict.fromkeys(_sha256(s) for s in styles)) or "'none'"
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {script}",
            f"style-src-elem {style}",
            "style-src-attr 'unsafe-inline'",
            f"img-src {' '.join(img_src)}",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def _lf(text: str) -> str:
    # the HTML parser turns CR LF and CR into LF before a script's hash is taken
    return text.replace("\r\n", "\n").replace("\r", "\n")


def render(report: Report, lang: str = "zh", static: bool = False) -> str:
    """The whole page as a string (one self-contained file) with its CSP.

    The page is put together here from folium's three parts rather than by folium's
    template: the head (folium's and Leaflet's code, no data) is the only place whose
    ``<script>`` and ``<style>`` elements are trusted, plus the one script at the end
    that draws the layers; their hashes go into the CSP, which sits first in the head.
    The body's overlays (title, legend) hold names and no script or style element, so
    markup that got through there could not run.
    """
    root = folium_map(report, lang=lang, static=static).get_root()
    for child in root._children.values():
        child.render()
    head = _lf(root.header.render())
    body = _lf(root.html.render())
    script = _lf("\n" + root.script.render() + "\n")
    img = ("data:",) if static else ("data:", TILE_ORIGIN)
    csp = content_security_policy([*_SCRIPT.findall(head), script], _STYLE.findall(head), img_src=img)
    title = escape.html(_lf(f"EMAP · {report.title}"))
    return (
        f'<!DOCTYPE html>\n<html lang="{escape.html(lang)}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{escape.html(csp)}">\n'
        f'<meta name="referrer" content="no-referrer">\n<title>{title}</title>\n{head}\n</head>\n'
        f"<body>\n{body}\n</body>\n<script>{script}</script>\n</html>\n"
    )
