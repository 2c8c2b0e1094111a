"""The operations dashboard: layout and its thin callbacks.

One reducer callback turns every control, click and tick into the view state (and the
URL); the panels are pure renderings of that state through :class:`views.model.Model`.
"""

from __future__ import annotations

from dash import ALL, Input, Output, Patch, State, ctx, dash_table, dcc, html, no_update
from dash.exceptions import PreventUpdate

from auth import scope as access
from auth.web import request_viewer
from geo import cells as h3cells
from layers import couriers as couriers_layer
from layers import dispatch_arrows as dispatch_layer
from layers import vehicles as vehicles_layer
from layers.hexes import METRICS
from layers.registry import LAYERS, TRACE_ORDER
from pages import export, ids, outlook
from views import state as st
from views.model import Model, ViewerModel
from views.state import BASEMAPS
from views.text import fmt  # one formatting of KPI values for the page and the reports

#: Seconds between refreshes in live mode, and between steps of the play button.
LIVE_SECONDS = 30
PLAY_SECONDS = 2
_NODE_PREFIXES = ("hq", "div-", "r-", "b-")


def layout(text: dict) -> html.Div:
    """The page skeleton (texts in Chinese until the state says otherwise)."""
    t = text["zh"]
    ctl = lambda label_id, child, cls="ctl": html.Div(  # noqa: E731
        [html.Label(t[ids.LABELS[label_id]], id=label_id), child], className=cls
    )
    return html.Div(
        [
            dcc.Location(id=ids.URL, refresh=False),
            dcc.Store(id=ids.STATE),
            dcc.Store(id=ids.GEOMETRY),
            dcc.Interval(id=ids.PLAY_TICK, interval=PLAY_SECONDS * 1000, disabled=True),
            dcc.Interval(id=ids.LIVE_TICK, interval=LIVE_SECONDS * 1000, disabled=True),
            html.Div(
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
            ),
            html.Div(
                [
                    ctl("label-date", dcc.Dropdown(id=ids.DATE, clearable=False, style={"width": "150px"})),
                    ctl(
                        "label-hour",
                        html.Div(
                            [
                                html.Button("◀", id=ids.HOUR_PREV, n_clicks=0),
                                dcc.Slider(
                                    id=ids.HOUR,
                                    min=0,
                                    max=23,
                                    step=1,
                                    value=10,
                                    allow_direct_input=False,
                                    marks={h: f"{h}" for h in range(0, 24, 3)},
                                ),
                                html.Button("▶", id=ids.HOUR_NEXT, n_clicks=0),
                                html.Button(t["play"], id=ids.PLAY, n_clicks=0),
                            ],
                            className="hour-row",
                        ),
                        cls="ctl hour",
                    ),
                    dcc.Checklist(id=ids.LIVE, options=[{"label": t["live"], "value": "live"}], value=[]),
                    ctl(
                        "label-metric", dcc.Dropdown(id=ids.METRIC, clearable=False, style={"width": "170px"})
                    ),
                    ctl("label-layers", dcc.Checklist(id=ids.LAYERS, inline=True)),
                    ctl(
                        "label-basemap",
                        dcc.Dropdown(id=ids.BASEMAP, clearable=False, style={"width": "170px"}),
                    ),
                    ctl("label-drill", dcc.Dropdown(id=ids.DRILL, style={"width": "180px"})),
                    export.controls(),
                    html.Span(id=ids.STATUS, className="status"),
                ],
                className="emap-controls",
            ),
            html.Div(
                [
                    html.Div(
                        [
                            dcc.Graph(
                                id=ids.MAP,
                                config={"displaylogo": False, "scrollZoom": True},
                                style={"height": "100%"},
                            ),
                            html.Div(id=ids.MAP_LEGEND),
                        ],
                        className="emap-map",
                    ),
                    html.Div(
                        [
                            html.Div(
                                [html.H2(t["kpis"], id="label-kpis"), html.Div(id=ids.KPIS)],
                                className="panel",
                            ),
                            html.Div(
                                dcc.Graph(
                                    id=ids.TREND, config={"displayModeBar": False}, style={"height": "170px"}
                                ),
                                className="panel",
                            ),
                            html.Div(
                                [html.H2(t["alerts"], id="label-alerts"), html.Div(id=ids.ALERTS)],
                                className="panel",
                            ),
                            outlook.section(t),
                            html.Div(
                                [
                                    html.H2(t["children"], id="label-children"),
                                    dash_table.DataTable(
                                        id=ids.CHILDREN,
                                        sort_action="native",
                                        page_size=12,
                                        style_cell={"fontSize": 12, "padding": "2px 4px"},
                                    ),
                                ],
                                className="panel",
                            ),
                        ],
                        className="emap-side",
                    ),
                ],
                className="emap-main",
            ),
        ]
    )


