"""The administration pages: users, devices, ingest tokens and the audit log.

Each page is a plain route of the dashboard app (``/admin/users``, ``/admin/devices``,
``/admin/tokens``, ``/admin/audit``) with one callback beside its layout; the imports
page (``/admin/imports``) is a server-rendered page of its own (``pages/imports.py``). The rules live
in :mod:`views.admin`; the callbacks only read the form, call them with the request's
viewer (``auth.web.request_viewer``, from the server-side session) and show the result.
Names from data are shown as text of Dash components.

A viewer may not open a page (:func:`install_page_guard`: ``403`` and an audit line); a
callback asking for a right its viewer does not hold is refused the same way by
:mod:`views.admin`; the result outputs are declared as acting (:data:`ACTING`), so the
request guard refuses a viewer role before any callback runs.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit

import dash
import flask
from dash import ALL, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from auth import users, web
from pages import ids
from views import admin as rules

PREFIX = "/admin/"
TITLES = {
    "users": "Users · 用户",
    "devices": "Devices · 设备",
    "tokens": "Ingest tokens · 令牌",
    "imports": "Imports · 导入",
    "audit": "Audit log · 审计",
}
#: Pages served by plain routes of their own (``pages/imports.py``), sub-paths included,
#: rather than by a Dash layout.
PLAIN = ("imports",)
#: The result outputs that change something: refused to a viewer role by the request guard.
ACTING = {
    ids.ADMIN_USERS_RESULT: "user administration",
    ids.ADMIN_DEVICES_RESULT: "device administration",
    ids.ADMIN_UNKNOWN_RESULT: "device administration",
    ids.ADMIN_TOKENS_RESULT: "token administration",
    ids.ADMIN_AUDIT_TABLE: "audit log",
}


def page_of(path: str | None) -> str | None:
    """The administration page a path names (``None``: not one).

    Examples
    --------
    >>> page_of("/admin/users"), page_of("http://h/admin/audit?node=hq"), page_of("/")
    ('users', 'audit', None)
    """
    path = urlsplit(path or "").path
    if not path.startswith(PREFIX):
        return None
    return path[len(PREFIX) :].strip("/") or "?"


# -- layouts ----------------------------------------------------------------------------------
#: Rows a table shows at most (every cell is a component for the browser to build).
TABLE_ROWS = 100


def table(frame, columns: list[str] | None = None, limit: int = TABLE_ROWS) -> html.Div | html.P:
    """A frame as an HTML table of text cells (its first ``limit`` rows)."""
    if frame is None or frame.is_empty():
        return html.P("(none · 无)", className="admin-empty")
    columns = columns or frame.columns
    head = html.Thead(html.Tr([html.Th(c) for c in columns]))
    body = html.Tbody(
        [
            html.Tr([html.Td("" if v is None else str(v)) for v in row])
            for row in frame.select(columns).head(limit).iter_rows()
        ]
    )
    shown = html.Table([head, body], className="admin-table")
    if len(frame) <= limit:
        return shown
    return html.Div(
        [html.P(f"{limit} of {len(frame)} rows shown · 仅显示前 {limit} 行", className="admin-hint"), shown]
    )


def nav(viewer) -> html.Nav | None:
    """Links to the administration pages the viewer may use (None: none)."""
    pages = rules.pages_for(viewer) if viewer is not None else ()
    if not pages:
        return None
    links = [html.A("Map · 地图", href="/")] + [html.A(TITLES[p], href=PREFIX + p) for p in pages]
    if viewer.may_act:  # managers and admins schedule reports (pages/schedules.py)
        links.append(html.A("Scheduled reports · 定时报表", href="/schedules"))
    return html.Nav(links, id=ids.ADMIN_NAV, className="admin-nav")


def with_links(base, viewer):
    """The dashboard with the administration links of the viewer above it."""
    bar = nav(viewer)
    return base if bar is None else html.Div([bar, base])


def _field(label: str, component) -> html.Label:
    return html.Label([html.Span(label), component], className="admin-field")


def unknown_table(frame, owners) -> html.Div | html.P:
    """The unknown devices, each row with a choice of the couriers and vehicles of the
    branch it was seen in and its own register button. The device id in the button's id
    is the one this server listed; the callback checks it again against the viewer's list."""
    if frame is None or frame.is_empty():
        return html.P("(none · 无)", className="admin-empty")
    by_branch: dict = {}
    for kind, owner_id, name, branch in owners.iter_rows():
        by_branch.setdefault(branch, []).append({"label": f"{owner_id} · {name or kind}", "value": owner_id})
    head = html.Thead(html.Tr([html.Th(c) for c in (*frame.columns, "courier or vehicle", "")]))
    rows = []
    for device, fixes, last_seen, branch in frame.head(TABLE_ROWS).iter_rows():
        key = {"type": ids.ADMIN_UNKNOWN_OWNER, "device": device}
        rows.append(
            html.Tr(
                [html.Td(str(v) if v is not None else "") for v in (device, fixes, last_seen, branch)]
                + [
                    html.Td(dcc.Dropdown(id=key, options=by_branch.get(branch, []), style={"minWidth": 220})),
                    html.Td(
                        html.Button(
                            "Register and re-ingest · 注册并重新导入",
                            id={"type": ids.ADMIN_UNKNOWN_REGISTER, "device": device},
                            className="admin-unknown-register",
                        )
                    ),
                ],
                **{"data-device": device},
            )
        )
    return html.Table([head, html.Tbody(rows)], className="admin-table")


