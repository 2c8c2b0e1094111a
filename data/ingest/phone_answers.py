"""The answers a phone gets without a commit, shared by both phone ports and the phone
process.

Kept free of the writer's and the store's imports: the phone process
(:mod:`cli.phone_worker`) imports only this, the listener and the relay, so it starts in
a tenth of a second with a few tens of MB, and a phone process that died is back before
phones notice.
"""

from __future__ import annotations

from concurrent.futures import TimeoutError as FutureTimeout

#: Reason phrases of the statuses phones are answered with.
REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    405: "Method Not Allowed",
    413: "Content Too Large",
    503: "Service Unavailable",
}

#: The answer to a method other than GET or POST on the OsmAnd endpoint (with ``Allow``).
METHOD_NOT_ALLOWED = (405, "method not allowed: use GET or POST\n")


def submitted(endpoint, prepared):
    """What a phone request waits for once ``endpoint.prepare`` gave ``prepared``: the
    answer now, ``(status, text)``, or the future of its commit. Both phone listeners (on a
    thread, or relaying from the phone process) start every request's answer here."""
    if isinstance(prepared, tuple):
        return prepared
    try:
        return endpoint.submit(prepared)
    except Exception as exc:
        return endpoint.failure(exc)


def not_committed(exc: BaseException) -> tuple[int, str]:
    """``(503, text)`` for a fix whose commit did not come (send with ``Retry-After: 1``):
    not in time, or the writer (or the serving process) could not be reached.

    Examples
    --------
    >>> not_committed(FutureTimeout())[1]
    'not acknowledged in time; retry (re-sent records are not stored twice)\\n'
    """
    if isinstance(exc, FutureTimeout):
        return 503, "not acknowledged in time; retry (re-sent records are not stored twice)\n"
    return 503, f"not stored: {exc}; retry\n"
