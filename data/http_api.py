"""HTTP ingest: batch API for pings and parcel events, the OsmAnd phone protocol, OpenAPI.

Routes (a Flask blueprint; see ``docs/ingest.md``):

* ``POST /api/v1/pings``, ``POST /api/v1/events``: a JSON array, one JSON object, or
  NDJSON; ``Authorization: Bearer <token>``. Answer 200 with the accepted count and the
  index and reason of each rejected record, sent only once the accepted records are
  committed. 400 for malformed JSON (with line and column), 401 for a missing or unknown
  token, 413 for a body over ``ingest_max_body_bytes``, 503 when the store cannot take
  the records now (nothing was acknowledged: retry).
* ``GET|POST /osmand``: positions exactly as the OsmAnd app and Traccar Client send them
  (query/form or JSON). 200 once stored, or once refused for good and quarantined (the
  reason in the text); 400 malformed; 401/403 token or unknown device (the phone keeps
  the fix); 503 transient. See "The phone's answers" in the README.
* ``GET /api/v1/openapi.json``: the machine-readable description of all of this.
* ``GET /api/v1/health``: liveness and the ingest counters.

Run standalone (tests, benchmarks, a dedicated ingest port)::

    python -m data.http_api --db var/emap.duckdb --port 8060 --osmand-port 5055

The phone listener (:mod:`data.phone_listener`) serves the OsmAnd protocol on its own
port with the same answers as ``/osmand``, without a thread per waiting phone.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import parse_qsl

import orjson
from flask import Blueprint, Flask, Response, request

from auth import users
from config import Settings
from data import osmand, validate
from data.group_commit import Busy, GroupCommitter, Outcome, Scope
from data.quarantine import Quarantine
from data.store import Store
from data.tokens import Principal, TokenCache

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
#: Seconds a request waits for its commit before answering 503 (nothing acknowledged).
COMMIT_TIMEOUT = 60.0
_NDJSON_TYPES = (
    "application/x-ndjson",
    "application/ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "application/json-seq",
)


class BadBody(ValueError):
    """The body cannot be read as JSON or NDJSON; the message says where."""


def _json(payload, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(payload), status=status, mimetype="application/json", headers=headers)


def _error(status: int, message: str, headers: dict | None = None) -> Response:
    return _json({"error": message}, status, headers)


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    405: "Method Not Allowed",
    413: "Content Too Large",
    503: "Service Unavailable",
}


def _bearer_of(header: str) -> str | None:
    return header[7:].strip() if header[:7].lower() == "bearer " else None


def _plain(start_response, status: int, text: str, headers: list) -> list[bytes]:
    data = text.encode()
    start_response(
        f"{status} {_REASONS.get(status, '')}",
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(data))),
            ("X-Content-Type-Options", "nosniff"),
            *headers,
        ],
    )
    return [data]


def ingest_front(app, blueprint: Blueprint):
    """A WSGI app answering ``/osmand`` itself and handing every other path to ``app``.

    Serve this instead of the Flask (or Dash) server: single phone fixes skip Flask's
    routing, request and response objects and its before/after hooks, which at
    thousands of requests a second cost more than storing the fix. The answer is the
    same as the blueprint's ``/osmand`` route gives, and still only once the fix is
    committed.

    Examples
    --------
    >>> bp = make_ingest_blueprint(store, settings)              # doctest: +SKIP
    >>> flask_app.register_blueprint(bp)                          # doctest: +SKIP
    >>> waitress.serve(ingest_front(flask_app, bp), port=8060)    # doctest: +SKIP
    """
    osmand_wsgi = blueprint.osmand_wsgi

    def front(environ, start_response):
        if environ.get("PATH_INFO") in ("/osmand", "/osmand/"):
            return osmand_wsgi(environ, start_response)
        return app(environ, start_response)

    return front


def parse_records(body: bytes, mimetype: str = "application/json") -> list:
    """Records of a batch body: a JSON array, one JSON object, or NDJSON (one per line).

    Raises
    ------
    BadBody
        With the line and column of the first error (the NDJSON line number for NDJSON).

    Examples
    --------
    >>> parse_records(b'{"a": 1}\\n{"a": 2}\\n', "application/x-ndjson")
    [{'a': 1}, {'a': 2}]
    """
    if not body.strip():
        raise BadBody("empty body: send a JSON array of records or NDJSON (one record per line)")
    ndjson = mimetype in _NDJSON_TYPES
    if not ndjson:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            lines = [ln for ln in body.strip().split(b"\n") if ln.strip()]
            if len(lines) > 1 and lines[0].lstrip().startswith(b"{") and _line_ok(lines[0]):
                ndjson = True  # NDJSON sent as application/json
            else:
                raise BadBody(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        else:
            return data if isinstance(data, list) else [data]
    records = []
    for n, line in enumerate(body.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise BadBody(f"malformed JSON on NDJSON line {n}, column {exc.colno}: {exc.msg}") from None
    return records


def _line_ok(line: bytes) -> bool:
    try:
        orjson.loads(line)
        return True
    except orjson.JSONDecodeError:
        return False


#: Start of the store's reason for the fix of a device it does not know.
UNKNOWN_DEVICE = "unknown device"


class Fixes:
    """The fixes of one OsmAnd request, ready to commit, with what its token may write."""

    __slots__ = ("records", "scope")

    def __init__(self, records: list[dict], scope: Scope | None):
        self.records, self.scope = records, scope


#: The answer to a method other than GET or POST on the OsmAnd endpoint (with ``Allow``).
METHOD_NOT_ALLOWED = (405, "method not allowed: use GET or POST\n")


class OsmAndEndpoint:
    """The answer to one OsmAnd request, the same whichever way a phone reaches the server.

    The Flask route, the WSGI front (:func:`ingest_front`) and the phone listener
    (:mod:`data.phone_listener`) all answer through one object, so a fix gets the same
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

    Examples
    --------
    >>> ep = make_ingest_blueprint(store, settings).osmand           # doctest: +SKIP
    >>> ep.answer("GET", "/osmand", "id=dev-1&lat=22.54&lon=114.05", "", b"", "", None)  # doctest: +SKIP
    (200, 'OK\\n')
    """

    #: ``(405, text)`` for a method other than GET and POST (sent with ``Allow: GET, POST``).
    method_not_allowed = METHOD_NOT_ALLOWED

    def __init__(self, store: Store, settings: Settings, committer: GroupCommitter, tokens: TokenCache):
        self.store = store
        self.settings = settings
        self.committer = committer
        self.tokens = tokens
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
        token = args.get("token") or _bearer_of(authorization)
        principal = None
        if token:
            principal = self.tokens.lookup(token)
            if principal is None:
                return 401, "unknown or revoked token\n"
        elif self.settings.osmand_require_token:
            return 401, "missing token: add ?token=... to the server URL\n"
        try:
            if method == "POST" and (mimetype.endswith("json") or body.lstrip()[:1] in (b"{", b"[")):
                try:
                    obj = orjson.loads(body)
                except orjson.JSONDecodeError as exc:
                    raise osmand.OsmAndError(
                        f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
                    ) from None
                records = [
                    r for o in (obj if isinstance(obj, list) else [obj]) for r in osmand.decode_json(o)
                ]
            else:
                params = args
                if body and method == "POST":
                    params = {
                        **args,
                        **dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)),
                    }
                params.pop("token", None)
                records = [osmand.decode_query(params, self.settings.osmand_speed_unit)]
        except osmand.OsmAndError as exc:
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
        return self.committer.submit("pings", fixes.records, "osmand", scope=fixes.scope)

    @staticmethod
    def answer_of(outcome: Outcome) -> tuple[int, str]:
        """``(status, text)`` once committed (see "the phone's answers" in the README).

        200 when every fix is stored or refused for good (quarantined with its reason,
        given in the text); 403 when a fix is one the token may not write, or its device
        is not registered: the phone keeps it and sends it again, and it is stored once
        an administrator has put that right.
        """
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
        if isinstance(exc, FutureTimeout):
            return 503, "not acknowledged in time; retry (re-sent records are not stored twice)\n"
        return 503, f"not stored: {exc}; retry\n"

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


def make_ingest_blueprint(
    store: Store, settings: Settings, committer: GroupCommitter | None = None
) -> Blueprint:
    """The ingest API as a Flask blueprint, with its group-commit writer started.

    Parameters
    ----------
    store : Store
        The store of this process (DuckDB is single-process: the API runs where it is open).
    settings : Settings
        ``local_tz``, ``ingest_max_body_bytes``, ``ingest_linger_ms``,
        ``auto_register_devices``, ``osmand_speed_unit``, ``osmand_require_token``.
    committer : GroupCommitter, optional
        Share a writer between blueprints; by default one is made and started.

    Returns
    -------
    flask.Blueprint
        With a ``committer`` attribute: call ``bp.committer.close()`` at shutdown so that
        queued records are committed before the store closes; and an ``osmand``
        attribute, the :class:`OsmAndEndpoint` a phone listener answers with.

    Examples
    --------
    >>> app = Flask(__name__)                                          # doctest: +SKIP
    >>> app.register_blueprint(make_ingest_blueprint(store, settings))  # doctest: +SKIP
    """
    bp = Blueprint("ingest", __name__)
    gc = (
        committer
        or GroupCommitter(
            store,
            settings.local_tz,
            linger=settings.ingest_linger_ms / 1000.0,
            auto_register=settings.auto_register_devices,
            limits=validate.Limits.from_settings(settings),
            quarantine=Quarantine.from_settings(store, settings),
        ).start()
    )
    bp.committer = gc
    tokens = TokenCache(store)
    users.ensure_tables(store)

    endpoint_ = endpoint = OsmAndEndpoint(store, settings, gc, tokens)
    limit = settings.ingest_max_body_bytes

    def read_body() -> bytes | Response:
        # No "Connection: close": a WSGI application may not send hop-by-hop headers
        # (waitress answers 500 instead), and the servers close or drain by themselves.
        too_big = _error(413, f"body larger than {limit} bytes: send smaller batches")
        if request.content_length is not None and request.content_length > limit:
            return too_big
        data = request.stream.read(limit + 1)
        return too_big if len(data) > limit else data

    def bearer() -> str | None:
        return _bearer_of(request.headers.get("Authorization", ""))

    def authenticate() -> Principal | Response:
        token = bearer()
        if token is None:
            return _error(
                401,
                "missing token: send 'Authorization: Bearer <token>'",
                {"WWW-Authenticate": 'Bearer realm="emap"'},
            )
        principal = tokens.lookup(token)
        if principal is None:
            return _error(
                401, "unknown or revoked token", {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )
        return principal

    def commit(kind, records, source, scope):
        try:
            outcome = gc.submit(kind, records, source, scope=scope).result(COMMIT_TIMEOUT)
        except Busy as exc:
            return _error(503, f"busy, nothing stored: {exc}; retry", {"Retry-After": "1"})
        except FutureTimeout:
            return _error(
                503,
                "not acknowledged in time; retry (re-sent records are not stored twice)",
                {"Retry-After": "1"},
            )
        except Exception as exc:
            return _error(503, f"not stored: {exc}; retry", {"Retry-After": "1"})
        return outcome

    def batch(kind: str, endpoint: str) -> Response:
        principal = authenticate()
        if isinstance(principal, Response):
            return principal
        body = read_body()
        if isinstance(body, Response):
            return body
        try:
            items = parse_records(body, request.mimetype)
        except BadBody as exc:
            return _error(400, str(exc))
        scope = None
        if (kind == "pings" and principal.kind == "device") or principal.node_id is not None:
            method, path, remote = request.method, request.path, request.remote_addr

            def audit(n: int) -> None:
                endpoint_.refused(
                    principal, f"{n} record(s) outside what the token may write", method, path, remote
                )

            scope = Scope(
                device_id=principal.device_id if kind == "pings" and principal.kind == "device" else None,
                node_id=principal.node_id,
                refusal=(
                    f"the token of system '{principal.system_name}' cannot report outside "
                    f"node '{principal.node_id}'"
                ),
                keep=True,
                on_refused=audit,
            )
        outcome = commit(kind, items, f"POST {endpoint} ({principal.name})", scope)
        if isinstance(outcome, Response):
            return outcome
        return _json(
            {
                "received": outcome.received,
                "accepted": outcome.accepted,
                "rejected": [{"index": i, "reason": why} for i, why in outcome.rejected],
            }
        )

    @bp.post("/api/v1/pings")
    def post_pings():
        return batch("pings", "/api/v1/pings")

    @bp.post("/api/v1/events")
    def post_events():
        return batch("parcel_events", "/api/v1/events")

    @bp.route("/osmand", methods=["GET", "POST"], strict_slashes=False)
    def osmand_position():
        body = read_body()
        if isinstance(body, Response):
            return body
        status, text = endpoint.answer(
            request.method,
            request.path,
            request.query_string.decode("latin-1"),
            request.mimetype,
            body,
            request.headers.get("Authorization", ""),
            request.remote_addr,
        )
        headers = {"Retry-After": "1"} if status == 503 else None
        return Response(text, status, mimetype="text/plain", headers=headers)

    def osmand_wsgi(environ, start_response):
        """The OsmAnd endpoint as a bare WSGI app: phones send one fix per request, and
        at thousands of requests a second the framework's routing and request objects
        cost more than the fix itself (see :func:`ingest_front`)."""
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "POST"):
            return _plain(start_response, *METHOD_NOT_ALLOWED, [("Allow", "GET, POST")])
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > limit:
            return _plain(start_response, *endpoint.too_large, [])
        body = b""
        if method == "POST":
            body = environ["wsgi.input"].read(length if length else limit + 1)
            if len(body) > limit:
                return _plain(start_response, *endpoint.too_large, [])
        mimetype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        query = environ.get("QUERY_STRING", "").encode("latin-1").decode("utf-8", "replace")
        status, text = endpoint.answer(
            method,
            environ.get("PATH_INFO", "/osmand"),
            query,
            mimetype,
            body,
            environ.get("HTTP_AUTHORIZATION", ""),
            environ.get("REMOTE_ADDR"),
        )
        return _plain(start_response, status, text, [("Retry-After", "1")] if status == 503 else [])

    bp.osmand_wsgi = osmand_wsgi
    bp.osmand = endpoint

    @bp.get("/api/v1/openapi.json")
    def openapi_json():
        return _json(openapi_spec(request.host_url.rstrip("/")))

    @bp.get("/api/v1/health")
    def health():
        return _json({"status": "ok", **{k: int(v) for k, v in gc.stats.items()}})

    return bp


# -- OpenAPI ------------------------------------------------------------------------------
def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: dict, mime: str = "application/json") -> dict:
    return {"content": {mime: {"schema": schema}}}


def openapi_spec(server_url: str = "") -> dict:
    """The OpenAPI 3.1 description of the ingest API (served at ``/api/v1/openapi.json``)."""
    error = {"description": "", **_content(_ref("Error"))}
    text = {"type": "string"}

    def err(description: str) -> dict:
        return {**error, "description": description}

    batch_responses = {
        "200": {
            "description": "Processed: accepted records are committed; rejected ones are "
            "listed and kept in quarantine.",
            **_content(_ref("IngestResult")),
        },
        "400": err("Malformed JSON; the message gives the line and column (or NDJSON line)."),
        "401": err("Missing, unknown or revoked token."),
        "413": err("Body larger than the configured limit."),
        "503": err(
            "Nothing was stored (busy or failing store); retry later, re-sent records are not stored twice."
        ),
    }

    def batch_op(summary: str, item: str) -> dict:
        return {
            "summary": summary,
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"oneOf": [{"type": "array", "items": _ref(item)}, _ref(item)]}
                    },
                    "application/x-ndjson": {
                        "schema": {"type": "string", "description": f"One {item} JSON object per line."}
                    },
                },
            },
            "responses": batch_responses,
        }

    osmand_params = [
        {"name": n, "in": "query", "required": False, "schema": s, "description": d}
        for n, s, d in [
            ("id", text, "Device identifier (or `deviceid`)."),
            ("deviceid", text, "Device identifier (or `id`)."),
            ("lat", {"type": "number"}, "Latitude, WGS-84 degrees."),
            ("lon", {"type": "number"}, "Longitude, WGS-84 degrees."),
            ("location", text, "`lat,lon` instead of `lat` and `lon`."),
            (
                "timestamp",
                text,
                "Unix seconds or milliseconds, ISO 8601, or `YYYY-MM-DD HH:MM:SS` "
                "(local time). Missing: the time received.",
            ),
            ("speed", {"type": "number"}, "Speed, in knots unless configured otherwise."),
            ("bearing", {"type": "number"}, "Heading in degrees (or `heading`)."),
            ("heading", {"type": "number"}, "Heading in degrees (or `bearing`)."),
            ("altitude", {"type": "number"}, "Metres."),
            ("accuracy", {"type": "number"}, "Metres."),
            ("hdop", {"type": "number"}, "Horizontal dilution of precision."),
            ("batt", {"type": "number"}, "Battery level, percent."),
            ("token", text, "Device or system token, when the server requires one."),
        ]
    ]
    osmand_responses = {
        "200": {
            "description": "Stored (`OK`), or refused for good and kept in quarantine (the reason in the "
            "body): the phone goes on to its next fix.",
            **_content(text, "text/plain"),
        },
        "400": {
            "description": "Malformed: no device id (or two different ones), unreadable body.",
            **_content(text, "text/plain"),
        },
        "401": {"description": "Unknown token, or a token is required.", **_content(text, "text/plain")},
        "403": {
            "description": "A token used for another device or outside its node, or a device that is not "
            "registered: the phone keeps the fix until this is put right.",
            **_content(text, "text/plain"),
        },
        "413": err("Body larger than the configured limit."),
        "503": {"description": "Not stored now; the phone retries.", **_content(text, "text/plain")},
    }
    osmand_json = {
        "type": "object",
        "required": ["device_id", "location"],
        "properties": {
            "device_id": text,
            "location": {
                "oneOf": [_ref("OsmAndLocation"), {"type": "array", "items": _ref("OsmAndLocation")}]
            },
        },
    }
    num = {"type": ["number", "null"]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "EMAP live ingest API",
            "version": API_VERSION,
            "description": "Courier GPS positions and parcel scans into the EMAP store. "
            "A 2xx answer is sent only after the records are committed.",
        },
        "servers": [{"url": server_url}] if server_url else [],
        "paths": {
            "/api/v1/pings": {"post": batch_op("Store a batch of GPS pings", "Ping")},
            "/api/v1/events": {"post": batch_op("Store a batch of parcel events (scans)", "ParcelEvent")},
            "/osmand": {
                "description": "Also served, with the same answers, by the phone listener on its own "
                "port (EMAP_OSMAND_PORT, 5055) at any path, e.g. http://host:5055/?id=...",
                "get": {
                    "summary": "One position, OsmAnd query form (OsmAnd app, Traccar Client)",
                    "parameters": osmand_params,
                    "responses": osmand_responses,
                },
                "post": {
                    "summary": "One position, OsmAnd form or JSON body (Traccar Client 9+)",
                    "parameters": osmand_params,
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": osmand_json},
                            "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
                        }
                    },
                    "responses": osmand_responses,
                },
            },
            "/api/v1/openapi.json": {
                "get": {
                    "summary": "This description",
                    "responses": {
                        "200": {"description": "OpenAPI 3.1 document", **_content({"type": "object"})}
                    },
                }
            },
            "/api/v1/health": {
                "get": {
                    "summary": "Liveness and ingest counters",
                    "responses": {
                        "200": {
                            "description": "Counters since the server started",
                            **_content(_ref("Health")),
                        }
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A device or system token."}
            },
            "schemas": {
                "Ping": {
                    "type": "object",
                    "required": ["device_id", "ts", "lat", "lng"],
                    "description": "Aliases accepted: id/deviceid, timestamp, lon, bearing.",
                    "properties": {
                        "device_id": text,
                        "ts": {
                            "type": ["string", "number"],
                            "description": "Unix s/ms, ISO 8601, or YYYY-MM-DD HH:MM:SS (local)",
                        },
                        "lat": {"type": "number"},
                        "lng": {"type": "number"},
                        "speed": {**num, "description": "m/s"},
                        "heading": {**num, "description": "degrees from north"},
                        "accuracy": {**num, "description": "metres"},
                    },
                },
                "ParcelEvent": {
                    "type": "object",
                    "required": ["parcel_id", "kind", "ts", "lat", "lng"],
                    "properties": {
                        "event_id": {
                            **text,
                            "description": "record id; derived from parcel, kind and time when missing",
                        },
                        "parcel_id": text,
                        "kind": {
                            "enum": ["pickup_request", "pickup", "arrival", "out_for_delivery", "delivered"]
                        },
                        "ts": {"type": ["string", "number"]},
                        "lat": {"type": "number"},
                        "lng": {"type": "number"},
                        "outlet_id": text,
                        "courier_id": text,
                        "promised_at": {"type": ["string", "number", "null"]},
                        "dest_branch_id": text,
                        "expected_at": {"type": ["string", "number", "null"]},
                    },
                },
                "OsmAndLocation": {
                    "type": "object",
                    "properties": {
                        "timestamp": text,
                        "coords": {
                            "type": "object",
                            "properties": {
                                "latitude": {"type": "number"},
                                "longitude": {"type": "number"},
                                "speed": {**num, "description": "m/s"},
                                "heading": num,
                                "accuracy": num,
                                "altitude": num,
                            },
                        },
                        "battery": {
                            "type": "object",
                            "properties": {"level": num, "is_charging": {"type": "boolean"}},
                        },
                    },
                },
                "IngestResult": {
                    "type": "object",
                    "required": ["received", "accepted", "rejected"],
                    "additionalProperties": False,
                    "properties": {
                        "received": {"type": "integer", "minimum": 0},
                        "accepted": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "records now stored (including re-sent ones stored before)",
                        },
                        "rejected": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["index", "reason"],
                                "additionalProperties": False,
                                "properties": {
                                    "index": {
                                        "type": "integer",
                                        "minimum": 0,
                                        "description": "0-based position in the batch",
                                    },
                                    "reason": text,
                                },
                            },
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "additionalProperties": False,
                    "properties": {"error": text},
                },
                "Health": {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {"const": "ok"},
                        **{
                            k: {"type": "integer"}
                            for k in (
                                "groups",
                                "requests",
                                "received",
                                "accepted",
                                "stored",
                                "duplicates",
                                "rejected",
                                "errors",
                                "commit_ms",
                            )
                        },
                    },
                },
            },
        },
    }


# -- standalone server --------------------------------------------------------------------
def make_app(store: Store, settings: Settings) -> Flask:
    """A plain Flask app serving only the ingest API."""
    app = Flask("emap-ingest")
    app.register_blueprint(make_ingest_blueprint(store, settings))
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data.http_api", description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="DuckDB file (default: the configured one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8060)
    parser.add_argument(
        "--threads",
        type=int,
        default=512,
        help="request threads (waitress); each unanswered phone request holds one",
    )
    parser.add_argument(
        "--osmand-port",
        type=int,
        default=None,
        help="port of the phone listener (default EMAP_OSMAND_PORT, 5055; 0: off)",
    )
    parser.add_argument("--server", choices=("waitress", "werkzeug"), default="waitress")
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=0.005,
        help="seconds between GIL hand-overs (short: the writer thread, which "
        "returns from DuckDB/polars often, is not starved by request threads)",
    )
    args = parser.parse_args(argv)
    sys.setswitchinterval(args.switch_interval)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    store = Store(args.db or settings.db_path)
    app = make_app(store, settings)
    committer = app.blueprints["ingest"].committer
    osmand_port = settings.osmand_port if args.osmand_port is None else args.osmand_port
    phones = None

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        if osmand_port:
            from data.phone_listener import PhoneListener

            try:
                phones = PhoneListener(app.blueprints["ingest"].osmand, args.host, osmand_port).start()
            except OSError as exc:
                print(
                    f"cannot listen for phones on {args.host}:{osmand_port}: {exc} (--osmand-port; 0: off)",
                    file=sys.stderr,
                )
                return 2
            print(f"EMAP phone listener (OsmAnd) on http://{args.host}:{phones.port}", flush=True)
        print(f"EMAP ingest listening on http://{args.host}:{args.port}", flush=True)
        if args.server == "waitress":
            from waitress import serve

            # poll, not select: the phone listener's connections share this process's file
            # descriptors, and select() fails on any numbered past 1023
            serve(
                ingest_front(app, app.blueprints["ingest"]),
                host=args.host,
                port=args.port,
                threads=args.threads,
                connection_limit=4000,
                asyncore_use_poll=True,
                channel_timeout=60,
                backlog=2048,
                ident="emap",
            )
        else:
            from werkzeug.serving import WSGIRequestHandler, run_simple

            WSGIRequestHandler.protocol_version = "HTTP/1.1"
            run_simple(args.host, args.port, ingest_front(app, app.blueprints["ingest"]), threaded=True)
    except KeyboardInterrupt:
        pass
    finally:
        if phones is not None:
            phones.close()
        committer.close()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