def users_layout(node_ids: list[str]) -> list:
    roles = [{"label": r, "value": r} for r in users.ROLES]
    nodes = [{"label": n, "value": n} for n in node_ids]
    return [
        html.H3("New user · 新用户"),
        _field("User id", dcc.Input(id=ids.ADMIN_USER_ID, type="text", maxLength=64)),
        _field("Name", dcc.Input(id=ids.ADMIN_USER_NAME, type="text", maxLength=100)),
        _field("Role", dcc.Dropdown(id=ids.ADMIN_USER_ROLE, options=roles, value="viewer", clearable=False)),
        _field("Node", dcc.Dropdown(id=ids.ADMIN_USER_NODE, options=nodes)),
        dcc.Checklist(
            id=ids.ADMIN_USER_GRANT,
            options=[{"label": "courier positions above branch", "value": "yes"}],
            value=[],
        ),
        html.Button("Create · 创建", id=ids.ADMIN_USER_CREATE),
        html.H3("Change a user · 修改用户"),
        _field("User", dcc.Input(id=ids.ADMIN_USER_PICK, type="text", maxLength=64)),
        html.P("Role, node and grant above apply to this user on Save.", className="admin-hint"),
        html.Button("Save role, node, grant · 保存", id=ids.ADMIN_USER_SAVE),
        html.Button("Disable / enable · 停用/启用", id=ids.ADMIN_USER_DISABLE),
        html.Button("Reset password · 重置密码", id=ids.ADMIN_USER_RESET),
        html.Div(id=ids.ADMIN_USERS_RESULT, className="admin-result", role="status"),
        html.Div(id=ids.ADMIN_USERS_TABLE),
    ]


def devices_layout() -> list:
    return [
        html.H3("Register or attach · 注册或绑定"),
        _field("Device id", dcc.Input(id=ids.ADMIN_DEVICE_ID, type="text", maxLength=64)),
        _field("Courier or vehicle id", dcc.Input(id=ids.ADMIN_DEVICE_OWNER, type="text", maxLength=64)),
        html.Button("Register · 注册", id=ids.ADMIN_DEVICE_REGISTER),
        html.Button("Attach · 绑定", id=ids.ADMIN_DEVICE_ATTACH),
        html.Button(
            "Register seen device and re-ingest its fixes · 注册并重新导入", id=ids.ADMIN_DEVICE_UNKNOWN
        ),
        dcc.Upload(
            html.Button("Bulk CSV · 批量导入"), id=ids.ADMIN_DEVICE_BULK, max_size=rules.MAX_BULK_BYTES
        ),
        html.Div(id=ids.ADMIN_DEVICES_RESULT, className="admin-result", role="status"),
        html.H3("Unknown devices seen · 未注册设备"),
        html.Div(id=ids.ADMIN_UNKNOWN_RESULT, className="admin-result", role="status"),
        dcc.Store(id=ids.ADMIN_DEVICES_REFRESH),
        html.Div(id=ids.ADMIN_UNKNOWN_TABLE),
        html.H3("Devices · 设备"),
        html.Div(id=ids.ADMIN_DEVICES_TABLE),
    ]


