"""The PDF report: the map image, the KPI table, the peak-load zones and the child
ranking on A4 landscape pages, printed by headless Chromium from a generated page.

Page 1 is the map; page 2 the KPI table and the zones; the ranking starts on page 3
(long rankings continue on further pages with their header repeated).
"""

from __future__ import annotations

import base64
import time

from layers import escape
from reports import chromium, png
from reports.build import Report
from reports.html import content_security_policy
from views.text import fmt, fmt_change, strings

#: Map image size (CSS pixels) for the PDF page (A4 landscape proportions).
MAP_WIDTH, MAP_HEIGHT = 1500, 900
#: Zones listed on the PDF (page 2 holds them with the KPI table).
PDF_ZONES = 10

_CSS = """
@page { size: A4 landscape; margin: 12mm 12mm 14mm 12mm;
  @bottom-left { content: "EMAP · __TITLE__"; font-size: 8pt; color: #666; }
  @bottom-right { content: counter(page) " / " counter(pages); font-size: 8pt; color: #666; } }
body { font-family: "Noto Sans CJK SC", "Noto Sans SC", "Noto Sans", sans-serif; color: #1f2a44;
  font-size: 10pt; margin: 0; }
h1 { font-size: 16pt; margin: 0 0 2mm 0; }
h2 { font-size: 13pt; margin: 4mm 0 2mm 0; }
.meta { color: #555; font-size: 9pt; margin-bottom: 3mm; }
.page { break-after: page; }
.page:last-child { break-after: auto; }
img.map { width: 100%; max-height: 160mm; object-fit: contain; border: 1px solid #ccd; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #dde; padding: 0.7mm 2mm; text-align: right; font-size: 9pt; }
th { background: #eef1f6; }
th:first-child, td:first-child, td.text, th.text { text-align: left; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
.note { color: #666; font-size: 8.5pt; margin-top: 2mm; }
.up { color: #1a7f37; } .down { color: #b42318; }
"""


_e = escape.html


def _kpi_table(report: Report, t: dict) -> str:
    rows = []
    for k in report.kpis:
        ch = k["change"]
        cls = "" if ch is None or abs(ch) < 0.005 else ("up" if ch > 0 else "down")
        rows.append(
            f"<tr><td>{_e(t['kpi_' + k['key']])}</td><td>{_e(fmt(k['key'], k['value']))}</td>"
            f'<td>{_e(fmt(k["key"], k["before"]))}</td><td class="{cls}">{_e(fmt_change(ch))}</td></tr>'
        )
    compare = t["compare_hour"] if report.period.hour is not None else t["compare_days"]
    return (
        f'<h2>{_e(t["kpis"])}</h2><table class="kpis"><thead><tr><th class="text">{_e(t["indicator"])}</th>'
        f"<th>{_e(t['value'])}</th><th>{_e(t['before'])}</th><th>{_e(t['change'])}</th></tr></thead>"
        f'<tbody>{"".join(rows)}</tbody></table><div class="note">{_e(compare)}'
        + ("" if report.period.hour is not None else f"<br>{_e(t['courier_hours_note'])}")
        + "</div>"
    )


