"""The answer to a phone's request, the same on every port that takes phone fixes.

One :class:`PhoneEndpoint` per protocol (``data/ingest/protocols``): the Flask route and
the WSGI front of the main port (``data.ingest.http_api``) and the phone listener's event
loop (``data.ingest.phone_listener``) all answer through it, so a fix gets the same status
and text whichever way it arrives.
"""

from __future__ import annotations

from concurrent.futures import Future
from urllib.parse import parse_qsl

from auth import users
from config import Settings
from data.ingest import reasons
from data.ingest.group_commit import COMMIT_TIMEOUT, Busy, GroupCommitter, Outcome, Scope
from data.ingest.phone_answers import METHOD_NOT_ALLOWED, REASONS, not_committed
from data.ingest.protocols import PhoneProtocol, ProtocolError, osmand
from data.ingest.tokens import Principal, TokenCache
from data.store.database import Store


def bearer_of(header: str) -> str | None:
    return header[7:].strip() if header[:7].lower() == "bearer " else None


def plain_response(start_response, status: int, text: str, headers: list) -> list[bytes]:
    data = text.encode()
    start_response(
        f"{status} {REASONS.get(status, '')}",
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(data))),
            ("X-Content-Type-Options", "nosniff"),
            *headers,
        ],
    )
    return [data]


#: Start of the store's reason for the fix of a device it does not know.
UNKNOWN_DEVICE = "unknown device"


class Fixes:
    """The fixes of one OsmAnd request, ready to commit, with what its token may write."""

    __slots__ = ("records", "scope")

    def __init__(self, records: list[dict], scope: Scope | None):
        self.records, self.scope = records, scope


