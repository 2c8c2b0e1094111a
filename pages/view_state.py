"""The view state: the URL, the state store and the timers, and the one reducer callback
that turns every control, click and tick into the view state (and the URL).

The panels are pure renderings of that state: each reads it through
:func:`viewer_model` and :func:`dated`, which every panel module imports from here.
"""

from __future__ import annotations

from dash import ALL, Input, Output, State, ctx, dcc, no_update
from dash.exceptions import PreventUpdate

from auth.web import request_viewer
from geo import cells as h3cells
from pages import ids
from views import state as st
from views.model import Model, ViewerModel

#: Seconds between steps of the play button (live mode polls: pages/live.py).
PLAY_SECONDS = 2
_NODE_PREFIXES = ("hq", "div-", "r-", "b-")
#: Controls that set one field of the view state: id -> (field, does the value count?).
_FIELDS = {
    ids.DATE: ("date", bool),
    ids.HOUR: ("hour", lambda v: v is not None),
    ids.METRIC: ("metric", bool),
    ids.LAYERS: ("layers", lambda v: True),
    ids.LANGUAGE: ("lang", lambda v: True),
    ids.BASEMAP: ("basemap", lambda v: True),
}
#: What the reducer answers when a trigger changes nothing.
_UNCHANGED = (no_update,) * 10


def layout() -> list:
    """The invisible parts: the URL, the state and geometry stores, the play timer."""
    return [
        dcc.Location(id=ids.URL, refresh=False),
        dcc.Store(id=ids.STATE),
        dcc.Store(id=ids.GEOMETRY),
        dcc.Interval(id=ids.PLAY_TICK, interval=PLAY_SECONDS * 1000, disabled=True),
    ]


def viewer_model(model: Model) -> ViewerModel:
    """The view model as the viewer of the current request may use it."""
    return ViewerModel(model, request_viewer(model))


def dated(state: dict) -> dict:
    """A view state with a day: a network with no data yet has none to draw."""
    if state["date"] is None:
        raise PreventUpdate
    return state


def register(app, model: Model) -> None:
    """Attach the reducer: every control, click and tick -> the view state and the URL.

    The state it is given is validated against the viewer of the request (a node outside
    the viewer's subtree raises ``OutsideScope``, answered ``403`` with an audit line).
    """

    @app.callback(
        Output(ids.STATE, "data"),
        Output(ids.URL, "search"),
        Output(ids.DATE, "value"),
        Output(ids.DATE, "options"),
        Output(ids.HOUR, "value"),
        Output(ids.METRIC, "value"),
        Output(ids.LAYERS, "value"),
        Output(ids.LANGUAGE, "value"),
        Output(ids.BASEMAP, "value"),
        Output(ids.DRILL, "value"),
        Input(ids.URL, "search"),
        Input(ids.DATE, "value"),
        Input(ids.HOUR, "value"),
        Input(ids.METRIC, "value"),
        Input(ids.LAYERS, "value"),
        Input(ids.LANGUAGE, "value"),
        Input(ids.BASEMAP, "value"),
        Input(ids.DRILL, "value"),
        Input(ids.MAP, "clickData"),
        Input({"type": ids.CRUMB, "node": ALL}, "n_clicks"),
        Input({"type": ids.ALERT, "zone": ALL}, "n_clicks"),
        Input(ids.HOUR_PREV, "n_clicks"),
        Input(ids.HOUR_NEXT, "n_clicks"),
        Input(ids.PLAY_TICK, "n_intervals"),
        Input(ids.LIVE_VERSION, "data"),  # live mode: the data shown changed
        Input(ids.LIVE, "value"),
        State(ids.STATE, "data"),
    )
    def reduce(
        search,
        day,
        hour,
        metric,
        layers,
        lang,
        basemap,
        drill,
        click,
        _crumbs,
        _alerts,
        _prev,
        _next,
        _play,
        version,
        live,
        state,
    ):
        m = viewer_model(model)
        trig = ctx.triggered_id
        if trig == ids.LIVE_VERSION and (not isinstance(version, dict) or version.get("first")):
            return _UNCHANGED  # live mode's first look: the view is already on the newest hour
        root = m.root()
        dates = m.dates(root)
        if state is None or trig == ids.URL or trig is None:
            landing = m.landing(root)
            base = st.default(
                node=root, day=landing[0] if landing else None, hour=landing[1] if landing else 10
            )
            s = st.parse(search, base, m.viewer.nodes, dates)
        else:
            values = {
                ids.DATE: day,
                ids.HOUR: hour,
                ids.METRIC: metric,
                ids.LAYERS: layers or [],
                ids.LANGUAGE: lang,
                ids.BASEMAP: basemap,
            }
            pressed = bool(ctx.triggered and ctx.triggered[0]["value"])
            s = step(m, m.state(state), trig, values, drill=drill, click=click, live=live, pressed=pressed)
            if s is None:
                return _UNCHANGED
        if state is None or s["node"] != state.get("node") or s["basemap"] != state.get("basemap"):
            s["focus"] = None
        s["layers"] = m.viewer.shown_layers(s["node"], s["layers"])
        options = [{"label": d, "value": d} for d in dates]
        return (
            s,
            st.encode(s),
            s["date"],
            options,
            s["hour"],
            s["metric"],
            s["layers"],
            s["lang"],
            s["basemap"],
            None,
        )


