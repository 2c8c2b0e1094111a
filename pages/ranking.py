"""The ranking of the view's children: a sortable grid of their figures of the hour
(dash-ag-grid), and, for managers and admins, its download as CSV.

The grid shows values as text (AG Grid's own cell rendering, no renderer that writes
markup) and sorts by any column, numbers as numbers. Its client-side CSV export is
turned off: the download is made on the server from the view model, for the viewer's
own scope, escaped against spreadsheet formulas like every other export, and audited.
"""

from __future__ import annotations

import dash_ag_grid as dag
from dash import Input, Output, State, dcc, html, no_update

from auth import users
from auth.web import request_viewer
from layers import escape
from pages import ids
from pages.view_state import dated, viewer_model
from views.model import Model, ViewerModel

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
#: What the audit log and a refusal call the download.
ACTION = "ranking download"
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


def layout(t: dict, may_act: bool = True) -> html.Div:
    """The panel: its title, the CSV button and download (``may_act``: managers and
    admins), and the grid (filled by the callback)."""
    title = [html.H2(t["children"], id="label-children")]
    if may_act:
        title += [
            html.Button(
                "⬇ CSV",
                id=ids.RANKING_BUTTON,
                n_clicks=0,
                title="下载排名 (CSV) · Download the ranking (CSV)",
                className="ranking-csv",
            ),
            dcc.Download(id=ids.RANKING_DOWNLOAD),
        ]
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


def ranking_csv(m: ViewerModel, state: dict, t: dict) -> tuple[bytes, str]:
    """The ranking of ``state``'s view as CSV for the viewer of ``m``: ``(bytes, file name)``.

    The rows and columns of the grid (headers in the view's language) after the node id,
    in the server's order (largest volume first), read from the view model (never from
    what the page sends); text cells that a spreadsheet would run as a formula are
    neutralised (``layers.escape.csv_frame``).
    """
    state = dated(m.state(state))
    node, day, hour = state["node"], state["date"], int(state["hour"])
    table = m.child_table(node, day, hour)
    frame = (
        table.select("node_id", *COLUMNS)
        .with_columns((table["on_time_rate"] * 100).round(1), table["parcels_per_courier_hour"].round(1))
        .rename({field: t[key] for field, key in COLUMNS.items()})
    )
    return escape.csv_frame(frame).write_csv().encode("utf-8"), f"ranking-{node}-{day}-{hour:02d}.csv"


def register(app, model: Model, text: dict) -> None:
    """Attach the grid's callback and the download's."""

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

    @app.callback(
        Output(ids.RANKING_DOWNLOAD, "data"),
        Input(ids.RANKING_BUTTON, "n_clicks"),
        State(ids.STATE, "data"),
        prevent_initial_call=True,
        running=[(Output(ids.RANKING_BUTTON, "disabled"), True, False)],
    )
    def download(n, state):
        viewer = request_viewer(model)
        m = ViewerModel(model, viewer)
        state = m.state(state)
        viewer.require_act(ACTION)
        if not n or not state["date"]:
            return no_update
        blob, name = ranking_csv(m, state, text[state["lang"]])
        # Audited where it is made, with the viewer of this request.
        users.audit(
            model.store,
            viewer.label,
            "export",
            f"ranking node={state['node']} date={state['date']} hour={state['hour']} format=csv",
        )
        return dcc.send_bytes(blob, name, type="text/csv")
