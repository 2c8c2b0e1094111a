"""The EMAP dashboard application factory.

``build_app(store, settings).run(host=settings.host, port=settings.port)`` serves it;
nothing is read or opened at import time.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterable

import dash
import flask
from dash.exceptions import DependencyException

from auth import users, web
from config import PROJECT_ROOT
from observe.metrics import OTHER, Metrics
from pages import admin, answers, dashboard, ids, imports, outlook, ranking, schedules
from views.cache import Cache
from views.model import Model
from views.prefetch import Activity, Prefetcher
from views.state import BadState

ASSETS = PROJECT_ROOT / "assets"


def translations() -> dict:
    """Interface strings per language (``assets/translations.json``)."""
    with open(ASSETS / "translations.json", encoding="utf-8") as fh:
        return json.load(fh)


def page(base):
    """The page of one load: the layout with an id of its own (the predicted-alerts panel
    drops the requests of a page that has sent newer ones)."""
    return dash.html.Div([outlook.client_store(uuid.uuid4().hex), base])


def build_app(
    store,
    settings,
    blueprints: Iterable = (),
    warm: bool = True,
    prefetch: bool = True,
    auth: bool | None = None,
    metrics: Metrics | None = None,
    report_answers: bool = False,
) -> dash.Dash:
    """The dashboard for one store.

    Parameters
    ----------
    store : data.store.database.Store
    settings : config.Settings
    blueprints : iterable of flask.Blueprint
        Registered on the Flask server (``app.server``), e.g. the HTTP ingest API.
    warm : bool
        Compute the alert state of the newest two days in a background thread, so the
        first views find it cached.
    prefetch : bool
        After each new view, prepare its busiest children in a background thread, so
        that drilling down mostly reads the cache, and the predicted alerts of its next
        hour (``views.outlook.Ahead``).
    auth : bool or None
        True: every page and callback needs a signed-in user and is kept inside the
        user's subtree (``auth/web.py``; users in the store's ``users`` table). None or
        False: an open app, for tests and benchmarks on loopback. ``python app.py serve``
        always signs users in.
    metrics : observe.metrics.Metrics, optional
        Where callback latency is counted (``emap_callback_duration_seconds``); default:
        metrics of its own (``app.metrics``). Serving them is up to the caller
        (:func:`observe.routes.make_observe_blueprint` among ``blueprints``).
    report_answers : bool
        A web worker's app: what the answer cache did with each panel callback is told in
        a header for the serving process to count (``pages/answers.py``), not counted here.

    Returns
    -------
    dash.Dash
    """
    text = translations()
    app = dash.Dash(__name__, title="EMAP", assets_folder=str(ASSETS), update_title=None, serve_locally=True)
    app.metrics = metrics = metrics or Metrics()
    # dcc.Graph uses window.Plotly when a script has defined it and only otherwise fetches
    # plotly.py's full plotly.min.js (4.8 MB, every trace type). Dash adds every .js file of
    # assets/ to the page as a plain script tag, so assets/plotly-emap-<version>.min.js
    # (2.9 MB: the core and the map and bar traces; tools/plotly_bundle) defines it before
    # the renderer starts and the full bundle is never fetched. Being a tag of the page, it
    # is downloaded from the start without a <link rel=preload>.
    blueprints = list(blueprints)
    for bp in blueprints:
        app.server.register_blueprint(bp)
    model = Model(store, settings, Cache(size=1024))
    users.ensure_tables(store)  # the audit log takes exports and refusals in an open app too
    web.install_errors(app, store, bad_input=(BadState,))

    @app.server.errorhandler(DependencyException)
    def _no_such_package(_exc):  # a component-suite URL naming no registered package
        return web.error_response(404, "no such file")

    # The page of a viewer role has no ranking download; the guard and the callback
    # refuse the download to a viewer whatever the page holds.
    acting_page, viewing_page = dashboard.layout(text), dashboard.layout(text, may_act=False)
    app.validation_layout = dash.html.Div([page(acting_page), admin.validation_layout()])
    node_ids = store.nodes()["node_id"].to_list()  # the administration pages' node choices
    if auth:
        web.install(
            app,
            store,
            settings,
            state_id=ids.STATE,
            acting={
                ids.EXPORT_DOWNLOAD: "export",
                ids.OUTLOOK_NOTE: "dispatch decision",
                ids.RANKING_DOWNLOAD: ranking.ACTION,
                **admin.ACTING,
            },
        )

        def serve_layout():
            user = web.viewer()  # None before the guard has run (Dash's own first look)
            if user is not None and (shown := admin.layout_for(model, node_ids)) is not None:
                return shown
            base = acting_page if user is not None and web.request_viewer(model).may_act else viewing_page
            shown = dashboard.with_user_bar(page(base), user)
            return admin.with_links(shown, web.request_viewer(model)) if user is not None else shown

        app.layout = serve_layout
    else:
        app.layout = lambda: admin.layout_for(model, node_ids) or page(acting_page)
    # Callbacks being served: background work (prefetch, the predicted-alerts panel's
    # forecasting) gives way to them.
    activity = Activity()

    @app.server.before_request
    def _callback_started():
        if flask.request.path.endswith("/_dash-update-component"):
            flask.g.emap_callback = True
            flask.g.emap_callback_t0 = time.perf_counter()
            activity.enter()

    @app.server.teardown_request
    def _callback_ended(_exc):
        if flask.g.pop("emap_callback", False):
            activity.leave()
        t0 = flask.g.pop("emap_callback_t0", None)
        if t0 is not None:
            metrics.callback(_output_of(app), time.perf_counter() - t0)

    def step_aside():
        """The current callback no longer counts as one being served (it is background work)."""
        if flask.g.pop("emap_callback", False):
            activity.leave()

    prefetcher = Prefetcher(model, activity) if prefetch else None
    dashboard.register(app, model, text, prefetcher)
    outlook.register(app, model, text, activity, step_aside, ahead=prefetch)
    # The dashboard's own callbacks: the ones web workers may answer (cli/web_pool.py);
    # the administration's, registered below, stay beside the writer.
    app.panel_outputs = frozenset(app.callback_map)
    # after the guard: only a request it let through may be given a kept answer
    answers.install(app, model, settings.answer_cache_mb * 1024 * 1024, report_header=report_answers)
    admin.register(app, store, model, settings)
    admin.install_page_guard(app, model)
    schedules.register(app, model, store, settings)  # /schedules: plain routes, no callbacks
    # /admin/imports: plain routes too; the ingest API's uploads, so that one import runs
    # at a time whichever way it comes
    uploads = next((bp.uploads for bp in blueprints if hasattr(bp, "uploads")), None)
    imports.register(app, model, store, settings, uploads)
    if warm:  # after the callbacks: the warm-up reads what the registered panels need
        threading.Thread(target=model.warm, name="emap-warm", daemon=True).start()
    web.security_headers(app)
    return app


def _output_of(app: dash.Dash) -> str:
    """The output of the callback request being served, as a metric label: one of the
    app's callbacks (a fixed set of component ids), else "other" (the body is the
    client's word and could name anything)."""
    # Dash has parsed the body already; Flask keeps the parsed JSON, so this reads no bytes.
    body = flask.request.get_json(silent=True)
    output = body.get("output") if isinstance(body, dict) else None
    return output if isinstance(output, str) and output in app.callback_map else OTHER
