"""What one computation read, so that a cache of its answer knows when the answer is old.

The dashboard's answer cache (``views/answers.py``) keeps a callback's answer only when it
can tell when that answer stops being true. While a computation is recorded
(:func:`begin` ... :func:`end`, on one thread), this module collects:

* the version of everything versioned it read (:func:`depends`: the fingerprint of a day
  window, which every cached day frame is keyed on, and the span of hours holding data):
  the answer holds while each keeps its version;
* the earliest expiry of the time-bounded cache entries it used (``views.cache.Cache``
  entries with a ``ttl``): the answer ends with the first of them;
* whether it read the store outside any cache entry (:func:`store_read`, called by
  ``Store.cursor``): nothing says when such a read changes, so that answer is never kept.

Reads made while a cache entry is being built belong to that entry, whose own key or
lifetime says when it is old, and reads made to find a version are accounted for by the
version itself: both are :func:`covered`.

Nothing is collected on threads that are not recording, and the store layer keeps no
reference to the caches that use this.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_local = threading.local()


@dataclass
class Reads:
    """What a recorded computation read.

    Examples
    --------
    >>> r = begin()
    >>> depends(("cube", 1, 2), (3, 120)); expires_at(50.0); expires_at(80.0)
    >>> end() is r, r.versions, r.expires, r.uncached
    (True, {('cube', 1, 2): (3, 120)}, 50.0, False)
    """

    #: What was read (a key its owner can read the version of again) -> its version then.
    versions: dict = field(default_factory=dict)
    #: ``time.monotonic()`` at which the first time-bounded entry used expires.
    expires: float = math.inf
    #: The store was read outside any cache entry.
    uncached: bool = False


def begin() -> Reads:
    """Start recording the current thread's reads (a recording already running is replaced)."""
    reads = _local.reads = Reads()
    _local.covered = 0
    return reads


def end() -> Reads | None:
    """Stop recording on this thread; what was read (``None``: nothing was recorded)."""
    reads = getattr(_local, "reads", None)
    _local.reads = None
    return reads


def _recording() -> Reads | None:
    reads = getattr(_local, "reads", None)
    if reads is None or _local.covered:
        return None
    return reads


def depends(key, version) -> None:
    """What ``key`` names was read at ``version``."""
    reads = _recording()
    if reads is not None:
        reads.versions[key] = version


def expires_at(when: float) -> None:
    """A value used expires at ``when`` (``time.monotonic()``)."""
    reads = _recording()
    if reads is not None and when < reads.expires:
        reads.expires = when


def store_read() -> None:
    """The store is being read; outside a cache entry's making, the answer cannot be kept."""
    reads = _recording()
    if reads is not None:
        reads.uncached = True


@contextmanager
def covered() -> Iterator[None]:
    """Reads inside are accounted for by something else, and are not recorded: a cache
    entry being made (its key or lifetime covers them) or a version being read (the
    caller records the version, not how it was read)."""
    if getattr(_local, "reads", None) is None:
        yield
        return
    _local.covered += 1
    try:
        yield
    finally:
        _local.covered -= 1
