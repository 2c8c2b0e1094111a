"""The panels' answers served to every viewer of the same scope (``views/answers.py``).

Only the callbacks of :data:`PANELS` take part: they draw a view from the view state and
do nothing else (no audit line, no decision, no queued work a viewer is owed). Their
request is answered from a kept answer only after the access guard has let it through
(session, CSRF, origin), and the key holds the viewer's whole scope (role, top node,
position grant, every node held), so an answer is only ever given to a viewer who would
have been given the same one: the scope checks inside the callback are functions of the
same request and the same scope. Errors and refusals are never kept.

With web workers, each worker keeps its own answers and says in a header what it did;
the serving process counts it (``emap_answers_total``) and drops the header.
"""

from __future__ import annotations

import hashlib

import flask

from auth import web
from auth.web import CALLBACK_PATH
from data.store import tracking
from pages import ids
from views.answers import Answers

#: The panels whose answers are kept: the map, its legend, the KPI cards and trend, the
#: alert list, the ranking grid, the breadcrumb, and the labels of the controls, of the
#: export and of the play button (by the first output of each callback).
PANELS = frozenset(
    {
        ids.MAP,
        ids.MAP_LEGEND,
        ids.KPIS,
        ids.ALERTS,
        ids.CHILDREN,
        ids.BREADCRUMB,
        next(iter(ids.LABELS)),
        ids.EXPORT_LABEL,
        ids.PLAY_TICK,
    }
)
#: What a worker tells the serving process it did with an answer (``cli/web_pool.py``):
#: ``kept`` (served a kept answer), ``made`` (made and kept one), ``not_kept``.
OUTCOME_HEADER = "X-EMAP-Answer"


def first_output(output: str) -> str:
    """The component id of a callback's first output, from Dash's output key.

    Examples
    --------
    >>> first_output("..map.figure...geometry.data.."), first_output("alerts.children")
    ('map', 'alerts')
    """
    return output.strip(".").split("...")[0].rsplit(".", 1)[0]


def scope_key(viewer) -> tuple:
    """Everything of a viewer that decides what a panel may show them."""
    return (viewer.role, viewer.root, viewer.can_see_couriers, viewer.nodes)


def install(app, model, max_bytes: int, report_header: bool = False) -> Answers | None:
    """Serve the :data:`PANELS`' answers from ``Answers`` of ``max_bytes`` (0: off).
    Call after the access guard and the panels' callbacks are in place. With
    ``report_header`` (a web worker) each answer says what was done in :data:`OUTCOME_HEADER`;
    otherwise it is counted in ``app.metrics``."""
    if max_bytes <= 0:
        return None
    answers = Answers(max_bytes, version=model.version_of)
    outputs = frozenset(o for o in app.callback_map if first_output(o) in PANELS)
    metrics = app.metrics

    def told(response: flask.Response, outcome: str) -> flask.Response:
        if report_header:
            response.headers[OUTCOME_HEADER] = outcome
        else:
            metrics.answer(outcome)
        return response

    @app.server.before_request
    def kept_answer():
        req = flask.request
        if req.method != "POST" or not req.path.endswith(CALLBACK_PATH):
            return None
        body = req.get_json(silent=True)
        output = body.get("output") if isinstance(body, dict) else None
        if not isinstance(output, str) or output not in outputs:
            return None
        viewer = web.request_viewer(model)  # the guard's, from the session (fails closed)
        key = (scope_key(viewer), hashlib.sha256(req.get_data(cache=True)).digest())
        answer = answers.take(key)
        if answer is not None:
            return told(flask.Response(answer.body, mimetype=answer.mimetype), "kept")
        flask.g.emap_answer_key = key
        tracking.begin()
        return None

    @app.server.after_request
    def keep_answer(response: flask.Response) -> flask.Response:
        key = flask.g.pop("emap_answer_key", None)
        if key is None:
            return response
        reads = tracking.end()
        if response.status_code == 200 and not response.direct_passthrough:
            kept = answers.keep(key, response.get_data(), response.mimetype or "application/json", reads)
        else:
            answers.release(key)
            kept = False
        return told(response, "made" if kept else "not_kept")

    @app.server.teardown_request
    def forget_unfinished(_exc):
        key = flask.g.pop("emap_answer_key", None)  # the request failed before keep_answer
        if key is not None:
            tracking.end()
            answers.release(key)

    app.answers = answers
    return answers