class PhoneEndpoint:
    """The answer to one phone request of a protocol, the same whichever way a phone reaches
    the server.

    The Flask route, the WSGI front (:func:`ingest_front`) and the phone listener
    (:mod:`data.ingest.phone_listener`) all answer through one object, so a fix gets the same
    status and text on every port. :meth:`answer` blocks until the fix is committed; an
    event loop instead calls :meth:`prepare`, :meth:`submit` and :meth:`answer_of` and
    waits on the future without holding a thread.

    Parameters
    ----------
    store : Store
        Where token refusals are audited (and node territories read).
    settings : Settings
        ``osmand_speed_unit``, ``osmand_require_token``, ``ingest_max_body_bytes``.
    committer : GroupCommitter
        The writer the fixes are queued to.
    tokens : TokenCache
        Token lookups.
    protocol : PhoneProtocol
        How the request becomes ping records (default OsmAnd).

    Examples
    --------
    >>> ep = make_ingest_blueprint(store, settings).osmand           # doctest: +SKIP
    >>> ep.answer("GET", "/osmand", "id=dev-1&lat=22.54&lon=114.05", "", b"", "", None)  # doctest: +SKIP
    (200, 'OK\\n')
    """

    #: ``(405, text)`` for a method other than GET and POST (sent with ``Allow: GET, POST``).
    method_not_allowed = METHOD_NOT_ALLOWED

    def __init__(
        self,
        store: Store,
        settings: Settings,
        committer: GroupCommitter,
        tokens: TokenCache,
        protocol: PhoneProtocol = osmand,
    ):
        self.protocol = protocol
        self.store = store
        self.settings = settings
        self.committer = committer
        self.tokens = tokens
        #: Requests and records are counted in the writer's metrics, under the protocol's name.
        self.metrics = committer.metrics
        self.limit = settings.ingest_max_body_bytes
        #: ``(413, text)`` for a body over the limit (the phone listener closes the connection after it).
        self.too_large = (413, f"body larger than {self.limit} bytes: send smaller batches\n")

    @staticmethod
    def uses_store(query: str, authorization: str) -> bool:
        """Whether :meth:`prepare` may read or write the store for this request: only when a
        token comes with it (lookup, refusal audit, territory check). An event loop runs
        such requests on a worker thread and the others inline."""
        return bool(authorization) or "token=" in query

    def refused(self, principal: Principal, what: str, method: str, path: str, remote: str | None) -> None:
        """Record writes a token was refused in the audit log (for every ingest route)."""
        users.audit(self.store, principal.name, "refusal", f"{method} {path}: {what} (from {remote})")

    def prepare(
        self,
        method: str,
        path: str,
        query: str,
        mimetype: str,
        body: bytes,
        authorization: str,
        remote: str | None,
    ) -> tuple[int, str] | list[dict]:
        """The raw ping records to commit, or the final ``(status, text)`` when the request is
        answered without a commit (malformed, token refused). The body is already
        size-checked and the method is GET or POST."""
        args: dict[str, str] = {}
        for k, v in parse_qsl(query, keep_blank_values=True):
            args.setdefault(k, v)  # the first value of a repeated field, as Flask's request.args
        token = args.get("token") or bearer_of(authorization)
        principal = None
        if token:
            principal = self.tokens.lookup(token)
            if principal is None:
                return 401, "unknown or revoked token\n"
        elif self.settings.osmand_require_token:
            return 401, "missing token: add ?token=... to the server URL\n"
        try:
            records = self.protocol.decode(method, args, mimetype, body, self.settings.osmand_speed_unit)
        except ProtocolError as exc:
            return 400, f"{exc}\n"
        return Fixes(records, self._scope(principal, method, path, remote))

    def _scope(self, principal: Principal | None, method: str, path: str, remote: str | None) -> Scope | None:
        """What the request's token may write, checked by the writer on the stored values.
        Refused fixes are not quarantined: the phone keeps them (answer 403)."""
        if principal is None or (principal.kind != "device" and principal.node_id is None):
            return None

        def audit(n: int) -> None:
            what = (
                f"positions of a device other than '{principal.device_id}'"
                if principal.kind == "device"
                else f"positions outside node '{principal.node_id}'"
            )
            self.refused(principal, what, method, path, remote)

        return Scope(
            device_id=principal.device_id if principal.kind == "device" else None,
            node_id=principal.node_id,
            refusal=(
                f"the token of system '{principal.system_name}' cannot report outside node "
                f"'{principal.node_id}'"
            ),
            keep=False,
            on_refused=audit,
        )

    def submit(self, fixes: Fixes) -> Future:
        """Queue the fixes of :meth:`prepare`; the future resolves once they are committed.

        Raises
        ------
        Busy
            When the writer cannot take them now (answer with :meth:`failure`).
        """
        return self.committer.submit("pings", fixes.records, self.protocol.NAME, scope=fixes.scope)

    def count(self, status: int, n: int = 1) -> None:
        """Count ``n`` requests answered with ``status`` (by whoever sends the answer)."""
        self.metrics.request(self.protocol.NAME, status, n)

    def answer_of(self, outcome: Outcome) -> tuple[int, str]:
        """``(status, text)`` once committed (see "the phone's answers" in the README).

        200 when every fix is stored or refused for good (quarantined with its reason,
        given in the text); 403 when a fix is one the token may not write, or its device
        is not registered: the phone keeps it and sends it again, and it is stored once
        an administrator has put that right.
        """
        self.metrics.records(self.protocol.NAME, "pings", outcome.accepted, reasons.count(outcome.rejected))
        held = [
            why for i, why in outcome.rejected if i in outcome.unauthorised or why.startswith(UNKNOWN_DEVICE)
        ]
        if held:
            return 403, "".join(f"{why}\n" for why in held)
        if outcome.rejected:
            return 200, "".join(
                f"refused for good, kept in quarantine: {why}\n" for _, why in outcome.rejected
            )
        return 200, "OK\n"

    @staticmethod
    def failure(exc: BaseException) -> tuple[int, str]:
        """``(503, text)`` when the fix was not acknowledged (send with ``Retry-After: 1``)."""
        if isinstance(exc, Busy):
            return 503, f"busy, nothing stored: {exc}; retry\n"
        return not_committed(exc)

    def answer(
        self,
        method: str,
        path: str,
        query: str,
        mimetype: str,
        body: bytes,
        authorization: str,
        remote: str | None,
    ) -> tuple[int, str]:
        """``(status, text)`` of one request, returned once the fix is committed (blocking)."""
        prepared = self.prepare(method, path, query, mimetype, body, authorization, remote)
        if isinstance(prepared, tuple):
            return prepared
        try:
            outcome = self.submit(prepared).result(COMMIT_TIMEOUT)
        except Exception as exc:
            return self.failure(exc)
        return self.answer_of(outcome)


def phone_wsgi(endpoint: PhoneEndpoint, limit: int):
    """``endpoint`` as a bare WSGI app: phones send one fix per request, and at thousands
    of requests a second a framework's routing and request objects cost more than the fix
    itself (see :func:`data.ingest.http_api.ingest_front`)."""

    def answer(environ, start_response):
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "POST"):
            endpoint.count(405)
            return plain_response(start_response, *METHOD_NOT_ALLOWED, [("Allow", "GET, POST")])
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            endpoint.count(413)
            return plain_response(start_response, *endpoint.too_large, [])
        body = b""
        if method == "POST":
            body = environ["wsgi.input"].read(length if length else limit + 1)
            if len(body) > limit:
                endpoint.count(413)
                return plain_response(start_response, *endpoint.too_large, [])
        mimetype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        query = environ.get("QUERY_STRING", "").encode("latin-1").decode("utf-8", "replace")
        status, text = endpoint.answer(
            method,
            environ.get("PATH_INFO", "/"),
            query,
            mimetype,
            body,
            environ.get("HTTP_AUTHORIZATION", ""),
            environ.get("REMOTE_ADDR"),
        )
        endpoint.count(status)
        return plain_response(start_response, status, text, [("Retry-After", "1")] if status == 503 else [])

    return answer
