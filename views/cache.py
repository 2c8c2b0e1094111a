"""The dashboard's one explicit cache object."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from data.store import tracking


class Cache:
    """A small thread-safe LRU with an optional time-to-live per entry (the dashboard's
    one explicit cache object, created by ``build_app``). Concurrent callers of the same
    missing key wait for one computation instead of repeating it.

    Examples
    --------
    >>> cache = Cache(size=2)
    >>> cache.get("a", lambda: "computed"), cache.get("a", lambda: "not called")
    ('computed', 'computed')
    >>> cache.get("b", lambda: "B"), cache.get("c", lambda: "C")  # "a" is the least recently used
    ('B', 'C')
    >>> cache.peek("a"), cache.peek("c")
    (None, 'C')
    """

    def __init__(self, size: int = 64):
        self._size = size
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict = {}
        self._current: dict = {}  # key -> newest version seen (get_current)

    def get(self, key, make, ttl: float | None = None):
        while True:
            now = time.monotonic()
            with self._lock:
                hit = self._data.get(key)
                if hit is not None and (hit[1] is None or hit[1] > now):
                    self._data.move_to_end(key)
                    if hit[1] is not None:
                        tracking.expires_at(hit[1])
                    return hit[0]
                busy = self._computing.get(key)
                if busy is None:
                    busy = self._computing[key] = threading.Event()
                    break
            busy.wait()
        try:
            with tracking.covered():  # the entry's key or lifetime stands for its reads
                value = make()
            expires = None if ttl is None else time.monotonic() + ttl
            if expires is not None:
                tracking.expires_at(expires)
            with self._lock:
                self._data[key] = (value, expires)
                self._data.move_to_end(key)
                while len(self._data) > self._size:
                    self._data.popitem(last=False)
            return value
        finally:
            with self._lock:
                self._computing.pop(key).set()

    def peek(self, key):
        """The kept value of ``key`` (None when missing or expired); computes nothing."""
        with self._lock:
            hit = self._data.get(key)
            if hit is None or (hit[1] is not None and hit[1] <= time.monotonic()):
                # An answer made without the value changes when someone else makes it,
                # which no version tells: as an uncached read of the store.
                tracking.store_read()
                return None
            self._data.move_to_end(key)
        if hit[1] is not None:
            tracking.expires_at(hit[1])
        return hit[0]

    def drop(self, key) -> None:
        with self._lock:
            self._data.pop(key, None)

    def current_version(self, key):
        """The newest version of ``key`` asked for so far (None: never asked); inside a
        ``make`` of :meth:`get_current` it is the version being replaced, whose value
        :meth:`peek` still has."""
        with self._lock:
            return self._current.get(key)

    def get_current(self, key, version, make):
        """The value of ``key`` for ``version`` of its data (computed once, as :meth:`get`);
        the value of an older version is dropped, so data that keeps changing (live
        ingest) replaces its entries instead of filling the cache with old ones.

        Examples
        --------
        >>> cache = Cache()
        >>> cache.get_current("day", 1, lambda: "v1"), cache.get_current("day", 2, lambda: "v2")
        ('v1', 'v2')
        >>> cache.peek(("day", 1)), cache.peek(("day", 2))
        (None, 'v2')
        """
        value = self.get((key, version), make)
        with self._lock:
            old = self._current.get(key, version)
            self._current[key] = version
            if old != version:
                self._data.pop((key, old), None)
        return value
