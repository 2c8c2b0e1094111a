"""Live mode: how an open live page learns that its data changed, its version store and
the indicator.

Two channels, chosen by ``EMAP_LIVE_CHANNEL`` (``config.Settings.live_channel``):

* ``push`` (the default): the page holds a server-sent event stream
  (``pages/live_events.py``, opened by ``assets/live.js``) that says when the fingerprint
  of its viewer's data changed; the page then asks for it as a poll would.
* ``poll``: every :data:`views.live.POLL_SECONDS` the page asks for the fingerprint.

Either way the answer is the same callback: the fingerprint of the viewer's data
(:func:`views.live.fingerprint`, a few microseconds from the cached hourly figures); only
when it changed does the version store change, and only then does the reducer
(``pages/view_state.py``) move the view to the newest hour and the panels redraw (the map
as a ``Patch`` of values). Every answer also refreshes the indicator, "live · last update
hh:mm:ss"; a page whose requests or stream stop being answered says so by itself (a
client-side check, no server needed). A page refused a stream (a cap, an older server)
polls.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from dash import ClientsideFunction, Input, Output, State, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from pages import ids, live_events
from pages.view_state import viewer_model
from views import live as live_view
from views.model import Model


def layout() -> list:
    """The poll timer, the version store, the watchdog's heartbeat store, the push
    channel's trigger and the channel's settings (given at the page's load)."""
    return [
        dcc.Interval(id=ids.LIVE_POLL, interval=int(live_view.POLL_SECONDS * 1000), disabled=True),
        dcc.Store(id=ids.LIVE_VERSION),
        dcc.Store(id=ids.LIVE_BEAT),
        dcc.Store(id=ids.LIVE_PUSH),
        dcc.Store(id=ids.LIVE_CHANNEL),
    ]


def channel_of(settings) -> str:
    """The live channel of ``settings`` (``ValueError`` naming the setting otherwise)."""
    channel = str(getattr(settings, "live_channel", "poll")).strip().lower()
    if channel not in live_view.CHANNELS:
        raise ValueError(f"EMAP_LIVE_CHANNEL={channel!r}: use one of {', '.join(live_view.CHANNELS)}")
    return channel


def channel_data(channel: str) -> dict:
    """What the page's script needs to know of the channel (``assets/live.js``)."""
    poll_ms = int(live_view.POLL_SECONDS * 1000)
    if channel != "push":
        return {"channel": "poll", "poll_ms": poll_ms}
    return {
        "channel": "push",
        "url": live_events.PATH,
        "poll_ms": poll_ms,
        "refresh_ms": int(live_view.PUSH_REFRESH_SECONDS * 1000),
    }


def indicator() -> html.Span:
    """The live indicator of the control bar (empty while live mode is off)."""
    return html.Span(
        [html.Span(id=ids.LIVE_TEXT), html.Span(id=ids.LIVE_LOST, className="live-lost-text")],
        id=ids.LIVE_BADGE,
        className="live-badge",
    )


def register(app, model: Model, text: dict) -> None:
    """Attach the poll (or the push channel's route), the switch of its timer and the
    client-side watchdog."""
    channel = channel_of(model.settings)
    settings_of_page = channel_data(channel)
    # with push, the timer only refreshes the indicator; changes come by the stream
    interval = settings_of_page.get("refresh_ms", settings_of_page["poll_ms"])
    hub = live_events.register(app, model) if channel == "push" else None
    app.live_events = hub  # the server may end the streams when it stops (hub.stop())

    # Triggered once, by the page's id being set at its load (not by the URL: the reducer
    # writes the URL and reads this switch, and a cycle would upset Dash's first round).
    @app.callback(
        Output(ids.LIVE, "value"),
        Output(ids.LIVE_CHANNEL, "data"),
        Output(ids.LIVE_POLL, "interval"),
        Input(ids.OUTLOOK_CLIENT, "data"),
        State(ids.URL, "search"),
    )
    def start_live(_page, search):
        # A page opened on no particular hour while data is arriving starts live: the
        # newest hour, following the data. A link to a given hour stays on it.
        pinned = isinstance(search, str) and ("date=" in search or "hour=" in search)
        m = viewer_model(model)
        live = ["live"] if not pinned and m.receiving(m.root()) else no_update
        return live, settings_of_page, interval

    @app.callback(Output(ids.LIVE_POLL, "disabled"), Input(ids.LIVE, "value"))
    def toggle_live(live):
        return not live

    # a page counts while it asked within the last three intervals of its timer
    pages = live_view.Subscribers(window=3 * interval / 1000)
    metrics = getattr(app, "metrics", None)
    if metrics is not None:
        metrics.live_subscribers.set_function(pages.count)  # emap_live_subscribers
    app.live_pages = pages  # counted here too when a web worker answers the poll (cli/web_pool.py)

    @app.callback(
        Output(ids.LIVE_VERSION, "data"),
        Output(ids.LIVE_TEXT, "children"),
        Output(ids.LIVE_LOST, "children"),
        Output(ids.LIVE_BEAT, "data"),
        Input(ids.LIVE_POLL, "n_intervals"),
        Input(ids.LIVE_PUSH, "data"),  # the page's stream said the data changed
        Input(ids.LIVE, "value"),
        State(ids.STATE, "data"),
        State(ids.LIVE_VERSION, "data"),
        State(ids.OUTLOOK_CLIENT, "data"),  # the page's id, given at its load
    )
    def poll(_n, pushed, live, state, have, page):
        # What the stream said is not used: the fingerprint is read here, for this
        # request's viewer, as for a poll. Only whether the event was the stream's opening
        # one matters: any later event means the data changed, so a page that has no
        # version yet (its opening event came before its view state) redraws.
        if state is None:
            raise PreventUpdate
        m = viewer_model(model)
        state = m.state(state)
        t = text[state["lang"]]
        if not live:
            return None, "", "", no_update
        pages.seen(page)
        clock = model.local(datetime.now(UTC).replace(tzinfo=None)).strftime("%H:%M:%S")
        changed = ctx.triggered_id == ids.LIVE_PUSH and not (
            isinstance(pushed, dict) and pushed.get("open") is True
        )
        current = live_view.fingerprint(m, m.root())
        before = live_view.known(have)
        if changed and current is not None and before is not None and before["v"] == current["v"]:
            # The stream saw data this process has not yet (a web worker trusts its own
            # reads for a second): read again now, or the page would wait for its next
            # refresh (PUSH_REFRESH_SECONDS) to see it.
            m.refresh(m.root())
            current = live_view.fingerprint(m, m.root())
        send, key, at = live_view.advance(before, current, clock, first=not changed)
        return (send if send is not None else no_update), t[key].format(t=at), t["live_lost"], time.time()

    # The push channel's stream is opened and closed in the page (assets/live.js), with
    # live mode; a page refused a stream polls.
    app.clientside_callback(
        ClientsideFunction(namespace="emap", function_name="liveChannel"),
        Input(ids.LIVE, "value"),
        Input(ids.LIVE_CHANNEL, "data"),
    )

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
