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
* ``POST /api/v1/import?kind=&name=``: a CSV or Parquet file as the body, streamed to a
  spool file and imported (:mod:`data.ingest.uploads`); answers the counts and the first
  rejected lines. 400 for an unreadable file or an unknown kind, 401 without a token, 403
  for a device token, 409 while another import runs, 413 over ``import_max_bytes``.
* ``GET /api/v1/openapi.json``: the machine-readable description of all of this.
* ``GET /api/v1/health`` and ``GET /metrics`` (:mod:`observe.routes`, registered beside this
  blueprint): the health answer checks that this blueprint's writer commits
  (:meth:`GroupCommitter.probe`), and the metrics count this blueprint's requests and records.

Run standalone (tests, benchmarks, a dedicated ingest port)::

    python -m cli.ingest --db var/emap.duckdb --port 8060 --osmand-port 5055

The phone listener (:mod:`data.ingest.phone_listener`) serves the OsmAnd protocol on its own
port with the same answers as ``/osmand``, without a thread per waiting phone.
"""

from __future__ import annotations

import logging
from concurrent.futures import TimeoutError as FutureTimeout

import orjson
from flask import Blueprint, Flask, Response, request

from auth import users
from config import Settings
from data.ingest import reasons, validate
from data.ingest.group_commit import COMMIT_TIMEOUT, Busy, GroupCommitter, Scope
from data.ingest.importer import ImportFileError
from data.ingest.openapi import openapi_spec
from data.ingest.phones import PhoneEndpoint, bearer_of, phone_wsgi
from data.ingest.protocols import PROTOCOLS, osmand
from data.ingest.quarantine import Quarantine
from data.ingest.tokens import Principal, TokenCache
from data.ingest.uploads import ImportBusy, TooLarge, Uploads
from data.store import watch
from data.store.database import Store
from observe.health import Health
from observe.metrics import Metrics
from observe.routes import make_observe_blueprint

log = logging.getLogger(__name__)

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
    phones = {**blueprint.phone_wsgi, **{p + "/": w for p, w in blueprint.phone_wsgi.items()}}

    def front(environ, start_response):
        phone = phones.get(environ.get("PATH_INFO"))
        if phone is not None:
            return phone(environ, start_response)
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
    >>> parse_records(b'{"a": 1}\\n{"a": 2}')  # NDJSON sent as application/json
    [{'a': 1}, {'a': 2}]
    >>> parse_records(b'[{"a": 1},')
    Traceback (most recent call last):
    ...
    data.ingest.http_api.BadBody: malformed JSON at line 1, column 11: unexpected end of data
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


def make_ingest_blueprint(
    store: Store,
    settings: Settings,
    committer: GroupCommitter | None = None,
    metrics: Metrics | None = None,
    health: Health | None = None,
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
    metrics : observe.metrics.Metrics, optional
        Where requests, records and the writer's commits are counted (default: the given
        committer's, else new ones); the writer's queue depth is watched there.
    health : observe.health.Health, optional
        Where the check "writer" (and the writer's counters) are registered (default: new).

    Returns
    -------
    flask.Blueprint
        With a ``committer`` attribute: call ``bp.committer.close()`` at shutdown so that
        queued records are committed before the store closes; and an ``osmand``
        attribute, the :class:`OsmAndEndpoint` a phone listener answers with; and an
        ``uploads`` attribute, the :class:`data.ingest.uploads.Uploads` that imports files
        (one at a time: the dashboard's import page shares it); and ``metrics`` and
        ``health``, to serve with :func:`observe.routes.make_observe_blueprint`.

    Examples
    --------
    >>> app = Flask(__name__)                                          # doctest: +SKIP
    >>> app.register_blueprint(make_ingest_blueprint(store, settings))  # doctest: +SKIP
    """
    bp = Blueprint("ingest", __name__)
    if metrics is None:
        metrics = committer.metrics if committer is not None else Metrics()
    gc = committer or _start_committer(store, settings, metrics)
    bp.committer = gc
    bp.metrics = metrics
    bp.health = health = health or Health()
    metrics.watch_writer(lambda: gc.pending_rows, gc.alive)
    health.check("writer", gc.probe)
    # the counters this answer always had, kept at its top level for existing monitors
    health.counters(lambda: {k: int(v) for k, v in gc.stats.items()})
    tokens = TokenCache(store)
    users.ensure_tables(store)

    endpoints = {name: PhoneEndpoint(store, settings, gc, tokens, p) for name, p in PROTOCOLS.items()}
    phone = endpoints[osmand.NAME]
    limit = settings.ingest_max_body_bytes

    @bp.post("/api/v1/pings")
    def post_pings():
        return _counted(metrics, "pings", _batch("pings", "/api/v1/pings", gc, tokens, phone, limit))

    @bp.post("/api/v1/events")
    def post_events():
        answer = _batch("parcel_events", "/api/v1/events", gc, tokens, phone, limit)
        return _counted(metrics, "events", answer)

    uploads = Uploads(store, settings, quarantine=gc.quarantine)
    bp.uploads = uploads

    @bp.post("/api/v1/import")
    def post_import():
        return _counted(metrics, "import", _import_file(uploads, tokens, metrics))

    @bp.route("/osmand", methods=["GET", "POST"], strict_slashes=False)
    def osmand_position():
        answer = _phone_position(phone, limit)
        phone.count(answer.status_code)
        return answer

    #: The bare WSGI app of each phone path (served by :func:`ingest_front`).
    bp.phone_wsgi = {path: phone_wsgi(ep, limit) for ep in endpoints.values() for path in ep.protocol.PATHS}
    bp.osmand = phone

    @bp.get("/api/v1/openapi.json")
    def openapi_json():
        return _json(openapi_spec(request.host_url.rstrip("/")))

    return bp


