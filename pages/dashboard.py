"""The operations dashboard: the page composed of its panels, and their callbacks.

One module per panel, each with its ``layout`` part and a ``register`` attaching its
callbacks:

- ``pages/view_state.py``: the URL, the view state and the play timer; the reducer that
  turns every control, click and tick into the view state;
- ``pages/live.py``: live mode's poll of the viewer's data, and its indicator;
- ``pages/header.py``: title, breadcrumb, language switch, the signed-in user's bar;
- ``pages/controls.py``: the control bar, the timers' switches, the translated labels;
- ``pages/export.py``: the export control (in the control bar);
- ``pages/map_panel.py``: the map and its legend;
- ``pages/kpi_panel.py``: the KPI cards, the hourly trend and the status line;
- ``pages/alerts_panel.py``: the peak-load alerts of the hour;
- ``pages/outlook.py``: the predicted alerts and dispatch suggestions (registered by
  ``pages/app.py``, which gives it the background machinery);
- ``pages/ranking.py``: the ranking of the children (an AG Grid) and its CSV download.

Every callback reads through :class:`views.model.ViewerModel` made for the viewer of
its request (``auth.web.request_viewer``), and validates the view state it is given
against that viewer before anything is read: a node outside the viewer's subtree
raises ``OutsideScope`` (answered ``403`` with an audit line).
"""

from __future__ import annotations

from dash import html

from pages import (
    alerts_panel,
    controls,
    export,
    header,
    kpi_panel,
    live,
    map_panel,
    outlook,
    ranking,
    view_state,
)
from views.model import Model

with_user_bar = header.with_user_bar


def layout(text: dict, may_act: bool = True) -> html.Div:
    """The page skeleton (texts in Chinese until the state says otherwise); ``may_act``
    False: without the ranking's download (the page of a viewer role)."""
    t = text["zh"]
    side = html.Div(
        [*kpi_panel.layout(t), alerts_panel.layout(t), outlook.section(t), ranking.layout(t, may_act)],
        className="emap-side",
    )
    return html.Div(
        [
            *view_state.layout(),
            *live.layout(),
            header.layout(t),
            controls.layout(t),
            html.Div([map_panel.layout(), side], className="emap-main"),
        ]
    )


def register(app, model: Model, text: dict, prefetcher=None) -> None:
    """Attach the dashboard's callbacks to ``app`` (all but the predicted alerts');
    ``prefetcher`` (optional) prepares the likely next views after each map update."""
    view_state.register(app, model)
    controls.register(app, model, text)
    live.register(app, model, text)
    header.register(app, model)
    map_panel.register(app, model, text, prefetcher)
    kpi_panel.register(app, model, text)
    alerts_panel.register(app, model, text)
    ranking.register(app, model, text)
    export.register(app, model, text)
