"""The peak-load alerts of the view's hour: one button per zone (clicking one moves the
map to the zone: the reducer in ``pages/view_state.py`` reads the click)."""

from __future__ import annotations

from dash import Input, Output, html

from pages import ids
from pages.view_state import dated, viewer_model
from views.model import Model


def layout(t: dict) -> html.Div:
    """The panel's title and list (filled by the callback)."""
    return html.Div([html.H2(t["alerts"], id="label-alerts"), html.Div(id=ids.ALERTS)], className="panel")


def zone_label(r: dict, t: dict) -> str:
    """One zone in words: number, branch, size, workload, peak ratio, since when, rule."""
    rule = t.get("rule_" + (r["rule"] or ""), r["rule"] or "")
    return (
        f"#{r['zone_id']} {r['branch'] or ''} · {r['n_cells']} {t['cells']} · "
        f"{r['workload']:.0f} {t['parcels']} · {t['ratio']} {r['peak_ratio']:.2f} · "
        f"{t['since']} {r['since']} · {rule}"
    )


def register(app, model: Model, text: dict) -> None:
    """Attach the list's callback."""

    @app.callback(Output(ids.ALERTS, "children"), Input(ids.STATE, "data"))
    def alert_list(state):
        m = viewer_model(model)
        state = dated(m.state(state))
        t = text[state["lang"]]
        z = m.zones(state["node"], state["date"], int(state["hour"]))
        if z.is_empty():
            return html.Div(t["no_alerts"], className="status")
        return [
            html.Button(
                zone_label(r, t),
                id={"type": ids.ALERT, "zone": r["zone_id"]},
                n_clicks=0,
                className="selected" if state.get("zone") == r["zone_id"] else "",
            )
            for r in z.iter_rows(named=True)
        ]
