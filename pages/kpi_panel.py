"""The KPI panel (cards of the hour with their change against yesterday) and the hourly
trend of pickups and deliveries; its callback also writes the status line of the
control bar (the day and hour the panels show)."""

from __future__ import annotations

from dash import Input, Output, dcc, html

from pages import ids
from pages.view_state import dated, viewer_model
from views.model import Model
from views.text import fmt  # one formatting of KPI values for the page and the reports


def layout(t: dict) -> list:
    """The KPI cards' panel and the trend's panel (both filled by the callback)."""
    return [
        html.Div([html.H2(t["kpis"], id="label-kpis"), html.Div(id=ids.KPIS)], className="panel"),
        html.Div(
            dcc.Graph(id=ids.TREND, config={"displayModeBar": False}, style={"height": "170px"}),
            className="panel",
        ),
    ]


def cards(kpis: list[dict], t: dict) -> list:
    """One card per KPI: name, value, change against the same hour yesterday."""
    out = []
    for k in kpis:
        ch = k["change"]
        delta = "–" if ch is None else f"{'+' if ch >= 0 else ''}{100 * ch:.0f}%"
        cls = "delta" if ch is None or abs(ch) < 0.005 else ("delta up" if ch > 0 else "delta down")
        out.append(
            html.Div(
                [
                    html.Div(t["kpi_" + k["key"]], className="name"),
                    html.Div(fmt(k["key"], k["value"]), className="value"),
                    html.Div(f"{delta} {t['vs_yesterday']}", className=cls),
                ],
                className="kpi",
                id=f"kpi-{k['key']}",
            )
        )
    return out


def trend_figure(tr, hour: int, t: dict) -> dict:
    """Pickups and deliveries per local hour of the day, stacked, the view's hour marked."""
    x = tr["local_hour"].to_list()

    def bar(key: str, colour: str) -> dict:
        return {
            "type": "bar",
            "x": x,
            "y": tr[key].to_list(),
            "name": t["kpi_" + key],
            "marker": {"color": colour},
        }

    marker = {
        "type": "line",
        "x0": hour,
        "x1": hour,
        "yref": "paper",
        "y0": 0,
        "y1": 1,
        "line": {"color": "#d7301f", "width": 1},
    }
    return {
        "data": [bar("pickups", "#fe9929"), bar("deliveries", "#2c7fb8")],
        "layout": {
            "barmode": "stack",
            "margin": {"l": 36, "r": 8, "t": 24, "b": 24},
            "height": 170,
            "title": {"text": t["trend"], "font": {"size": 12}},
            "shapes": [marker],
            "legend": {"orientation": "h", "y": 1.2, "x": 1, "xanchor": "right", "font": {"size": 10}},
            "xaxis": {"range": [-0.5, 23.5], "dtick": 3},
        },
    }


def register(app, model: Model, text: dict) -> None:
    """Attach the panel's callback."""

    @app.callback(
        Output(ids.KPIS, "children"),
        Output(ids.TREND, "figure"),
        Output(ids.STATUS, "children"),
        Input(ids.STATE, "data"),
    )
    def panel(state):
        m = viewer_model(model)
        state = dated(m.state(state))
        t = text[state["lang"]]
        node, day, hour = state["node"], state["date"], int(state["hour"])
        status = f"{day} {hour:02d}:00 {t['local_time']}"
        return cards(m.kpis(node, day, hour), t), trend_figure(m.trend(node, day), hour, t), status
