"""Live mode: the poll of an open live page, its version store and the indicator.

A short poll rather than a push: every :data:`views.live.POLL_SECONDS` the page asks
for the fingerprint of its viewer's data (:func:`views.live.fingerprint`, a few
microseconds from the cached hourly figures); only when it changed does the version
store change, and only then does the reducer (``pages/view_state.py``) move the view to
the newest hour and the panels redraw (the map as a ``Patch`` of values). Every poll
also refreshes the indicator, "live · last update hh:mm:ss"; a page whose polls stop
being answered says so by itself (a client-side check, no server needed).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from dash import ClientsideFunction, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from pages import ids
from pages.view_state import viewer_model
from views import live as live_view
from views.model import Model


def layout() -> list:
    """The poll timer, the version store and the watchdog's heartbeat store."""
    return [
        dcc.Interval(id=ids.LIVE_POLL, interval=int(live_view.POLL_SECONDS * 1000), disabled=True),
        dcc.Store(id=ids.LIVE_VERSION),
        dcc.Store(id=ids.LIVE_BEAT),
    ]


def indicator() -> html.Span:
    """The live indicator of the control bar (empty while live mode is off)."""
    return html.Span(
        [html.Span(id=ids.LIVE_TEXT), html.Span(id=ids.LIVE_LOST, className="live-lost-text")],
        id=ids.LIVE_BADGE,
        className="live-badge",
    )


def register(app, model: Model, text: dict) -> None:
    """Attach the poll, the switch of its timer and the client-side watchdog."""

    # Triggered once, by the page's id being set at its load (not by the URL: the reducer
    # writes the URL and reads this switch, and a cycle would upset Dash's first round).
    @app.callback(Output(ids.LIVE, "value"), Input(ids.OUTLOOK_CLIENT, "data"), State(ids.URL, "search"))
    def start_live(_page, search):
        # A page opened on no particular hour while data is arriving starts live: the
        # newest hour, following the data. A link to a given hour stays on it.
        pinned = isinstance(search, str) and ("date=" in search or "hour=" in search)
        m = viewer_model(model)
        return ["live"] if not pinned and m.receiving(m.root()) else no_update

    @app.callback(Output(ids.LIVE_POLL, "disabled"), Input(ids.LIVE, "value"))
    def toggle_live(live):
        return not live

    pages = live_view.Subscribers()
    metrics = getattr(app, "metrics", None)
    if metrics is not None:
        metrics.live_subscribers.set_function(pages.count)  # emap_live_subscribers

    @app.callback(
        Output(ids.LIVE_VERSION, "data"),
        Output(ids.LIVE_TEXT, "children"),
        Output(ids.LIVE_LOST, "children"),
        Output(ids.LIVE_BEAT, "data"),
        Input(ids.LIVE_POLL, "n_intervals"),
        Input(ids.LIVE, "value"),
        State(ids.STATE, "data"),
        State(ids.LIVE_VERSION, "data"),
        State(ids.OUTLOOK_CLIENT, "data"),  # the page's id, given at its load
    )
    def poll(_n, live, state, have, page):
        if state is None:
            raise PreventUpdate
        m = viewer_model(model)
        state = m.state(state)
        t = text[state["lang"]]
        if not live:
            return None, "", "", no_update
        pages.seen(page)
        clock = model.local(datetime.now(UTC).replace(tzinfo=None)).strftime("%H:%M:%S")
        send, key, at = live_view.advance(live_view.known(have), live_view.fingerprint(m, m.root()), clock)
        return (send if send is not None else no_update), t[key].format(t=at), t["live_lost"], time.time()

    # The watchdog runs in the page (assets/live.js): when polls stop being answered (the
    # server is down, the network gone), the indicator turns to "the server does not answer".
    app.clientside_callback(
        ClientsideFunction(namespace="emap", function_name="liveWatch"),
        Output(ids.LIVE_BADGE, "className"),
        Input(ids.LIVE_BEAT, "data"),
        Input(ids.LIVE_POLL, "n_intervals"),
        Input(ids.LIVE, "value"),
        State(ids.LIVE_POLL, "interval"),
    )
