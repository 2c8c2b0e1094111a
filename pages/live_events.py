"""``GET /live/events``: the push channel of live mode, as server-sent events.

With ``EMAP_LIVE_CHANNEL=push`` an open live page holds this stream instead of polling
(``assets/live.js`` opens it). The stream sends ``event: version`` with the fingerprint of
the signed-in viewer's own subtree (:func:`views.live.fingerprint`, the same digest the
poll answers) when the stream opens and whenever it changes, and a comment line as a
heartbeat. The page then asks for the rest (the indicator, the redraw) through its usual
callbacks, so a stream carries a digest and a day and hour, never figures.

Who: the viewer is the one the guard resolved from the server-side session
(``auth.web.request_viewer``); nothing of the request (a ``node`` in the query, a header)
chooses it. A session that is signed out, expired, disabled or moved to another node
loses its streams within :data:`views.live.SESSION_CHECK_SECONDS`.

Cost: each open stream holds one of waitress's request threads, so they are capped per
session and per server (:data:`views.live.STREAMS_PER_SESSION`, :data:`views.live.MAX_STREAMS`;
one more gets ``429`` and its page polls), end after :data:`views.live.STREAM_SECONDS` (the
browser opens a new one), and one checker thread reads the data for all of them
(:class:`views.live.Hub`).
"""

from __future__ import annotations

import orjson
from flask import Response, request, session

from auth import users
from auth.web import error_response, request_viewer, viewer
from views import live as live_view
from views.model import ViewerModel

PATH = "/live/events"
#: Milliseconds the browser waits before it opens a new stream after one ended.
RETRY_MS = 2000


def register(app, model) -> live_view.Hub:
    """Add ``GET /live/events`` to ``app``'s Flask server; returns the streams' hub."""
    store = model.store

    def fingerprint_of(v):
        return live_view.fingerprint(ViewerModel(model, v), v.root)

    def allowed(who) -> bool:
        token, identity = who
        user = users.session_user(store, token)
        return user is not None and _identity(user) == identity

    hub = live_view.Hub(fingerprint_of, allowed)

    def events():
        v = request_viewer(model)  # resolved by the guard from the session (open app: everyone)
        user = viewer()
        if user is not None:
            token = session.get("sid")
            who, key = (token, _identity(user)), f"session:{token}"
        else:  # an app without sign-in (tests, benchmarks on loopback): per client address
            who, key = None, f"address:{request.remote_addr}"
        try:
            stream = hub.open(v, key, who, _server_stopping(request.environ))
        except live_view.Full as exc:
            answer = error_response(429, f"{exc}: this page asks every few seconds instead")
            answer.headers["Retry-After"] = "60"
            return answer
        resp = Response(_body(hub, stream), mimetype="text/event-stream")
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Accel-Buffering"] = "no"  # a proxy (nginx) must not hold events back
        resp.call_on_close(lambda: hub.close(stream))  # runs even if no byte was sent
        return resp

    app.server.add_url_rule(PATH, "emap_live_events", events, methods=["GET"])
    return hub


def _identity(user: dict) -> tuple:
    """What a stream's viewer was made of: a change of any ends the stream."""
    return (user["user_id"], user["role"], user["node_id"], bool(user.get("can_see_couriers")))


def _body(hub: live_view.Hub, stream: live_view.Stream):
    """The stream's bytes: the reconnect delay, then versions and heartbeats until it ends."""
    try:
        yield f"retry: {RETRY_MS}\n\n".encode()
        while True:
            kind, data = hub.next(stream, live_view.HEARTBEAT_SECONDS)
            if kind == "end":
                return
            if kind == "beat":
                yield b": beat\n\n"
            else:
                yield b"event: version\ndata: " + orjson.dumps(data) + b"\n\n"
    finally:
        hub.close(stream)


def _server_stopping(environ):
    """A check that says when waitress is shutting down, or None.

    On SIGTERM waitress tells its request threads to stop and waits up to 5 s for busy
    ones before it lets the process go on to commit and close the store; a thread holding
    a stream would be busy until its next heartbeat. The hub ends the streams at its next
    look (half a second) when this says so. waitress offers no public signal for it: its
    task dispatcher's ``stop_count`` (threads told to stop) is read, reached through the
    ``waitress.client_disconnected`` callable it puts into every request's environ. Other
    servers (werkzeug in tests) have none: None.
    """
    check = environ.get("waitress.client_disconnected")
    channel = getattr(check, "__self__", None)
    dispatcher = getattr(getattr(channel, "server", None), "task_dispatcher", None)
    if dispatcher is None or not hasattr(dispatcher, "stop_count"):
        return None
    return lambda: dispatcher.stop_count > 0
