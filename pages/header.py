"""The header: the title, the breadcrumb of the view's node and the language switch;
and the bar of the signed-in user above it.

The breadcrumb callback also gives the drill-down list its options (the children of the
view's node), as both are the node's place in the tree.
"""

from __future__ import annotations

from dash import Input, Output, dcc, html

from pages import ids
from pages.view_state import viewer_model
from views.model import Model


def layout(t: dict) -> html.Div:
    """Title, breadcrumb (filled by the callback) and language switch."""
    return html.Div(
        [
            html.H1(t["title"], id=ids.TITLE),
            html.Nav(id=ids.BREADCRUMB),
            dcc.RadioItems(
                id=ids.LANGUAGE,
                options=[{"label": "中文", "value": "zh"}, {"label": "English", "value": "en"}],
                value="zh",
                inline=True,
                className="lang",
            ),
        ],
        className="emap-header",
    )


def with_user_bar(base, user: dict | None) -> html.Div:
    """The page with the signed-in user's name and a sign-out link above it."""
    if user is None:
        return base
    bar = html.Div(
        [
            html.Span(f"{user['name']} · {user['role']} · {user['node_id']}", id="user-name"),
            html.A("退出 · Sign out", href="/logout", id="logout"),
        ],
        className="emap-user",
    )
    return html.Div([bar, base])


def register(app, model: Model) -> None:
    """Attach the breadcrumb callback."""

    @app.callback(Output(ids.BREADCRUMB, "children"), Output(ids.DRILL, "options"), Input(ids.STATE, "data"))
    def breadcrumb(state):
        m = viewer_model(model)
        state = m.state(state)
        # The trail starts at the user's own node: nodes above it are not theirs to open.
        path = [n for n in m.path(state["node"]) if m.viewer.holds(n["node_id"])]
        crumbs = []
        for i, n in enumerate(path):
            name = n["name"] if state["lang"] == "zh" or not n.get("name_en") else n["name_en"]
            last = i == len(path) - 1
            if i:
                crumbs.append(html.Span("›", className="sep"))
            crumbs.append(
                html.Button(
                    name,
                    id={"type": ids.CRUMB, "node": n["node_id"]},
                    className="current" if last else "",
                    disabled=last,
                )
            )
        kids = m.children(state["node"])
        return crumbs, [{"label": r["name"], "value": r["node_id"]} for r in kids.iter_rows(named=True)]
