"""The dashboard's export control: a format picker, a button and a download of the
current view (node, date and hour, metric, language) as a report.

Kept apart from the dashboard's own callbacks: ``controls()`` goes into the layout and
``register()`` adds the two callbacks. The report is built through the dashboard's
model (same cache, same numbers as the panels).
"""

from __future__ import annotations

from dash import Input, Output, State, dcc, html, no_update

from auth import users
from auth.web import request_viewer
from pages import ids
from reports import FORMATS, MIME, SUFFIX, render
from reports.build import Period, ReportError, build
from views.model import ViewerModel
from views.state import BadState
from views.text import strings

FORMAT_LABELS = {
    "html": "HTML",
    "png": "PNG",
    "pdf": "PDF",
    "geojson": "GeoJSON",
    "csv": "CSV",
    "parquet": "GeoParquet",
}


def controls(lang: str = "zh") -> html.Div:
    """Format picker, button, status line and the download target."""
    t = strings(lang)
    return html.Div(
        [
            html.Label(t["export"], id=ids.EXPORT_LABEL),
            html.Div(
                [
                    dcc.RadioItems(
                        id=ids.EXPORT_SPAN,
                        options=[
                            {"label": t["export_hour"], "value": "hour"},
                            {"label": t["export_day"], "value": "day"},
                        ],
                        value="hour",
                        inline=True,
                    ),
                    dcc.Dropdown(
                        id=ids.EXPORT_FORMAT,
                        options=[{"label": FORMAT_LABELS[f], "value": f} for f in FORMATS],
                        value="html",
                        clearable=False,
                        style={"width": "120px"},
                    ),
                    html.Button(t["export_button"], id=ids.EXPORT_BUTTON, n_clicks=0),
                    html.Span(id=ids.EXPORT_STATUS, className="status"),
                ],
                className="hour-row",
            ),
            dcc.Download(id=ids.EXPORT_DOWNLOAD),
        ],
        className="ctl export",
    )


def export_view(model, viewer, state: dict, fmt: str, span: str = "hour") -> tuple[bytes, str]:
    """The current view as a report in ``fmt`` for ``viewer``: ``(bytes, file name)``;
    ``span`` "day" widens the view's hour to its whole day.

    Raises
    ------
    reports.build.ReportError
        No data in the view (or a view the store does not know).
    auth.viewer.OutsideScope
        The viewer does not hold the view's node, may not export, or may not see a
        private layer of it.
    """
    if fmt not in FORMATS:
        raise ReportError(f"unknown format {fmt!r}")
    if span not in ("hour", "day"):
        raise ReportError(f"unknown span {span!r}")
    state = ViewerModel(model, viewer).state(state)
    viewer.require_act("export")
    period = Period(state["date"], None if span == "day" else int(state["hour"]))
    report = build(
        model.store,
        model.settings,
        state["node"],
        period,
        state.get("metric") or "scans",
        model=model,
        viewer=viewer,
    )
    return render(report, fmt, lang=state["lang"], settings=model.settings), report.file_stem() + SUFFIX[fmt]


def register(app, model, text: dict | None = None) -> None:
    """Attach the export callbacks to ``app``."""

    @app.callback(
        Output(ids.EXPORT_LABEL, "children"),
        Output(ids.EXPORT_BUTTON, "children"),
        Output(ids.EXPORT_SPAN, "options"),
        Input(ids.STATE, "data"),
    )
    def labels(state):
        t = strings(ViewerModel(model, request_viewer(model)).state(state)["lang"])
        return (
            t["export"],
            t["export_button"],
            [{"label": t["export_hour"], "value": "hour"}, {"label": t["export_day"], "value": "day"}],
        )

    @app.callback(
        Output(ids.EXPORT_DOWNLOAD, "data"),
        Output(ids.EXPORT_STATUS, "children"),
        Input(ids.EXPORT_BUTTON, "n_clicks"),
        State(ids.EXPORT_FORMAT, "value"),
        State(ids.EXPORT_SPAN, "value"),
        State(ids.STATE, "data"),
        prevent_initial_call=True,
        running=[(Output(ids.EXPORT_BUTTON, "disabled"), True, False)],
    )
    def export(n, fmt, span, state):
        viewer = request_viewer(model)
        state = ViewerModel(model, viewer).state(state)
        if not n or not state["date"]:
            return no_update, no_update
        t = strings(state["lang"])
        fmt, span = fmt or "html", span or "hour"
        if not isinstance(fmt, str) or fmt not in FORMATS or span not in ("hour", "day"):
            raise BadState(f"export: format must be one of {', '.join(FORMATS)} and span hour or day")
        try:
            blob, name = export_view(model, viewer, state, fmt, span)
        except ReportError as exc:
            return no_update, f"{t['export_failed']}: {exc}"
        # Audited where it is made, with the viewer of this request.
        users.audit(
            model.store,
            viewer.label,
            "export",
            f"node={state['node']} date={state['date']} hour={state['hour']} span={span} format={fmt}",
        )
        return dcc.send_bytes(blob, name, type=MIME[fmt or "html"]), f"{name} ({len(blob) / 1024:,.0f} kB)"