def tokens_layout(node_ids: list[str]) -> list:
    return [
        html.H3("New token · 新令牌"),
        dcc.RadioItems(id=ids.ADMIN_TOKEN_KIND, options=["device", "system"], value="device", inline=True),
        _field("Device id or system name", dcc.Input(id=ids.ADMIN_TOKEN_SUBJECT, type="text", maxLength=64)),
        _field("Node (system token)", dcc.Dropdown(id=ids.ADMIN_TOKEN_NODE, options=node_ids)),
        html.Button("Create · 创建", id=ids.ADMIN_TOKEN_CREATE),
        _field("Token id", dcc.Input(id=ids.ADMIN_TOKEN_ID, type="text", maxLength=12)),
        html.Button("Revoke · 吊销", id=ids.ADMIN_TOKEN_REVOKE),
        html.Div(id=ids.ADMIN_TOKENS_RESULT, className="admin-result", role="status"),
        html.Div(id=ids.ADMIN_TOKENS_TABLE),
    ]


def audit_layout() -> list:
    return [
        _field("Action", dcc.Dropdown(id=ids.ADMIN_AUDIT_ACTION, options=list(users.ACTIONS))),
        _field("Contains", dcc.Input(id=ids.ADMIN_AUDIT_TEXT, type="text", maxLength=100)),
        html.Button("Filter · 筛选", id=ids.ADMIN_AUDIT_FILTER),
        html.Button("Download CSV · 下载", id=ids.ADMIN_AUDIT_DOWNLOAD_BUTTON),
        dcc.Download(id=ids.ADMIN_AUDIT_DOWNLOAD),
        html.Div(id=ids.ADMIN_AUDIT_TABLE),
    ]


def page_layout(name: str, viewer, user: dict | None, node_ids: list[str]) -> html.Div:
    """The layout of one administration page for ``viewer`` (a refusal note if they
    may not use it: the page URL itself answers 403 before this is asked for)."""
    if name not in rules.pages_for(viewer):
        return html.Div(html.P("Forbidden · 无权访问"), className="admin-page")
    held = [n for n in node_ids if viewer.holds(n)]
    body = {
        "users": lambda: users_layout(held),
        "devices": devices_layout,
        "tokens": lambda: tokens_layout(held),
        "audit": audit_layout,
    }[name]()
    who = f"{user['name']} · {user['role']} · {user['node_id']}" if user else viewer.label
    return html.Div(
        [nav(viewer), html.P(who, className="admin-user"), html.H2(TITLES[name]), *body],
        className="admin-page",
    )


def validation_layout() -> html.Div:
    """Every component of every page (for Dash's check of the callbacks)."""
    return html.Div([*users_layout([]), *devices_layout(), *tokens_layout([]), *audit_layout()])


def layout_for(model, node_ids: list[str]):
    """The layout of the administration page the browser is on, or ``None`` on any other
    page. Dash asks for the layout with a request of its own: the page is the path of
    its ``Referer`` (sent by the browser under the ``same-origin`` referrer policy)."""
    name = page_of(flask.request.referrer) if flask.has_request_context() else None
    if name is None or name.split("/", 1)[0] in PLAIN:
        return None
    viewer = web.request_viewer(model)
    return page_layout(name, viewer, web.viewer(), node_ids)


def install_page_guard(app, model) -> None:
    """``/admin/<page>``: ``404`` for no such page, ``403`` and an audit line (through the
    ``OutsideScope`` handler) for a viewer without the right. Runs after the sign-in guard."""

    @app.server.before_request
    def _admin_page():
        name = page_of(flask.request.path)
        if name is None or flask.request.method not in ("GET", "HEAD"):
            return None
        if name.split("/", 1)[0] in PLAIN:  # its routes check the right again themselves
            name = name.split("/", 1)[0]
        if name not in rules.PAGES:
            return web.error_response(404, "no such page")
        rules.require_page(web.request_viewer(model), name)
        return None


# -- callbacks --------------------------------------------------------------------------------
def _said(text: str, ok: bool = True) -> html.Span:
    return html.Span(text, className="admin-ok" if ok else "admin-error")


def _clicked() -> str | None:
    trig = dash.ctx.triggered_id
    return trig if isinstance(trig, str) else None


def register(app, store, model, settings) -> None:
    """Attach the callbacks of the four pages."""
    _register_users(app, store, model)
    _register_devices(app, store, model, settings)
    _register_tokens(app, store, model)
    _register_audit(app, store, model)


