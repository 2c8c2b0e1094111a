"""Answers of the dashboard's panels, built once for every viewer of the same scope.

Many people watch the same views: a whole headquarters the national map, each region's
staff their region. Each panel's answer is a pure function of the request, the viewer's
scope and the data, so the first viewer's answer can serve the next ones until the data
it was built from changes. An answer is kept with what its computation read
(``data.store.tracking``):

* the version of each versioned thing it read (a day window's fingerprint, the span of
  hours holding data): every use checks them again (with the same one-second checks the
  cached day frames use), so data arriving for a day (live ingest, an import) is seen as
  soon as the panels would have seen it uncached;
* the earliest expiry of the time-bounded cache entries it used, and at most
  :data:`MAX_AGE_SECONDS` in all;
* an answer that read the store outside a cache entry is not kept at all.

Keys are chosen by the caller (``pages/answers.py``: the viewer's scope and the request);
this module only keeps, checks and forgets. Concurrent requests for the same missing
answer wait for one computation instead of repeating it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from data.store.tracking import Reads

#: No answer is kept longer than this, whatever it read: values cached without a lifetime
#: (the node tree, territories) may be read again meanwhile.
MAX_AGE_SECONDS = 30.0
#: How long a request waits for the same answer being made by another one.
WAIT_SECONDS = 30.0


@dataclass(frozen=True)
class Answer:
    body: bytes
    mimetype: str
    versions: tuple  # ((what was read, its version), ...)
    expires: float


class Answers:
    """Kept answers, at most ``max_bytes`` of bodies, the least recently used forgotten first.

    Parameters
    ----------
    max_bytes : int
        Bodies kept in all; an answer larger than a quarter of it is not kept.
    version : callable
        ``version(key)``: the current version of something an answer read
        (``data.store.tracking.depends``).

    Examples
    --------
    >>> from data.store.tracking import Reads
    >>> versions = {"d1": 1}
    >>> answers = Answers(1000, version=versions.get)
    >>> answers.take("k") is None  # missing: this caller makes it
    True
    >>> answers.keep("k", b"{}", "application/json", Reads(versions={"d1": 1}))
    True
    >>> answers.take("k").body
    b'{}'
    >>> versions["d1"] = 2  # the data changed
    >>> answers.take("k") is None
    True
    >>> answers.keep("k", b"{}", "application/json", Reads(uncached=True))  # read uncached
    False
    """

    def __init__(
        self,
        max_bytes: int,
        version: Callable,
        max_age: float = MAX_AGE_SECONDS,
        wait: float = WAIT_SECONDS,
    ):
        self.max_bytes = max_bytes
        self._version = version
        self._max_age = max_age
        self._wait = wait
        self._kept: OrderedDict = OrderedDict()
        self._bytes = 0
        self._making: dict = {}
        self._lock = threading.Lock()

    def take(self, key) -> Answer | None:
        """The kept answer of ``key`` if it still holds. Otherwise ``None``, and the caller
        makes it and must then call :meth:`keep` or :meth:`release` for ``key``; a request
        for an answer another one is making waits for it (up to ``wait`` seconds)."""
        deadline = time.monotonic() + self._wait
        while True:
            with self._lock:
                answer = self._kept.get(key)
                if answer is not None:
                    self._kept.move_to_end(key)
            if answer is not None:
                if self._holds(answer):
                    return answer
                self._forget(key, answer)
            with self._lock:
                busy = self._making.get(key)
                if busy is None:
                    self._making[key] = threading.Event()
                    return None
            if not busy.wait(max(0.0, deadline - time.monotonic())):
                with self._lock:  # the other one is too slow: make it here too
                    self._making.setdefault(key, threading.Event())
                return None

    def keep(self, key, body: bytes, mimetype: str, reads: Reads | None) -> bool:
        """Keep the answer of ``key`` made with ``reads``; False when it cannot be kept
        (nothing recorded, an uncached read, too large). Releases ``key`` either way."""
        try:
            if reads is None or reads.uncached or len(body) * 4 > self.max_bytes:
                return False
            expires = min(reads.expires, time.monotonic() + self._max_age)
            answer = Answer(bytes(body), mimetype, tuple(reads.versions.items()), expires)
            with self._lock:
                old = self._kept.pop(key, None)
                if old is not None:
                    self._bytes -= len(old.body)
                self._kept[key] = answer
                self._bytes += len(answer.body)
                while self._bytes > self.max_bytes and self._kept:
                    _, dropped = self._kept.popitem(last=False)
                    self._bytes -= len(dropped.body)
            return True
        finally:
            self.release(key)

    def release(self, key) -> None:
        """``key`` is no longer being made here (kept, not kept or failed)."""
        with self._lock:
            busy = self._making.pop(key, None)
        if busy is not None:
            busy.set()

    def size(self) -> tuple[int, int]:
        """(answers, bytes) kept now."""
        with self._lock:
            return len(self._kept), self._bytes

    def _holds(self, answer: Answer) -> bool:
        if time.monotonic() >= answer.expires:
            return False
        try:
            return all(self._version(key) == version for key, version in answer.versions)
        except Exception:  # noqa: BLE001 - a check that fails keeps nothing: make it again
            return False

    def _forget(self, key, answer: Answer) -> None:
        with self._lock:
            if self._kept.get(key) is answer:
                del self._kept[key]
                self._bytes -= len(answer.body)
