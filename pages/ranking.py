"""The ranking of the view's children: a sortable grid of their figures of the hour
(dash-ag-grid).

The grid shows values as text (AG Grid's own cell rendering, no renderer that writes
markup) and sorts by any column, numbers as numbers. Its client-side CSV export is
turned off: it would bypass the escaping and the audit of the exports.
"""

from __future__ import annotations

import dash_ag_grid as dag
from dash import Input, Output, html

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
#: Rows per page of the grid.
PAGE_SIZE = 12
#: The grid's options: pages of 12 rows, as tall as its rows, every column drawn (a
#: handful), the text selectable, and AG Grid's own CSV and Excel exports off. Its own
#: words are made signs, the same in either language ("1 – 9 / 9", "1 / 1").
GRID_OPTIONS = {
    "pagination": True,
    "paginationPageSize": PAGE_SIZE,
    "paginationPageSizeSelector": False,
    "localeText": {"page": "", "to": "–", "of": "/", "noRowsToShow": "–", "loadingOoo": "…"},
    "domLayout": "autoHeight",
    "suppressColumnVirtualisation": True,
    "suppressCsvExport": True,
    "suppressExcelExport": True,
    "enableCellTextSelection": True,
    "suppressDragLeaveHidesColumns": True,
}


def layout(t: dict) -> html.Div:
    """The panel: its title and the grid (filled by the callback)."""
    title = [html.H2(t["children"], id="label-children")]
    grid = dag.AgGrid(
        id=ids.CHILDREN,
        rowData=[],
        columnDefs=[],
        defaultColDef={
            "sortable": True,
            "resizable": True,
            "suppressMovable": True,
            "wrapHeaderText": True,
            "autoHeaderHeight": True,
        },
        columnSize="responsiveSizeToFit",
        columnSizeOptions={"defaultMinWidth": 46, "columnLimits": [{"key": "name", "minWidth": 96}]},
        dashGridOptions=GRID_OPTIONS,
        style={"height": None, "width": "100%"},
    )
    return html.Div([html.Div(title, className="panel-title"), grid], className="panel")


def rows(table) -> list[dict]:
    """The rows as the grid shows them: the on-time rate in per cent, one decimal."""
    return (
        table.select(list(COLUMNS))
        .with_columns((table["on_time_rate"] * 100).round(1), table["parcels_per_courier_hour"].round(1))
        .to_dicts()
    )


def column_defs(t: dict) -> list[dict]:
    """The grid's columns, headers in the language of ``t``: the name as text, the rest
    as numbers (sorted as numbers, aligned right)."""
    out = []
    for field, key in COLUMNS.items():
        col = {"field": field, "headerName": t[key]}
        if field == "name":
            col.update(cellDataType="text")
        else:
            col.update(cellDataType="number", type="numericColumn")
        out.append(col)
    return out


def register(app, model: Model, text: dict) -> None:
    """Attach the grid's callback."""

    @app.callback(
        Output(ids.CHILDREN, "rowData"),
        Output(ids.CHILDREN, "columnDefs"),
        Input(ids.STATE, "data"),
    )
    def ranking(state):
        m = viewer_model(model)
        state = dated(m.state(state))
        t = text[state["lang"]]
        table = m.child_table(state["node"], state["date"], int(state["hour"]))
        return rows(table), column_defs(t)