def _register_users(app, store, model) -> None:
    @app.callback(
        Output(ids.ADMIN_USERS_RESULT, "children"),
        Output(ids.ADMIN_USERS_TABLE, "children"),
        Input(ids.ADMIN_USER_CREATE, "n_clicks"),
        Input(ids.ADMIN_USER_SAVE, "n_clicks"),
        Input(ids.ADMIN_USER_DISABLE, "n_clicks"),
        Input(ids.ADMIN_USER_RESET, "n_clicks"),
        State(ids.ADMIN_USER_ID, "value"),
        State(ids.ADMIN_USER_NAME, "value"),
        State(ids.ADMIN_USER_ROLE, "value"),
        State(ids.ADMIN_USER_NODE, "value"),
        State(ids.ADMIN_USER_GRANT, "value"),
        State(ids.ADMIN_USER_PICK, "value"),
    )
    def users_page(_c, _s, _d, _r, uid, name, role, node, grant, pick):
        viewer = web.request_viewer(model)
        rules.require_page(viewer, "users")
        said, clicked = None, _clicked()
        grant = isinstance(grant, list) and "yes" in grant
        try:
            if clicked == ids.ADMIN_USER_CREATE:
                password = rules.create_user(store, viewer, uid, name, role, node, grant)
                said = _said(f"Created {uid}. Password (shown once): {password}")
            elif clicked == ids.ADMIN_USER_SAVE:
                rules.update_user(store, viewer, pick, role=role, node_id=node, can_see_couriers=grant)
                said = _said(f"Saved {pick}.")
            elif clicked == ids.ADMIN_USER_DISABLE:
                now = users.get_user(store, pick) if isinstance(pick, str) else None
                rules.update_user(store, viewer, pick, disabled=not (now or {}).get("disabled", False))
                said = _said(f"{pick}: {'enabled' if (now or {}).get('disabled') else 'disabled'}.")
            elif clicked == ids.ADMIN_USER_RESET:
                password = rules.reset_password(store, viewer, pick)
                said = _said(f"New password of {pick} (shown once): {password}")
        except rules.AdminError as exc:
            said = _said(str(exc), ok=False)
        return said, table(rules.list_users(store, viewer))


def _register_devices(app, store, model, settings) -> None:
    @app.callback(
        Output(ids.ADMIN_DEVICES_RESULT, "children"),
        Output(ids.ADMIN_DEVICES_TABLE, "children"),
        Output(ids.ADMIN_UNKNOWN_TABLE, "children"),
        Input(ids.ADMIN_DEVICE_REGISTER, "n_clicks"),
        Input(ids.ADMIN_DEVICE_ATTACH, "n_clicks"),
        Input(ids.ADMIN_DEVICE_UNKNOWN, "n_clicks"),
        Input(ids.ADMIN_DEVICE_BULK, "contents"),
        Input(ids.ADMIN_DEVICES_REFRESH, "data"),
        State(ids.ADMIN_DEVICE_ID, "value"),
        State(ids.ADMIN_DEVICE_OWNER, "value"),
    )
    def devices_page(_r, _a, _u, contents, _refresh, device, owner):
        viewer = web.request_viewer(model)
        rules.require_page(viewer, "devices")
        said, clicked = None, _clicked()
        try:
            if clicked in (ids.ADMIN_DEVICE_REGISTER, ids.ADMIN_DEVICE_ATTACH, ids.ADMIN_DEVICE_UNKNOWN):
                courier, vehicle = rules.owner_of(store, owner)
                if clicked == ids.ADMIN_DEVICE_REGISTER:
                    rules.register_device(store, viewer, device, courier, vehicle)
                    said = _said(f"Registered {device} for {owner}.")
                elif clicked == ids.ADMIN_DEVICE_ATTACH:
                    rules.attach_device(store, viewer, device, courier, vehicle)
                    said = _said(f"Attached {device} to {owner}.")
                else:
                    done = rules.register_unknown(
                        store, viewer, device, courier, vehicle, local_tz=settings.local_tz
                    )
                    said = _said(
                        f"Registered {device} for {owner}: {done.stored} fixes stored, "
                        f"{done.duplicates} already stored, {done.still_refused} still refused."
                    )
            elif clicked == ids.ADMIN_DEVICE_BULK:
                result = rules.bulk_devices(store, viewer, _upload_bytes(contents))
                lines = [f"line {n}: {why}" for n, why in result.refused[:50]]
                said = html.Div(
                    [
                        _said(
                            f"{result.registered} devices registered or attached, {len(result.refused)} lines refused."
                        )
                    ]
                    + [html.Div(t) for t in lines]
                )
        except rules.AdminError as exc:
            said = _said(str(exc), ok=False)
        devices = table(rules.list_devices(store, viewer))
        unknown = unknown_table(rules.unknown_devices(store, viewer), rules.owners(store, viewer))
        return said, devices, unknown

    @app.callback(
        Output(ids.ADMIN_UNKNOWN_RESULT, "children"),
        Output(ids.ADMIN_DEVICES_REFRESH, "data"),
        Input({"type": ids.ADMIN_UNKNOWN_REGISTER, "device": ALL}, "n_clicks"),
        State({"type": ids.ADMIN_UNKNOWN_OWNER, "device": ALL}, "value"),
        prevent_initial_call=True,
    )
    def register_seen(_clicks, _owners):
        viewer = web.request_viewer(model)
        rules.require_page(viewer, "devices")
        clicked = dash.ctx.triggered_id
        # Dash also calls this when the table is drawn again (its buttons go): no click
        if not isinstance(clicked, dict) or not dash.ctx.triggered[0].get("value"):
            raise PreventUpdate
        device = clicked.get("device")
        owner = next(
            (s.get("value") for s in dash.ctx.states_list[0] if s.get("id", {}).get("device") == device), None
        )
        try:
            done = rules.register_seen(store, viewer, device, owner, local_tz=settings.local_tz)
        except rules.AdminError as exc:
            return _said(str(exc), ok=False), dash.no_update
        said = _said(
            f"Registered {device} for {owner}: {done.stored} fixes stored, "
            f"{done.duplicates} already stored, {done.still_refused} still refused."
        )
        return said, uuid.uuid4().hex


