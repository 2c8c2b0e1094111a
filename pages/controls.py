"""The control bar: date, hour (with its step and play buttons), live mode, metric, layers,
basemap, drill-down, the export control and the status line.

Its callbacks start and stop the two timers and translate the page's static labels and
the controls' options into the view's language. The values of the controls are read
and written by the reducer (``pages/view_state.py``); the status line by the KPI panel.
"""

from __future__ import annotations

from dash import Input, Output, dcc, html

from auth import scope as access
from layers.hexes import METRICS
from layers.registry import LAYERS
from pages import export, ids, live
from pages.view_state import viewer_model
from views import state as st
from views.model import Model
from views.state import BASEMAPS


def layout(t: dict) -> html.Div:
    """The bar (texts in the language of ``t`` until the state says otherwise)."""

    def ctl(label_id, child, cls="ctl"):
        return html.Div([html.Label(t[ids.LABELS[label_id]], id=label_id), child], className=cls)

    hour_row = html.Div(
        [
            html.Button("◀", id=ids.HOUR_PREV, n_clicks=0),
            dcc.Slider(
                id=ids.HOUR,
                min=0,
                max=23,
                step=1,
                value=10,
                allow_direct_input=False,
                marks={h: f"{h}" for h in range(0, 24, 3)},
            ),
            html.Button("▶", id=ids.HOUR_NEXT, n_clicks=0),
            html.Button(t["play"], id=ids.PLAY, n_clicks=0),
        ],
        className="hour-row",
    )
    return html.Div(
        [
            ctl("label-date", dcc.Dropdown(id=ids.DATE, clearable=False, style={"width": "150px"})),
            ctl("label-hour", hour_row, cls="ctl hour"),
            dcc.Checklist(id=ids.LIVE, options=[{"label": t["live"], "value": "live"}], value=[]),
            live.indicator(),
            ctl("label-metric", dcc.Dropdown(id=ids.METRIC, clearable=False, style={"width": "170px"})),
            ctl("label-layers", dcc.Checklist(id=ids.LAYERS, inline=True)),
            ctl("label-basemap", dcc.Dropdown(id=ids.BASEMAP, clearable=False, style={"width": "170px"})),
            ctl("label-drill", dcc.Dropdown(id=ids.DRILL, style={"width": "180px"})),
            export.controls(),
            html.Span(id=ids.STATUS, className="status"),
        ],
        className="emap-controls",
    )


def register(app, model: Model, text: dict) -> None:
    """Attach the timers' switches and the translation of labels and options."""

    @app.callback(
        Output(ids.PLAY_TICK, "disabled"),
        Output(ids.PLAY, "children"),
        Input(ids.PLAY, "n_clicks"),
        Input(ids.STATE, "data"),  # the label follows a language switch too
    )
    def toggle_play(n, state):
        t = text[viewer_model(model).state(state)["lang"]] if state is not None else text["zh"]
        playing = st.clicks(n) % 2 == 1
        return not playing, t["pause"] if playing else t["play"]

    @app.callback(
        [Output(k, "children") for k in ids.LABELS]
        + [
            Output(ids.METRIC, "options"),
            Output(ids.LAYERS, "options"),
            Output(ids.BASEMAP, "options"),
            Output(ids.LIVE, "options"),
        ],
        Input(ids.STATE, "data"),
    )
    def labels(state):
        m = viewer_model(model)
        state = m.state(state)
        t = text[state["lang"]]
        private_ok = m.viewer.may_see_positions(state["node"])
        return [t[v] for v in ids.LABELS.values()] + [
            [{"label": t["metric_" + key], "value": key} for key in METRICS],
            [
                {
                    "label": t["layer_" + layer.key],
                    "value": layer.key,
                    "disabled": layer.key in access.PRIVATE_LAYERS and not private_ok,
                }
                for layer in LAYERS
            ],
            [{"label": t["basemap_" + b], "value": b} for b in BASEMAPS],
            [{"label": t["live"], "value": "live"}],
        ]
