"""What an open live view learns of its data: a fingerprint of the data its viewer sees,
the words of the live indicator, and the hub of the push channel's streams.

A live page learns whether its data changed, by a poll every :data:`POLL_SECONDS` or by
an event of its stream (:class:`Hub`, ``EMAP_LIVE_CHANNEL=push``); either way the answer
is a digest of the viewer's own node's hourly figures on the newest day, so a page
redraws only when something it shows changed, and a branch manager's page learns
nothing of another branch's traffic (the digest is of their subtree's figures only).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time

#: Seconds between two polls of an open live page. With the data fingerprint trusted for
#: ``views.model.FRESHNESS_SECONDS`` (1 s) and a redraw of under a second, a fix reaches
#: the page within about 4 s of its acknowledgement.
POLL_SECONDS = 2.0
#: Seconds without any change after which the indicator says the feed has stopped.
STALE_SECONDS = 120.0
_CLOCK = re.compile(r"\d\d:\d\d:\d\d")
log = logging.getLogger(__name__)


def fingerprint(m, node: str) -> dict | None:
    """``{"v": digest, "newest": [day, hour]}`` of the data ``node`` shows on its newest
    day, read through the viewer model ``m`` (so ``node`` is checked against its viewer);
    None while the node has no data."""
    newest = m.newest(node)
    if newest is None:
        return None
    day, hour = newest
    rows = m.trend(node, day).drop("local_hour", strict=False).rows()
    digest = hashlib.blake2b(repr((newest, rows)).encode(), digest_size=8).hexdigest()
    return {"v": digest, "newest": [day, hour]}


def known(data) -> dict | None:
    """The version a page says it has (hostile input): kept only when well formed."""
    if not isinstance(data, dict):
        return None
    v, at, seen = data.get("v"), data.get("at"), data.get("since")
    if not (isinstance(v, str) and len(v) <= 32 and isinstance(at, str) and _CLOCK.fullmatch(at)):
        return None
    if not isinstance(seen, int | float) or isinstance(seen, bool):
        return None
    return {"v": v, "at": at, "since": float(seen)}


def advance(
    previous: dict | None, current: dict | None, clock: str, now: float | None = None, first: bool = True
):
    """``(version to send or None when unchanged, indicator key, time shown)`` after a poll.

    ``previous``: what the page has (:func:`known`); ``current``: :func:`fingerprint`;
    ``clock``: the network's local time now, ``hh:mm:ss``; ``now``: seconds (epoch);
    ``first``: a page without a version takes this one as its first, with nothing to
    redraw (False: the page may have missed a change since it was drawn, so it redraws).

    Examples
    --------
    >>> first, key, at = advance(None, {"v": "a1", "newest": ["2026-12-05", 9]}, "09:00:01", now=100)
    >>> first["v"], key, at
    ('a1', 'live_at', '09:00:01')
    >>> advance(first, {"v": "a1", "newest": ["2026-12-05", 9]}, "09:00:03", now=102)
    (None, 'live_at', '09:00:01')
    >>> advance(first, {"v": "a1", "newest": ["2026-12-05", 9]}, "09:05:00", now=400)[1:]
    ('live_stale', '09:00:01')
    >>> advance(None, {"v": "a2", "newest": ["2026-12-05", 9]}, "09:05:01", now=401, first=False)[0]["first"]
    False
    """
    now = time.time() if now is None else now
    if current is None:
        return None, "live_stale", previous["at"] if previous else clock
    if previous is not None and previous["v"] == current["v"]:
        key = "live_stale" if now - previous["since"] > STALE_SECONDS else "live_at"
        return None, key, previous["at"]
    # "first": the page's first version, taken when live mode starts (the view was just
    # drawn on the newest hour): nothing to redraw
    return {**current, "at": clock, "since": now, "first": previous is None and first}, "live_at", clock


class Subscribers:
    """Open live pages: a page counts while it polled within the last three polls.

    A poll names its page by an id the page was given at load (sent back by the client,
    so hostile: the table is capped, and the oldest entries go first).

    Examples
    --------
    >>> pages = Subscribers()
    >>> pages.seen("a", now=0.0); pages.seen("b", now=1.0); pages.seen("a", now=5.0)
    >>> pages.count(now=6.0), pages.count(now=8.0)
    (2, 1)
    """

    def __init__(self, window: float = 3 * POLL_SECONDS, cap: int = 100_000):
        self.window, self.cap = window, cap
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def seen(self, page, now: float | None = None) -> None:
        key = page if isinstance(page, str) and len(page) <= 64 else "?"
        now = time.monotonic() if now is None else now
        with self._lock:
            self._last.pop(key, None)
            self._last[key] = now  # newest last: the dict stays ordered by time
            while len(self._last) > self.cap:
                del self._last[next(iter(self._last))]

    def count(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            for key in [k for k, t in self._last.items() if now - t > self.window]:
                del self._last[key]
            return len(self._last)


# -- the push channel (EMAP_LIVE_CHANNEL=push; pages/live_events.py) ----------------------------
#: The two ways an open live page learns that its data changed.
CHANNELS = ("poll", "push")
#: Seconds between two looks of the one checker thread at the fingerprints of the open
#: streams' viewers (one read per distinct viewer, whatever the number of streams).
CHECK_SECONDS = 0.5
#: Seconds between two heartbeats of an idle stream: a comment line, which keeps proxies
#: from closing the connection and lets the server notice a page that went away (a write
#: to a closed connection fails).
HEARTBEAT_SECONDS = 15.0
#: Seconds a stream lasts: then the server ends it and the browser opens a new one (its
#: ``retry`` delay later), so that no connection, thread or session check lives for ever.
STREAM_SECONDS = 300.0
#: Seconds between two checks that a stream's session is still signed in (as the guard's
#: memory of a session, ``auth.web.SESSION_RECHECK_SECONDS``).
SESSION_CHECK_SECONDS = 2.0
#: Open streams per session (a browser holds at most six connections to a server; more
#: live tabs than this poll instead) and on the server (each holds one of waitress's 256
#: request threads: a quarter of them at most).
STREAMS_PER_SESSION = 4
MAX_STREAMS = 64
#: With push, seconds between two refreshes of an open page's indicator (the "no new data
#: since" text) by a request of its own; changes come by the stream.
PUSH_REFRESH_SECONDS = 15.0


class Full(RuntimeError):
    """No stream for this page: a cap is reached or the server is stopping (the page polls)."""


class Stream:
    """One open event stream: whose it is and what it has to send.

    ``key``: the viewer (streams of equal viewers share one fingerprint read); ``session``:
    what the per-session cap counts; ``who``: what ``allowed`` is asked about (None: no
    sign-in to check); ``stopping``: a callable saying the server is shutting down.
    """

    __slots__ = ("key", "session", "who", "stopping", "opened", "last", "pending", "ended")

    def __init__(self, key, session, who=None, stopping=None, opened: float = 0.0):
        self.key, self.session, self.who, self.stopping = key, session, who, stopping
        self.opened = opened
        self.last: str | None = None  # the version last handed to the stream
        self.pending: dict | None = None  # a fingerprint waiting to be sent
        self.ended: str | None = None  # why the stream ends (None: it goes on)


class Hub:
    """The open event streams of one app and the one thread that watches for them.

    Every :data:`CHECK_SECONDS` the checker reads the fingerprint (``fingerprint_of(key)``,
    :func:`fingerprint` through the viewer model) once per distinct viewer among the open
    streams and hands a changed one to each of that viewer's streams; every
    :data:`SESSION_CHECK_SECONDS` it asks ``allowed(who)`` for each signed-in session, and
    ends the streams of one signed out (or changed: another node, role or grant). It ends
    streams older than ``stream_seconds``, and all of them when the server stops. It runs
    while streams are open and exits when none are.

    Examples
    --------
    >>> hub = Hub(lambda key: {"v": key + "1", "newest": ["2026-12-05", 9]}, check_seconds=0.05)
    >>> s = hub.open("a", session="s1")
    >>> hub.next(s, timeout=1)
    ('version', {'v': 'a1', 'newest': ['2026-12-05', 9]})
    >>> hub.next(s, timeout=0.1)
    ('beat', None)
    >>> hub.close(s); hub.next(s, timeout=0)
    ('end', 'closed')
    """

    def __init__(
        self,
        fingerprint_of,
        allowed=None,
        check_seconds: float = CHECK_SECONDS,
        session_seconds: float = SESSION_CHECK_SECONDS,
        stream_seconds: float = STREAM_SECONDS,
        max_streams: int = MAX_STREAMS,
        per_session: int = STREAMS_PER_SESSION,
    ):
        self.fingerprint_of, self.allowed = fingerprint_of, allowed
        self.check_seconds, self.session_seconds = check_seconds, session_seconds
        self.stream_seconds = stream_seconds
        self.max_streams, self.per_session = max_streams, per_session
        self._cond = threading.Condition()
        self._streams: set[Stream] = set()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def count(self) -> int:
        with self._cond:
            return len(self._streams)

    def open(self, key, session, who=None, stopping=None) -> Stream:
        """A new stream for viewer ``key``, holding the current fingerprint to send first;
        :class:`Full` when a cap is reached."""
        with self._cond:
            if self._stopped:
                raise Full("the server is stopping")
            if len(self._streams) >= self.max_streams:
                raise Full(f"{self.max_streams} live streams are open on this server, the most it serves")
            if sum(s.session == session for s in self._streams) >= self.per_session:
                raise Full(f"{self.per_session} live pages are open in this session, the most it may stream")
            stream = Stream(key, session, who, stopping, time.monotonic())
            self._streams.add(stream)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="emap-live-streams", daemon=True)
                self._thread.start()
        try:
            current = self.fingerprint_of(key)  # the page catches up at once (a reconnect)
        except Exception:
            self.close(stream)
            raise
        with self._cond:
            if current is not None and stream.last is None:
                stream.pending, stream.last = current, current["v"]
        return stream

    def close(self, stream: Stream, why: str = "closed") -> None:
        with self._cond:
            self._streams.discard(stream)
            stream.ended = stream.ended or why
            self._cond.notify_all()

    def stop(self) -> None:
        """End every stream and take no more (the server stops)."""
        with self._cond:
            self._stopped = True
            for s in list(self._streams):
                s.ended = s.ended or "stopping"
            self._streams.clear()
            self._cond.notify_all()

    def next(self, stream: Stream, timeout: float) -> tuple[str, object]:
        """What ``stream`` sends next, waiting up to ``timeout`` seconds: ``("version",
        fingerprint)``, ``("end", why)``, or ``("beat", None)`` when nothing came."""
        with self._cond:
            self._cond.wait_for(lambda: stream.ended is not None or stream.pending is not None, timeout)
            if stream.ended is not None:
                return "end", stream.ended
            if stream.pending is not None:
                sent, stream.pending = stream.pending, None
                return "version", sent
            return "beat", None

    # -- the checker --------------------------------------------------------------------------
    def _run(self) -> None:
        sessions_checked, failing = time.monotonic(), False
        while True:
            with self._cond:
                if not self._streams or self._stopped:
                    self._thread = None  # open() starts a new one
                    return
                streams = list(self._streams)
            check_sessions = time.monotonic() - sessions_checked >= self.session_seconds
            try:
                ends = self._ends(streams, check_sessions)
                # no read for a stream that ends: when the server stops, the store closes
                found = self._changes([s for s in streams if s not in ends])
            except Exception:  # the checker must outlive a bad moment (a store being closed)
                if not failing:  # once per spell of failures, not every half second
                    log.exception("live streams: the check failed")
                failing, ends, found = True, {}, {}
            else:
                failing = False
            if check_sessions:
                sessions_checked = time.monotonic()
            with self._cond:
                for s, why in ends.items():
                    self._streams.discard(s)
                    s.ended = s.ended or why
                for s, fp in found.items():
                    if s.ended is None and fp["v"] != s.last:
                        s.pending, s.last = fp, fp["v"]
                if ends or found:
                    self._cond.notify_all()
                self._cond.wait(self.check_seconds)

    def _ends(self, streams: list[Stream], check_sessions: bool) -> dict:
        """Streams to end, with why: the server stops, too old, or signed out."""
        now, ends, verdicts = time.monotonic(), {}, {}
        for s in streams:
            if s.stopping is not None and s.stopping():
                ends[s] = "stopping"
            elif now - s.opened > self.stream_seconds:
                ends[s] = "renew"
            elif check_sessions and s.who is not None and self.allowed is not None:
                if s.who not in verdicts:  # one look per session, however many streams
                    verdicts[s.who] = bool(self.allowed(s.who))
                if not verdicts[s.who]:
                    ends[s] = "signed out"
        return ends

    def _changes(self, streams: list[Stream]) -> dict:
        """The current fingerprint for each stream whose viewer's data changed."""
        keys: dict = {}
        for s in streams:
            keys.setdefault(s.key, []).append(s)
        found = {}
        for key, group in keys.items():
            fp = self.fingerprint_of(key)
            if fp is None:
                continue
            found.update({s: fp for s in group if fp["v"] != s.last})
        return found