def _counted(metrics: Metrics, endpoint: str, answer: Response) -> Response:
    metrics.request(endpoint, answer.status_code)
    return answer


def _start_committer(store: Store, settings: Settings, metrics: Metrics) -> GroupCommitter:
    """The group-commit writer of the settings, started."""
    return GroupCommitter(
        store,
        settings.local_tz,
        linger=settings.ingest_linger_ms / 1000.0,
        auto_register=settings.auto_register_devices,
        limits=validate.Limits.from_settings(settings),
        quarantine=Quarantine.from_settings(store, settings),
        metrics=metrics,
    ).start()


def _read_body(limit: int) -> bytes | Response:
    """The request's body, or 413 if it is larger than ``limit`` bytes."""
    # No "Connection: close": a WSGI application may not send hop-by-hop headers
    # (waitress answers 500 instead), and the servers close or drain by themselves.
    too_big = _error(413, f"body larger than {limit} bytes: send smaller batches")
    if request.content_length is not None and request.content_length > limit:
        return too_big
    data = request.stream.read(limit + 1)
    return too_big if len(data) > limit else data


def _authenticate(tokens: TokenCache) -> Principal | Response:
    """Who the request's bearer token stands for, or 401."""
    token = bearer_of(request.headers.get("Authorization", ""))
    if token is None:
        return _error(
            401,
            "missing token: send 'Authorization: Bearer <token>'",
            {"WWW-Authenticate": 'Bearer realm="emap"'},
        )
    principal = tokens.lookup(token)
    if principal is None:
        return _error(401, "unknown or revoked token", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return principal


def _commit(gc: GroupCommitter, kind: str, records: list, source: str, scope: Scope | None):
    """The outcome once the records are committed, or 503 (nothing acknowledged: retry)."""
    try:
        return gc.submit(kind, records, source, scope=scope).result(COMMIT_TIMEOUT)
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


def _scope_of(kind: str, principal: Principal, phone: PhoneEndpoint) -> Scope | None:
    """What a device's or a node's token may write (None: anything); records outside it
    are refused, kept in quarantine and audited through ``phone``."""
    device = kind == "pings" and principal.kind == "device"
    if not device and principal.node_id is None:
        return None
    method, path, remote = request.method, request.path, request.remote_addr

    def audit(n: int) -> None:
        phone.refused(principal, f"{n} record(s) outside what the token may write", method, path, remote)

    return Scope(
        device_id=principal.device_id if device else None,
        node_id=principal.node_id,
        refusal=(
            f"the token of system '{principal.system_name}' cannot report outside node '{principal.node_id}'"
        ),
        keep=True,
        on_refused=audit,
    )


def _batch(
    kind: str, route: str, gc: GroupCommitter, tokens: TokenCache, phone: PhoneEndpoint, limit: int
) -> Response:
    """A batch request to ``route``: authenticate, read, parse, commit, answer."""
    principal = _authenticate(tokens)
    if isinstance(principal, Response):
        return principal
    body = _read_body(limit)
    if isinstance(body, Response):
        return body
    try:
        items = parse_records(body, request.mimetype)
    except BadBody as exc:
        return _error(400, str(exc))
    scope = _scope_of(kind, principal, phone)
    outcome = _commit(gc, kind, items, f"POST {route} ({principal.name})", scope)
    if isinstance(outcome, Response):
        return outcome
    endpoint = "pings" if kind == "pings" else "events"
    gc.metrics.records(endpoint, kind, outcome.accepted, reasons.count(outcome.rejected))
    return _json(
        {
            "received": outcome.received,
            "accepted": outcome.accepted,
            "rejected": [{"index": i, "reason": why} for i, why in outcome.rejected],
        }
    )


def _import_file(uploads: Uploads, tokens: TokenCache, metrics: Metrics) -> Response:
    """A file to import as the body: authenticate, check, spool and import, answer."""
    principal = _authenticate(tokens)
    if isinstance(principal, Response):
        return principal
    if principal.kind != "system":
        return _error(403, "a device token cannot import files: use a system token")
    kind = request.args.get("kind") or None
    name = request.args.get("name") or "upload"
    limit = uploads.max_bytes
    if request.content_length is not None and request.content_length > limit:
        return _error(413, f"file larger than {limit} bytes (EMAP_IMPORT_MAX_BYTES); nothing was stored")
    node = principal.node_id
    try:
        result = uploads.import_upload(
            request.stream,
            name,
            kind,
            scope_node=node,
            source=f"POST /api/v1/import {name} ({principal.name})",
            refusal=f"the token of system '{principal.system_name}' cannot write outside node '{node}'",
            who=principal.name,
            channel="api",
        )
    except ImportBusy as exc:
        return _error(409, str(exc), {"Retry-After": "10"})
    except TooLarge as exc:
        return _error(413, f"{exc}; nothing was stored")
    except ImportFileError as exc:
        return _error(400, str(exc).replace(str(uploads.spool_dir), "upload"))
    # The reasons of an import's rejected rows are in the quarantine table, not in its
    # result (which lists only the first lines): they are counted as "other".
    metrics.records("import", result.kind, result.accepted, {"other": result.rejected})
    return _json(result.as_json())


def _phone_position(phone: PhoneEndpoint, limit: int) -> Response:
    """One position as a phone sends it to ``/osmand``, answered as the phone listener does."""
    body = _read_body(limit)
    if isinstance(body, Response):
        return body
    status, text = phone.answer(
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


# -- standalone server --------------------------------------------------------------------
def make_app(store: Store, settings: Settings) -> Flask:
    """A plain Flask app serving only the ingest API, its health answer and its metrics."""
    app = Flask("emap-ingest")
    bp = make_ingest_blueprint(store, settings)
    app.register_blueprint(bp)
    watch.watch_store(store, bp.metrics, bp.health)
    app.register_blueprint(make_observe_blueprint(bp.metrics, bp.health, settings.metrics_token))
    return app