def step(
    m: ViewerModel, s: dict, trig, values: dict, drill=None, click=None, live=None, pressed: bool = True
) -> dict | None:
    """The view state ``s`` after the trigger ``trig`` (``values``: the controls that set
    one field, by id; ``pressed``: a button's clicks are counted, it was not just drawn);
    None when the trigger changes nothing (a click on no child, a button drawn rather
    than clicked)."""
    s["zone"] = None
    if isinstance(trig, dict):  # a pattern id (not hashable: tested first)
        return _button(m, s, trig) if pressed else None
    if trig in _FIELDS:
        key, counts = _FIELDS[trig]
        if counts(values[trig]):
            s[key] = st.checked(key, values[trig])
    elif trig == ids.DRILL:
        if drill:
            s["node"] = m.viewer.require(drill)
    elif trig == ids.MAP:
        if click:
            target = _clicked_node(m, s, click)
            if target is None:
                return None
            s["node"] = target
    elif trig == ids.HOUR_PREV:
        s["hour"] = (int(s["hour"]) - 1) % 24
    elif trig in (ids.HOUR_NEXT, ids.PLAY_TICK):
        s["hour"] = (int(s["hour"]) + 1) % 24
    elif trig in (ids.LIVE_VERSION, ids.LIVE) and live:
        newest = m.newest(m.root())
        if newest:
            s["date"], s["hour"] = newest
        s["tick"] = (s.get("tick") or 0) + 1
    return s


def _button(m: ViewerModel, s: dict, trig: dict) -> dict:
    """A breadcrumb or alert button: to its node, or to its zone."""
    if trig.get("type") == ids.CRUMB:
        s["node"] = m.viewer.require(trig.get("node"))
    elif trig.get("type") == ids.ALERT:
        s["zone"] = st.checked("zone", trig.get("zone"))
        # The zone's view stays while the hour changes (the zone number does not).
        s["focus"] = m.zone_view(s["node"], s["date"], int(s["hour"]), s["zone"])
    return s


def _clicked_node(model: ViewerModel, state: dict, click: dict) -> str | None:
    """Child node hit by a click on a territory, a label or a hex; None if nothing to drill into."""
    pts = click.get("points") if isinstance(click, dict) else None
    if not isinstance(pts, list) or not pts or not isinstance(pts[0], dict):
        return None
    cd = pts[0].get("customdata")
    first = cd[0] if isinstance(cd, list) and cd else pts[0].get("location")
    if not isinstance(first, str):
        return None
    kids = set(model.children(state["node"])["node_id"].to_list())
    if first.startswith(_NODE_PREFIXES):
        return first if first in kids else None
    if not kids:
        return None
    try:
        cell = int(h3cells.from_str([first])[0])
    except ValueError:
        return None
    k = model.cell_children(state["node"], state["date"], model.res(state["node"]))
    hit = k.filter(k["cell"] == cell)
    return hit["node_id"][0] if len(hit) and hit["node_id"][0] in kids else None
