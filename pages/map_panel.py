"""The map and the legend of the courier, vehicle and dispatch colours over it.

The map callback sends the whole figure when the geometry changes and, when the client
already has the view's hex geometry, a ``Patch`` of the values only (``views.model``
builds both); after a new view it asks the prefetcher to prepare the likely next ones.
"""

from __future__ import annotations

from dash import Input, Output, Patch, State, dcc, html, no_update

from layers import couriers as couriers_layer
from layers import dispatch_arrows as dispatch_layer
from layers import vehicles as vehicles_layer
from layers.registry import TRACE_ORDER
from pages import ids
from pages.view_state import dated, viewer_model
from views.model import Model, ViewerModel

#: The hex trace's fields a values-only update sends.
_HEX_VALUES = ("locations", "z", "customdata", "zmin", "zmax", "hovertemplate")


def layout() -> html.Div:
    """The map and its legend (both filled by the callbacks)."""
    return html.Div(
        [
            dcc.Graph(
                id=ids.MAP, config={"displaylogo": False, "scrollZoom": True}, style={"height": "100%"}
            ),
            html.Div(id=ids.MAP_LEGEND),
        ],
        className="emap-map",
    )


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


def values_patch(m: ViewerModel, state: dict, t: dict) -> Patch:
    """The update of a figure whose hex geometry the client already has: values only."""
    traces = m.traces(state, t, geometry={"type": "FeatureCollection", "features": []})
    patch = Patch()
    for i, name in enumerate(TRACE_ORDER):
        tr = dict(traces[name])
        if name == "hexes":
            for k in _HEX_VALUES:
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
    return patch


def register(app, model: Model, text: dict, prefetcher=None) -> None:
    """Attach the map and legend callbacks; ``prefetcher`` (optional) prepares the likely
    next views after each new map."""

    @app.callback(
        Output(ids.MAP, "figure"),
        Output(ids.GEOMETRY, "data"),
        Input(ids.STATE, "data"),
        State(ids.GEOMETRY, "data"),
    )
    def draw_map(state, shown):
        m = viewer_model(model)
        state = dated(m.state(state))
        t = text[state["lang"]]
        key = m.geometry_key(state)
        if (
            isinstance(shown, dict)
            and shown.get("key") == key
            and "hexes" in state["layers"]
            and shown.get("sig")
        ):
            _cells, _geometry, sig = m.geometry(state["node"], state["date"], state.get("basemap") == "amap")
            if sig == shown["sig"]:
                # Same geometry on the client: send values only.
                return values_patch(m, state, t), no_update
        fig, geo = m.figure(state, t)
        if prefetcher is not None:
            prefetcher.after_view(
                m.viewer, state["node"], state["date"], int(state["hour"]), state.get("basemap") == "amap"
            )
        return fig, geo

    @app.callback(Output(ids.MAP_LEGEND, "children"), Input(ids.STATE, "data"))
    def map_legend(state):
        state = viewer_model(model).state(state)
        return state_legend(state["layers"], text[state["lang"]], model.settings.offline_after_minutes)
