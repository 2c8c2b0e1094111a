"""What an open live view polls: a fingerprint of the data its viewer sees, and the words
of the live indicator.

A live page asks every :data:`POLL_SECONDS` whether its data changed; the answer is a
digest of the viewer's own node's hourly figures on the newest day, so a page redraws
only when something it shows changed, and a branch manager's page learns nothing of
another branch's traffic (the digest is of their subtree's figures only).
"""

from __future__ import annotations

import hashlib
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


def advance(previous: dict | None, current: dict | None, clock: str, now: float | None = None):
    """``(version to send or None when unchanged, indicator key, time shown)`` after a poll.

    ``previous``: what the page has (:func:`known`); ``current``: :func:`fingerprint`;
    ``clock``: the network's local time now, ``hh:mm:ss``; ``now``: seconds (epoch).

    Examples
    --------
    >>> first, key, at = advance(None, {"v": "a1", "newest": ["2026-12-05", 9]}, "09:00:01", now=100)
    >>> first["v"], key, at
    ('a1', 'live_at', '09:00:01')
    >>> advance(first, {"v": "a1", "newest": ["2026-12-05", 9]}, "09:00:03", now=102)
    (None, 'live_at', '09:00:01')
    >>> advance(first, {"v": "a1", "newest": ["2026-12-05", 9]}, "09:05:00", now=400)[1:]
    ('live_stale', '09:00:01')
    """
    now = time.time() if now is None else now
    if current is None:
        return None, "live_stale", previous["at"] if previous else clock
    if previous is not None and previous["v"] == current["v"]:
        key = "live_stale" if now - previous["since"] > STALE_SECONDS else "live_at"
        return None, key, previous["at"]
    # "first": the page's first version, taken when live mode starts (the view was just
    # drawn on the newest hour): nothing to redraw
    return {**current, "at": clock, "since": now, "first": previous is None}, "live_at", clock


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
