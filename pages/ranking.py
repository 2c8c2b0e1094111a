"""The ranking of the view's children: a sortable table of their figures of the hour."""

from __future__ import annotations

from dash import Input, Output, dash_table, html

from pages import ids
from pages.view_state import dated, viewer_model
from views.model import Model

#: The columns: field of ``Model.child_table`` -> translation key of its header.
COLUMNS = {
    "name": "name",
    "volume": "volume",
    "on_time_rate": "kpi_on_time_rate",
    "couriers": "kpi_couriers",
    "parcels_per_courier_hour": "kpi_parcels_per_courier_hour",
    "vehicles": "kpi_vehicles",
    "zones": "kpi_zones",
}


def layout(t: dict) -> html.Div:
    """The panel's title and table (filled by the callback)."""
    return html.Div(
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
    )


def rows(table) -> list[dict]:
    """The rows as the table shows them: the on-time rate in per cent, one decimal."""
    return (
        table.select(list(COLUMNS))
        .with_columns((table["on_time_rate"] * 100).round(1), table["parcels_per_courier_hour"].round(1))
        .to_dicts()
    )


def register(app, model: Model, text: dict) -> None:
    """Attach the table's callback."""

    @app.callback(Output(ids.CHILDREN, "data"), Output(ids.CHILDREN, "columns"), Input(ids.STATE, "data"))
    def ranking(state):
        m = viewer_model(model)
        state = dated(m.state(state))
        t = text[state["lang"]]
        table = m.child_table(state["node"], state["date"], int(state["hour"]))
        return rows(table), [{"name": t[key], "id": c} for c, key in COLUMNS.items()]
