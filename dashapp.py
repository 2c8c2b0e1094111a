"""The EMAP dashboard application factory.

``build_app(store, settings).run(host=settings.host, port=settings.port)`` serves it;
nothing is read or opened at import time.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable

import dash

from config import PROJECT_ROOT
from pages import dashboard, outlook
from pages.model import Cache, Model, Prefetcher

ASSETS = PROJECT_ROOT / "assets"


def translations() -> dict:
    """Interface strings per language (``assets/translations.json``)."""
    with open(ASSETS / "translations.json", encoding="utf-8") as fh:
        return json.load(fh)


def build_app(
    store, settings, blueprints: Iterable = (), warm: bool = True, prefetch: bool = True
) -> dash.Dash:
    """The dashboard for one store.

    Parameters
    ----------
    store : data.store.Store
    settings : config.Settings
    blueprints : iterable of flask.Blueprint
        Registered on the Flask server (``app.server``), e.g. the HTTP ingest API.
    warm : bool
        Compute the alert state of the newest two days in a background thread, so the
        first views find it cached.
    prefetch : bool
        After each new view, prepare its busiest children in a background thread, so
        that drilling down mostly reads the cache.

    Returns
    -------
    dash.Dash
    """
    text = translations()
    app = dash.Dash(__name__, title="EMAP", assets_folder=str(ASSETS), update_title=None, serve_locally=True)
    for bp in blueprints:
        app.server.register_blueprint(bp)
    model = Model(store, settings, Cache(size=1024))
    if warm:
        threading.Thread(target=model.warm, name="emap-warm", daemon=True).start()
    app.layout = dashboard.layout(text)
    dashboard.register(app, model, text, Prefetcher(model) if prefetch else None)
    outlook.register(app, model, text)
    return app