def _upload_bytes(contents) -> bytes:
    """The bytes of a ``dcc.Upload`` value (``data:...;base64,...``)."""
    import base64
    import binascii

    if not isinstance(contents, str) or "," not in contents:
        raise rules.AdminError("choose a CSV file")
    try:
        return base64.b64decode(contents.split(",", 1)[1], validate=False)
    except (binascii.Error, ValueError):
        raise rules.AdminError("the file could not be read") from None


def _register_tokens(app, store, model) -> None:
    @app.callback(
        Output(ids.ADMIN_TOKENS_RESULT, "children"),
        Output(ids.ADMIN_TOKENS_TABLE, "children"),
        Input(ids.ADMIN_TOKEN_CREATE, "n_clicks"),
        Input(ids.ADMIN_TOKEN_REVOKE, "n_clicks"),
        State(ids.ADMIN_TOKEN_KIND, "value"),
        State(ids.ADMIN_TOKEN_SUBJECT, "value"),
        State(ids.ADMIN_TOKEN_NODE, "value"),
        State(ids.ADMIN_TOKEN_ID, "value"),
    )
    def tokens_page(_c, _r, kind, subject, node, token_id):
        viewer = web.request_viewer(model)
        rules.require_page(viewer, "tokens")
        said, clicked = None, _clicked()
        try:
            if clicked == ids.ADMIN_TOKEN_CREATE:
                token = rules.create_token(store, viewer, kind, subject, node)
                said = _said(f"Token (shown once): {token}")
            elif clicked == ids.ADMIN_TOKEN_REVOKE:
                rules.revoke_token(store, viewer, token_id)
                said = _said(f"Revoked {token_id}.")
        except rules.AdminError as exc:
            said = _said(str(exc), ok=False)
        frame = rules.list_tokens(store, viewer)
        return said, table(frame)


def _register_audit(app, store, model) -> None:
    @app.callback(
        Output(ids.ADMIN_AUDIT_TABLE, "children"),
        Output(ids.ADMIN_AUDIT_DOWNLOAD, "data"),
        Input(ids.ADMIN_AUDIT_FILTER, "n_clicks"),
        Input(ids.ADMIN_AUDIT_DOWNLOAD_BUTTON, "n_clicks"),
        State(ids.ADMIN_AUDIT_ACTION, "value"),
        State(ids.ADMIN_AUDIT_TEXT, "value"),
    )
    def audit_page(_f, _d, action, text):
        viewer = web.request_viewer(model)
        rules.require_page(viewer, "audit")
        download = dash.no_update
        if _clicked() == ids.ADMIN_AUDIT_DOWNLOAD_BUTTON:
            download = dict(content=rules.audit_csv(store, viewer, action, text), filename="emap-audit.csv")
        return table(rules.audit_lines(store, viewer, action, text)), download