def _zone_table(report: Report, t: dict) -> str:
    z = report.zones.head(PDF_ZONES)
    hourly = report.period.hour is not None
    head = f"<h2>{_e(t['top_zones'])} ({_e(report.zone_hours)})</h2>"
    if z.is_empty():
        return head + f"<p>{_e(t['no_zones'])}</p>"
    rows = []
    for r in z.iter_rows(named=True):
        rule = t.get("rule_" + (r["rule"] or ""), r["rule"] or "")
        rows.append(
            f'<tr><td>#{_e(r["zone_id"])}</td><td class="text">{_e(r["hour"])}</td>'
            f'<td class="text">{_e(r["branch"])}</td><td>{_e(r["n_cells"])}</td>'
            f"<td>{r['workload']:,.0f}</td><td>{r['peak_ratio']:.2f}</td><td>{r['excess']:,.0f}</td>"
            + (f'<td class="text">{_e(r.get("since"))}</td>' if hourly else "")
            + f'<td class="text">{_e(rule)}</td></tr>'
        )
    return (
        head + f'<table class="zones"><thead><tr><th class="text">{_e(t["zone"])}</th>'
        f'<th class="text">{_e(t["hour_col"])}</th><th class="text">{_e(t["branch"])}</th>'
        f"<th>{_e(t['cells'])}</th><th>{_e(t['workload'])}</th><th>{_e(t['peak_ratio'])}</th>"
        f"<th>{_e(t['excess'])}</th>"
        + (f'<th class="text">{_e(t["since"])}</th>' if hourly else "")
        + f'<th class="text">{_e(t["rule"])}</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _ranking(report: Report, t: dict) -> str:
    c = report.children
    head = f"<h2>{_e(t['ranking'])}</h2>"
    if c.is_empty():
        return head + f"<p>{_e(t['no_children'])}</p>"
    cols = [
        ("volume", t["volume"]),
        ("pickups", t["kpi_pickups"]),
        ("deliveries", t["kpi_deliveries"]),
        ("on_time_rate", t["kpi_on_time_rate"]),
        ("couriers", t["kpi_couriers"]),
        ("parcels_per_courier_hour", t["kpi_parcels_per_courier_hour"]),
        ("vehicles", t["kpi_vehicles"]),
        ("zones", t["kpi_zones"]),
    ]
    rows = []
    for r in c.iter_rows(named=True):
        cells = "".join(f"<td>{_e(fmt(k, r.get(k)))}</td>" for k, _ in cols)
        rows.append(f'<tr><td>{_e(r["rank"])}</td><td class="text">{_e(r["name"])}</td>{cells}</tr>')
    th = "".join(f"<th>{_e(n)}</th>" for _, n in cols)
    return (
        head + f'<table class="ranking"><thead><tr><th class="text">{_e(t["rank"])}</th>'
        f'<th class="text">{_e(t["name"])}</th>{th}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def page_html(report: Report, map_png: bytes, lang: str = "zh") -> str:
    """The printable page: map, KPI table and zones, ranking.

    Names are escaped for HTML, the title in the page footer for a CSS string, and a
    Content-Security-Policy allows no script at all, the page's one style sheet (by its
    hash) and the map image (a data URI).
    """
    t = strings(lang)
    n = report.node
    path = " › ".join(_e(p["name"]) for p in report.path)
    meta = (
        f"{_e(t['path'])}: {path} · {_e(t['period'])}: {_e(report.period.label())} ({_e(t['local_time'])}) · "
        f"{_e(t['metric'])}: {_e(t['metric_' + report.metric])} · H3 res {report.res} · "
        f"{_e(t['hexes'])}: {len(report.hexes):,} · {_e(t['generated'])}: {report.generated_at:%Y-%m-%d %H:%M}"
    )
    img = base64.b64encode(map_png).decode("ascii")
    css = _CSS.replace("__TITLE__", escape.css_string(report.title))
    csp = content_security_policy([], [css], img_src=("data:",))
    return f"""<!DOCTYPE html><html lang="{_e(lang)}"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">
<title>EMAP · {_e(report.title)}</title><style>{css}</style></head><body>
<section class="page"><h1>{_e(t["report"])} · {_e(n["name"])}</h1><div class="meta">{meta}</div>
<img class="map" alt="{_e(t["map"])}" src="data:image/png;base64,{img}"></section>
<section class="page">{_kpi_table(report, t)}{_zone_table(report, t)}</section>
<section class="page">{_ranking(report, t)}</section>
</body></html>"""


def render(report: Report, lang: str = "zh", settings=None) -> bytes:
    """PDF bytes of the report.

    The map image and the printing share one time limit
    (``settings.render_timeout_seconds``, see :func:`reports.chromium.run`).
    """
    settings = chromium.settings_or_env(settings)
    deadline = time.monotonic() + float(settings.render_timeout_seconds)
    image = png.render(
        report, lang=lang, width=MAP_WIDTH, height=MAP_HEIGHT, settings=settings, deadline=deadline
    )
    return chromium.run(page_html(report, image, lang), "pdf", settings=settings, deadline=deadline)
