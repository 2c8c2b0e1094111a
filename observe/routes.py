"""The two routes of :mod:`observe`: ``GET /metrics`` and ``GET /api/v1/health``.

``/metrics`` answers only a scraper holding the bearer token of ``EMAP_METRICS_TOKEN``:
counts of requests, rejections and callbacks tell how the service is used, which is not
for everyone. With no token configured it answers 404, so the page is never public by
accident; a missing or wrong token gets 401. The sign-in guard lets ``/metrics`` through
(``auth.web``): a scraper cannot sign in, and the token is its check.

``/api/v1/health`` needs nothing: a load balancer or an orchestrator asks it. 200 when
every check of :class:`observe.health.Health` passes, 503 with what failed otherwise.
"""

from __future__ import annotations

import hmac

import orjson
from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from observe.health import Health
from observe.metrics import Metrics

METRICS_PATH = "/metrics"
HEALTH_PATH = "/api/v1/health"


def _text(status: int, message: str, headers: dict | None = None) -> Response:
    return Response(message + "\n", status=status, mimetype="text/plain", headers=headers)


def token_matches(authorization: str, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` as its bearer token.

    Compared in constant time, so the answer's timing does not tell how much of a guess
    was right.

    Examples
    --------
    >>> token_matches("Bearer s3cret", "s3cret"), token_matches("Bearer s3cre", "s3cret")
    (True, False)
    >>> token_matches("", "s3cret"), token_matches("Basic s3cret", "s3cret")
    (False, False)
    """
    if authorization[:7].lower() != "bearer ":
        return False
    given = authorization[7:].strip().encode("utf-8", "surrogateescape")
    return hmac.compare_digest(given, token.encode("utf-8"))


def make_observe_blueprint(metrics: Metrics, health: Health, token: str) -> Blueprint:
    """``/metrics`` (for ``token``, the setting ``metrics_token``) and the health answer.

    Examples
    --------
    >>> bp = make_observe_blueprint(Metrics(), Health(), settings.metrics_token)  # doctest: +SKIP
    >>> flask_app.register_blueprint(bp)                                          # doctest: +SKIP
    """
    bp = Blueprint("observe", __name__)

    @bp.get(METRICS_PATH)
    def scrape():
        if not token:
            return _text(404, "not found (set EMAP_METRICS_TOKEN to serve metrics)")
        if not token_matches(request.headers.get("Authorization", ""), token):
            return _text(
                401,
                "send 'Authorization: Bearer <EMAP_METRICS_TOKEN>'",
                {"WWW-Authenticate": 'Bearer realm="emap-metrics"'},
            )
        return Response(
            generate_latest(metrics.registry),
            content_type=CONTENT_TYPE_LATEST,
            headers={"Cache-Control": "no-store"},
        )

    @bp.get(HEALTH_PATH)
    def health_answer():
        healthy, answer = health.report()
        return Response(
            orjson.dumps(answer),
            status=200 if healthy else 503,
            mimetype="application/json",
            headers={"Cache-Control": "no-store"},
        )

    return bp