def with_user_bar(base: html.Div, user: dict | None) -> html.Div:
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


def state_legend(layers, t: dict, offline_minutes: int) -> list:
    """Legend rows of the state colours of the courier and vehicle layers and of the
    dispatch arrows (couriers, vans) that are shown (colours from the layers' styles, so
    the legend cannot drift from the markers)."""
    rows = []
    styles = (
        ("couriers", couriers_layer.STYLE),
        ("vehicles", vehicles_layer.STYLE),
        ("dispatch_arrows", dispatch_layer.STYLE),
    )
    for key, style in styles:
        if key not in (layers or []):
            continue
        items = [html.Span(t["layer_" + key], className="legend-title")]
        for state, colour in style.categories.items():
            if key == "dispatch_arrows":
                label = t["legend_couriers" if state == "courier" else "legend_vans"]
            elif state == "offline":
                label = t["legend_offline"].format(n=offline_minutes)
            else:
                label = t["state_" + state]
            items.append(
                html.Span(
                    [html.Span(className="dot", style={"background": colour}), label],
                    className=f"legend-item legend-{state}",
                )
            )
        rows.append(html.Div(items, className="legend-row", id=f"legend-{key}"))
    return rows


def register(app, model: Model, text: dict, prefetcher=None) -> None:
    """Attach the dashboard's callbacks to ``app``; ``prefetcher`` (optional) prepares
    the likely next views after each map update.

    Every callback reads through :class:`views.model.ViewerModel` made for the viewer of
    its request (``auth.web.request_viewer``), and validates the view state it is given
    against that viewer before anything is read: a node outside the viewer's subtree
    raises ``OutsideScope`` (answered ``403`` with an audit line).
    """

    def seen() -> ViewerModel:
        return ViewerModel(model, request_viewer(model))

    @app.callback(
        Output(ids.STATE, "data"),
        Output(ids.URL, "search"),
        Output(ids.DATE, "value"),
        Output(ids.DATE, "options"),
        Output(ids.HOUR, "value"),
        Output(ids.METRIC, "value"),
        Output(ids.LAYERS, "value"),
        Output(ids.LANGUAGE, "value"),
        Output(ids.BASEMAP, "value"),
        Output(ids.DRILL, "value"),
        Input(ids.URL, "search"),
        Input(ids.DATE, "value"),
        Input(ids.HOUR, "value"),
        Input(ids.METRIC, "value"),
        Input(ids.LAYERS, "value"),
        Input(ids.LANGUAGE, "value"),
        Input(ids.BASEMAP, "value"),
        Input(ids.DRILL, "value"),
        Input(ids.MAP, "clickData"),
        Input({"type": ids.CRUMB, "node": ALL}, "n_clicks"),
        Input({"type": ids.ALERT, "zone": ALL}, "n_clicks"),
        Input(ids.HOUR_PREV, "n_clicks"),
        Input(ids.HOUR_NEXT, "n_clicks"),
        Input(ids.PLAY_TICK, "n_intervals"),
        Input(ids.LIVE_TICK, "n_intervals"),
        Input(ids.LIVE, "value"),
        State(ids.STATE, "data"),
    )
    def reduce(
        search,
        day,
        hour,
        metric,
        layers,
        lang,
        basemap,
        drill,
        click,
        _crumbs,
        _alerts,
        _prev,
        _next,
        _play,
        _tick,
        live,
        state,
    ):
        m = seen()
        trig = ctx.triggered_id
        root = m.root()
        dates = m.dates(root)
        if state is None or trig == ids.URL or trig is None:
            landing = m.landing(root)
            base = st.default(
                node=root, day=landing[0] if landing else None, hour=landing[1] if landing else 10
            )
            s = st.parse(search, base, m.viewer.nodes, dates)
        else:
            s = m.state(state)
            s["zone"] = None
            if trig == ids.DATE and day:
                s["date"] = st.checked("date", day)
            elif trig == ids.HOUR and hour is not None:
                s["hour"] = st.checked("hour", hour)
            elif trig == ids.METRIC and metric:
                s["metric"] = st.checked("metric", metric)
            elif trig == ids.LAYERS:
                s["layers"] = st.checked("layers", layers or [])
            elif trig == ids.LANGUAGE:
                s["lang"] = st.checked("lang", lang)
            elif trig == ids.BASEMAP:
                s["basemap"] = st.checked("basemap", basemap)
            elif trig == ids.DRILL and drill:
                s["node"] = m.viewer.require(drill)
            elif trig == ids.MAP and click:
                target = _clicked_node(m, s, click)
                if target is None:
                    return (no_update,) * 10
                s["node"] = target
            elif isinstance(trig, dict) and not ctx.triggered[0]["value"]:
                # a breadcrumb or alert button was (re)drawn, not clicked
                return (no_update,) * 10
            elif isinstance(trig, dict) and trig.get("type") == ids.CRUMB:
                s["node"] = m.viewer.require(trig.get("node"))
            elif isinstance(trig, dict) and trig.get("type") == ids.ALERT:
                s["zone"] = st.checked("zone", trig.get("zone"))
                # The zone's view stays while the hour changes (the zone number does not).
                s["focus"] = m.zone_view(s["node"], s["date"], int(s["hour"]), s["zone"])
            elif trig == ids.HOUR_PREV:
                s["hour"] = (int(s["hour"]) - 1) % 24
            elif trig in (ids.HOUR_NEXT, ids.PLAY_TICK):
                s["hour"] = (int(s["hour"]) + 1) % 24
            elif trig in (ids.LIVE_TICK, ids.LIVE) and live:
                newest = m.newest(root)
                if newest:
                    s["date"], s["hour"] = newest
                s["tick"] = (s.get("tick") or 0) + 1
        if state is None or s["node"] != state.get("node") or s["basemap"] != state.get("basemap"):
            s["focus"] = None
        s["layers"] = m.viewer.shown_layers(s["node"], s["layers"])
        options = [{"label": d, "value": d} for d in dates]
        return (
            s,
            st.encode(s),
            s["date"],
            options,
            s["hour"],
            s["metric"],
            s["layers"],
            s["lang"],
            s["basemap"],
            None,
        )

    @app.callback(
        Output(ids.PLAY_TICK, "disabled"),
        Output(ids.PLAY, "children"),
        Input(ids.PLAY, "n_clicks"),
        Input(ids.STATE, "data"),  # the label follows a language switch too
    )
    def toggle_play(n, state):
        t = text[seen().state(state)["lang"]] if state is not None else text["zh"]
        playing = st.clicks(n) % 2 == 1
        return not playing, t["pause"] if playing else t["play"]

    @app.callback(Output(ids.LIVE_TICK, "disabled"), Input(ids.LIVE, "value"))
    def toggle_live(live):
        return not live

    @app.callback(
        [Output(k, "children") for k in ids.LABELS]
        + [
            Output(ids.METRIC, "options"),
            Output(ids.LAYERS, "options"),
            Output(ids.BASEMAP, "options"),
            Output(ids.LIVE, "options"),
        ],
        Input(ids.STATE, "data"),
    )
    def labels(state):
        m = seen()
        state = m.state(state)
        t = text[state["lang"]]
        private_ok = m.viewer.may_see_positions(state["node"])
        return [t[v] for v in ids.LABELS.values()] + [
            [{"label": t["metric_" + m], "value": m} for m in METRICS],
            [
                {
                    "label": t["layer_" + layer.key],
                    "value": layer.key,
                    "disabled": layer.key in access.PRIVATE_LAYERS and not private_ok,
                }
                for layer in LAYERS
            ],
            [{"label": t["basemap_" + b], "value": b} for b in BASEMAPS],
            [{"label": t["live"], "value": "live"}],
        ]

    @app.callback(Output(ids.MAP_LEGEND, "children"), Input(ids.STATE, "data"))
    def map_legend(state):
        state = seen().state(state)
        return state_legend(state["layers"], text[state["lang"]], model.settings.offline_after_minutes)

    @app.callback(Output(ids.BREADCRUMB, "children"), Output(ids.DRILL, "options"), Input(ids.STATE, "data"))
    def breadcrumb(state):
        m = seen()
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

    @app.callback(
        Output(ids.MAP, "figure"),
        Output(ids.GEOMETRY, "data"),
        Input(ids.STATE, "data"),
        State(ids.GEOMETRY, "data"),
    )
    def draw_map(state, shown):
        m = seen()
        state = dated(m.state(state))
        t = text[state["lang"]]
        key = m.geometry_key(state)
        if (
            isinstance(shown, dict)
            and shown.get("key") == key
            and "hexes" in state["layers"]
            and shown.get("sig")
        ):
            cells, geometry, sig = m.geometry(state["node"], state["date"], state.get("basemap") == "amap")
            if sig == shown["sig"]:
                # Same geometry on the client: send values only.
                traces = m.traces(state, t, geometry={"type": "FeatureCollection", "features": []})
                patch = Patch()
                for i, name in enumerate(TRACE_ORDER):
                    tr = dict(traces[name])
                    if name == "hexes":
                        for k in ("locations", "z", "customdata", "zmin", "zmax", "hovertemplate"):
                            patch["data"][i][k] = tr[k]
                        patch["data"][i]["colorbar"]["title"]["text"] = tr["colorbar"]["title"]["text"]
                        patch["data"][i]["colorscale"] = tr["colorscale"]
                        patch["data"][i]["visible"] = True
                    else:
                        patch["data"][i] = tr
                lay = m.layout(state)
                patch["layout"]["uirevision"] = lay["uirevision"]
                patch["layout"]["map"]["center"] = lay["map"]["center"]
                patch["layout"]["map"]["zoom"] = lay["map"]["zoom"]
                patch["layout"]["map"]["layers"] = lay["map"]["layers"]
                return patch, no_update
        fig, geo = m.figure(state, t)
        if prefetcher is not None:
            prefetcher.after_view(
                m.viewer, state["node"], state["date"], int(state["hour"]), state.get("basemap") == "amap"
            )
        return fig, geo

    @app.callback(
        Output(ids.KPIS, "children"),
        Output(ids.TREND, "figure"),
        Output(ids.CHILDREN, "data"),
        Output(ids.CHILDREN, "columns"),
        Output(ids.STATUS, "children"),
        Input(ids.STATE, "data"),
    )
    def panels(state):
        m = seen()
        state = dated(m.state(state))
        t = text[state["lang"]]
        node, day, hour = state["node"], state["date"], int(state["hour"])
        cards = []
        for k in m.kpis(node, day, hour):
            ch = k["change"]
            delta = "–" if ch is None else f"{'+' if ch >= 0 else ''}{100 * ch:.0f}%"
            cls = "delta" if ch is None or abs(ch) < 0.005 else ("delta up" if ch > 0 else "delta down")
            cards.append(
                html.Div(
                    [
                        html.Div(t["kpi_" + k["key"]], className="name"),
                        html.Div(fmt(k["key"], k["value"]), className="value"),
                        html.Div(f"{delta} {t['vs_yesterday']}", className=cls),
                    ],
                    className="kpi",
                    id=f"kpi-{k['key']}",
                )
            )
        tr = m.trend(node, day)
        x = tr["local_hour"].to_list()
        trend = {
            "data": [
                {
                    "type": "bar",
                    "x": x,
                    "y": tr["pickups"].to_list(),
                    "name": t["kpi_pickups"],
                    "marker": {"color": "#fe9929"},
                },
                {
                    "type": "bar",
                    "x": x,
                    "y": tr["deliveries"].to_list(),
                    "name": t["kpi_deliveries"],
                    "marker": {"color": "#2c7fb8"},
                },
            ],
            "layout": {
                "barmode": "stack",
                "margin": {"l": 36, "r": 8, "t": 24, "b": 24},
                "height": 170,
                "title": {"text": t["trend"], "font": {"size": 12}},
                "shapes": [
                    {
                        "type": "line",
                        "x0": hour,
                        "x1": hour,
                        "yref": "paper",
                        "y0": 0,
                        "y1": 1,
                        "line": {"color": "#d7301f", "width": 1},
                    }
                ],
                "legend": {"orientation": "h", "y": 1.2, "x": 1, "xanchor": "right", "font": {"size": 10}},
                "xaxis": {"range": [-0.5, 23.5], "dtick": 3},
            },
        }
        table = m.child_table(node, day, hour)
        cols = [
            ("name", t["name"]),
            ("volume", t["volume"]),
            ("on_time_rate", t["kpi_on_time_rate"]),
            ("couriers", t["kpi_couriers"]),
            ("parcels_per_courier_hour", t["kpi_parcels_per_courier_hour"]),
            ("vehicles", t["kpi_vehicles"]),
            ("zones", t["kpi_zones"]),
        ]
        rows = (
            table.select([c for c, _ in cols])
            .with_columns((table["on_time_rate"] * 100).round(1), table["parcels_per_courier_hour"].round(1))
            .to_dicts()
        )
        status = f"{day} {hour:02d}:00 {t['local_time']}"
        return cards, trend, rows, [{"name": n, "id": c} for c, n in cols], status

    @app.callback(Output(ids.ALERTS, "children"), Input(ids.STATE, "data"))
    def alert_list(state):
        m = seen()
        state = dated(m.state(state))
        t = text[state["lang"]]
        z = m.zones(state["node"], state["date"], int(state["hour"]))
        if z.is_empty():
            return html.Div(t["no_alerts"], className="status")
        out = []
        for r in z.iter_rows(named=True):
            rule = t.get("rule_" + (r["rule"] or ""), r["rule"] or "")
            label = (
                f"#{r['zone_id']} {r['branch'] or ''} · {r['n_cells']} {t['cells']} · "
                f"{r['workload']:.0f} {t['parcels']} · {t['ratio']} {r['peak_ratio']:.2f} · "
                f"{t['since']} {r['since']} · {rule}"
            )
            out.append(
                html.Button(
                    label,
                    id={"type": ids.ALERT, "zone": r["zone_id"]},
                    n_clicks=0,
                    className="selected" if state.get("zone") == r["zone_id"] else "",
                )
            )
        return out

    export.register(app, model, text)


def dated(state: dict) -> dict:
    """A view state with a day: a network with no data yet has none to draw."""
    if state["date"] is None:
        raise PreventUpdate
    return state


def _clicked_node(model: ViewerModel, state: dict, click: dict) -> str | None:
    """Child node hit by a click on a territory, a label or a hex; None if nothing to drill into."""
    pts = click.get("points") if isinstance(click, dict) else None
    if not isinstance(pts, list) or not pts or not isinstance(pts[0], dict):
        return None
    cd = pts[0].get("customdata")
    first = cd[0] if isinstance(cd, list) and cd else pts[0].get("location")
    if not isinstance(first, str):
        return None
    kids = set(model.children(state["node"])["node_id"].to_list())
    if first.startswith(_NODE_PREFIXES):
        return first if first in kids else None
    if not kids:
        return None
    try:
        cell = int(h3cells.from_str([first])[0])
    except ValueError:
        return None
    k = model.cell_children(state["node"], state["date"], model.res(state["node"]))
    hit = k.filter(k["cell"] == cell)
    return hit["node_id"][0] if len(hit) and hit["node_id"][0] in kids else None
