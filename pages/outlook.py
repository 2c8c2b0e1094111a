"""Predicted peak-load alerts and dispatch suggestions in the alert panel.

A section of its own beside the current alerts: the zones forecast to go over load in
the next hours (issued at the start of the selected hour, from what was known then),
each with its expected start, its status (pending, confirmed, missed) and the moves
suggested for it: couriers from nearby areas or idle at an outlet, and vans idle at
their base, marked like their arrows on the map (blue couriers, orange vans). The
manager accepts or dismisses each (recorded in the store). Callbacks stay thin: the
figures come from ``data.forecast_queries.outlook``.
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from dash import ALL, Input, Output, State, ctx, html, no_update

from data import forecast_queries as fq
from pages import ids

#: Predicted alerts listed at most (most severe first).
MAX_ALERTS = 8
#: Seconds an outlook of the newest hours stays cached (live ingest may change it).
LIVE_TTL = 20.0


def legend(t: dict) -> html.Div:
    """Key of the suggestion arrows (``assets/emap.css`` gives them the colours of
    ``layers.dispatch_arrows.STYLE``)."""
    return html.Div(
        [
            html.Span(
                [html.Span("━ ", className="swatch"), t.get("legend_couriers", "")], className="courier"
            ),
            html.Span(" "),
            html.Span([html.Span("━ ", className="swatch"), t.get("legend_vans", "")], className="vehicle"),
        ],
        className="status dispatch-legend",
    )


def move_text(mv: dict, t: dict) -> str:
    """One suggested move in words: how many of what, from where, how far, how."""
    vehicle = mv.get("kind") == "vehicle"
    n = mv["vehicles"] if vehicle else mv["couriers"]
    src = mv["source"]
    if mv.get("source_kind") == "outlet" and mv.get("outlet_name"):
        src = f"{mv['outlet_name']} ({mv['source']})"
    mode = t.get("mode_" + mv["mode"], mv["mode"]) if mv.get("mode") else ""
    what = t.get("vans_from", "vans from") if vehicle else t.get("couriers_from", "")
    trip = f"{mv['distance_km']:.1f} km"
    if mv.get("on_site") is not None:
        trip += f", {round(60 * (1 - mv['on_site']))} min"
    return f"→ {n} {what} {src} ({trip}{', ' + mode if mode else ''})"


def section(t: dict) -> html.Div:
    """The panel: a title, the list, and a line acknowledging the last decision."""
    return html.Div(
        [
            html.H2(t.get("predicted_alerts", "Predicted"), id="label-predicted"),
            legend(t),
            html.Div(id=ids.OUTLOOK),
            html.Div(id=ids.OUTLOOK_NOTE, className="status"),
        ],
        className="panel",
    )


def outlook(model, scope: str, day: str, hour: int) -> dict:
    """The outlook issued at the start of the selected local hour (cached)."""
    start, end = model.hour_window(day, hour)
    newest = model.newest_hour()
    ttl = LIVE_TTL if newest is None or start + timedelta(hours=6) > newest else None
    return model.cache.get(
        ("outlook", scope, start), lambda: fq.outlook(model.store, scope, start, model.settings), ttl=ttl
    )


def rows(model, scope: str, day: str, hour: int) -> list[dict]:
    """Predicted alerts with their suggestions, as plain dicts for rendering."""
    o = outlook(model, scope, day, hour)
    alerts = o["alerts"].sort("excess", descending=True).head(MAX_ALERTS).sort("start", "alert_id")
    names = dict(model.nodes().select("node_id", "name").iter_rows())
    outlet_names = _outlet_names(model)
    out = []
    for a in alerts.iter_rows(named=True):
        cells = set(int(c) for c in a["cells"])
        m = o["moves"].filter((pl.col("hour") == a["start"]) & pl.col("zone_cell").is_in(list(cells)))
        out.append(
            {
                **a,
                "branch": names.get(a["branch_id"], a["branch_id"] or ""),
                "start_local": model.local(a["start"]).strftime("%H:00"),
                "end_local": model.local(a["end"] + timedelta(hours=1)).strftime("%H:00"),
                "moves": [
                    {
                        **r,
                        "source": names.get(r["source_branch_id"], r["source_branch_id"]),
                        "outlet_name": outlet_names.get(r["source_outlet"]) if r["source_outlet"] else None,
                    }
                    for r in m.iter_rows(named=True)
                ],
            }
        )
    return out


def _outlet_names(model) -> dict:
    return model.cache.get(
        ("outlet-names",),
        lambda: dict(model.store.cursor().execute("SELECT outlet_id, name FROM outlets").fetchall()),
    )


def register(app, model, text: dict) -> None:
    """Attach the panel's callbacks."""

    @app.callback(Output(ids.OUTLOOK, "children"), Input(ids.STATE, "data"))
    def predicted(state):
        t = text[state["lang"]]
        items = rows(model, state["node"], state["date"], int(state["hour"]))
        if not items:
            return html.Div(t.get("no_predicted", "-"), className="status")
        out = []
        for a in items:
            status = t.get("status_" + a["status"], a["status"])
            out.append(
                html.Div(
                    f"{a['start_local']}–{a['end_local']} {a['branch']} · {a['n_cells']} {t.get('cells', '')} · "
                    f"{t.get('ratio', '')} {a['peak_ratio']:.2f} · {status}",
                    className=f"predicted {a['status']}",
                )
            )
            for mv in a["moves"]:
                vehicle = mv["kind"] == "vehicle"
                key = {
                    "type": ids.DECIDE,
                    "hour": a["start"].isoformat(),
                    "branch": a["branch_id"],
                    "src": str(mv["source_cell"]),
                    "zone": str(mv["zone_cell"]),
                    "n": int(mv["vehicles"] if vehicle else mv["couriers"]),
                    "km": round(float(mv["distance_km"]), 2),
                    # what moves, how, from which outlet ("" for an area): "vehicle|van|h-440300-1"
                    "what": f"{mv['kind']}|{mv['mode'] or ''}|{mv['source_outlet'] or ''}",
                }
                out.append(
                    html.Div(
                        [
                            html.Span(move_text(mv, t)),
                            html.Button(
                                "✓",
                                id={**key, "decision": "accepted"},
                                n_clicks=0,
                                title=t.get("accept", "accept"),
                            ),
                            html.Button(
                                "✕",
                                id={**key, "decision": "dismissed"},
                                n_clicks=0,
                                title=t.get("dismiss", "dismiss"),
                            ),
                        ],
                        className=f"suggestion {mv['kind']}",
                    )
                )
        return out

    @app.callback(
        Output(ids.OUTLOOK_NOTE, "children"),
        Input(
            {
                "type": ids.DECIDE,
                "hour": ALL,
                "branch": ALL,
                "src": ALL,
                "zone": ALL,
                "n": ALL,
                "km": ALL,
                "what": ALL,
                "decision": ALL,
            },
            "n_clicks",
        ),
        State(ids.STATE, "data"),
        prevent_initial_call=True,
    )
    def decide(clicks, state):
        trig = ctx.triggered_id
        if not trig or not any(clicks or []):
            return no_update
        from datetime import datetime

        kind, mode, outlet = (str(trig.get("what") or "courier||").split("|") + ["", ""])[:3]
        vehicle = kind == "vehicle"
        fq.record_decision(
            model.store,
            state["node"],
            trig["branch"],
            datetime.fromisoformat(trig["hour"]),
            int(trig["src"]),
            int(trig["zone"]),
            0 if vehicle else int(trig["n"]),
            trig["decision"],
            distance_km=float(trig["km"]),
            kind="vehicle" if vehicle else "courier",
            mode=mode or None,
            vehicles=int(trig["n"]) if vehicle else 0,
            source_outlet=outlet or None,
        )
        t = text[state["lang"]]
        return t.get("decision_" + trig["decision"], trig["decision"])
