"""Predicted peak-load alerts and dispatch suggestions in the alert panel.

A section of its own beside the current alerts: the zones forecast to go over load in
the next hours (issued at the start of the selected hour, from what was known then),
each with its expected start, its status (pending, confirmed, missed) and the moves
suggested for it: couriers from nearby areas or idle at an outlet, and vans idle at
their base, marked like their arrows on the map (blue couriers, orange vans). The
manager accepts or dismisses each (recorded in the store). Callbacks stay thin: the
figures come from ``views.forecast.outlook``.
"""

from __future__ import annotations

import threading
from datetime import datetime

from dash import ALL, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from auth.web import request_viewer
from data.store import decisions
from pages import ids
from views.model import ViewerModel
from views.outlook import Ahead, GiveWay, Superseded, rows
from views.state import BadState


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


def client_store(client: str | None) -> dcc.Store:
    """The page load's id (see :class:`Requests`); ``None`` turns the dropping off."""
    return dcc.Store(id=ids.OUTLOOK_CLIENT, data=client)


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


class Requests:
    """The newest panel request of each page (an id per page load), so that requests a
    page has superseded (the ▶ button pressed again) stop waiting and computing: the
    page only shows the answer to its newest request."""

    def __init__(self, size: int = 512):
        self._size = size
        self._newest: dict = {}
        self._lock = threading.Lock()

    def begin(self, client) -> int:
        with self._lock:
            n = self._newest.pop(client, 0) + 1
            self._newest[client] = n
            while len(self._newest) > self._size:
                self._newest.pop(next(iter(self._newest)))
            return n

    def newest(self, client, n: int) -> bool:
        with self._lock:
            return self._newest.get(client, n) == n


def register(app, model, text: dict, activity=None, step_aside=None, ahead: bool = False) -> None:
    """Attach the panel's callbacks.

    With an ``activity`` (``views.model.Activity``) the panel's forecasting gives way to
    the other callbacks: ``step_aside()`` stops counting the panel's own request as one
    being served, and each step of a computation waits for the others to finish (up
    to :data:`PATIENCE` seconds). With ``ahead``, the outlook of the next hour is
    prepared after each view (:class:`Ahead`).
    """

    pause = GiveWay(model, activity)
    worker = Ahead(model, pause) if ahead else None
    model.outlook_on, model.outlook_pause = True, pause
    requests = Requests()

    @app.callback(
        Output(ids.OUTLOOK, "children"), Input(ids.STATE, "data"), State(ids.OUTLOOK_CLIENT, "data")
    )
    def predicted(state, client):
        viewer = request_viewer(model)
        state = ViewerModel(model, viewer).state(state)
        if state["date"] is None:  # no data yet: nothing to forecast from
            raise PreventUpdate
        t = text[state["lang"]]
        if not isinstance(client, str) or len(client) > 64:
            client = None
        if step_aside is not None:
            step_aside()
        wanted = None
        n = 0
        if client:
            n = requests.begin(client)
            wanted = lambda: requests.newest(client, n)  # noqa: E731
        view = (state["node"], state["date"], int(state["hour"]))
        # A view opened by its address (a page's first request): its next hour is queued
        # now, to be prepared as soon as this outlook is done, even if the user steps on
        # before this answer arrives.
        early = worker is not None and n == 1
        if early:
            worker.after_view(viewer, *view)
        try:
            items = rows(model, viewer, *view, pause, wanted)
        except Superseded:
            raise PreventUpdate from None  # the page no longer waits for this answer
        if worker is not None and not early:
            worker.after_view(viewer, *view)
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
        viewer = request_viewer(model)
        state = ViewerModel(model, viewer).state(state)
        trig = ctx.triggered_id
        if not trig or not any(clicks or []):
            return no_update
        viewer.require_act("dispatch decision")
        d = decision_of(trig)
        viewer.require(d["branch_id"])
        # The decision is recorded with the viewer of this request, where it is made.
        decisions.record_decision(model.store, state["node"], **d, user=viewer.label)
        t = text[state["lang"]]
        return t.get("decision_" + d["decision"], d["decision"])


def decision_of(key) -> dict:
    """The decision a suggestion button's id stands for, checked field by field
    (``views.state.BadState`` naming the field otherwise): the id comes back from the
    browser.

    Examples
    --------
    >>> decision_of({"hour": "2026-01-02T09:00:00", "branch": "b-1", "src": "1", "zone": "2",
    ...              "n": 2, "km": 1.5, "what": "vehicle|van|", "decision": "accepted"})["vehicles"]
    2
    """
    if not isinstance(key, dict):
        raise BadState("decision: the button id must be an object")

    def field(name, convert, ok=lambda v: True):
        value = key.get(name)
        try:
            if isinstance(value, bool | dict | list):
                raise TypeError
            out = convert(value)
        except (TypeError, ValueError, OverflowError):
            raise BadState(f"decision: {name} {str(value)[:40]!r} is not valid") from None
        if not ok(out):
            raise BadState(f"decision: {name} {str(value)[:40]!r} is out of range")
        return out

    what = field("what", str, lambda v: len(v) <= 200)
    kind, mode, outlet = (what.split("|") + ["", ""])[:3]
    vehicle = kind == "vehicle"
    n = field("n", int, lambda v: 0 <= v <= 10_000)
    return {
        "branch_id": field("branch", str, lambda v: 0 < len(v) <= 64),
        "hour": field("hour", datetime.fromisoformat, lambda v: 2000 <= v.year <= 2200),
        "source_cell": field("src", int, lambda v: 0 <= v < 2**64),
        "zone_cell": field("zone", int, lambda v: 0 <= v < 2**64),
        "couriers": 0 if vehicle else n,
        "decision": field("decision", str, lambda v: v in decisions.DECISIONS),
        "distance_km": field("km", float, lambda v: 0 <= v <= 10_000),
        "kind": "vehicle" if vehicle else "courier",
        "mode": mode or None,
        "vehicles": n if vehicle else 0,
        "source_outlet": outlet or None,
    }
