"""The scheduled-reports page (``/schedules``): create, list, pause, resume and delete
report schedules, and download their outputs.

A plain server-rendered page with forms (no Dash callbacks: nothing here needs the
map's state), on the dashboard's Flask server and behind its sign-in guard. Every
request resolves its viewer from the server-side session (``auth.web.request_viewer``)
and every action goes through ``views.schedules``, which clamps it to that viewer: the
download checks the schedule's node against the viewer, finds the file by its recorded
name (never a path from the request) and sends it as an attachment. Names from data
are escaped as text.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC
from urllib.parse import quote
from zoneinfo import ZoneInfo

from flask import Response, redirect, request, send_file, session
from markupsafe import Markup

from auth import web
from reports import MIME
from views import schedules as sched

PATH = "/schedules"
_STYLE = """body{font-family:system-ui,sans-serif;margin:16px 24px;color:#222}table{border-collapse:collapse;
margin:8px 0 24px}th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top;
font-size:13px}form.inline{display:inline}label{margin-right:10px;font-size:13px}.err{color:#b00020}
.stopped{color:#b00020}.paused{color:#8a6d00}ul{margin:0;padding-left:16px}"""


def _csrf() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def _csrf_ok() -> bool:
    sent, kept = request.form.get("csrf", ""), session.get("csrf", "")
    return bool(kept) and hmac.compare_digest(str(sent), str(kept))


def _local(settings, ts) -> str:
    if ts is None:
        return ""
    return ts.replace(tzinfo=UTC).astimezone(ZoneInfo(settings.local_tz)).strftime("%Y-%m-%d %H:%M")


def _options(values, chosen) -> Markup:
    return Markup("").join(
        Markup('<option value="{0}"{1}>{0}</option>').format(v, Markup(" selected") if v == chosen else "")
        for v in values
    )


def _form(viewer, names: dict, node: str, csrf: str) -> Markup:
    from layers.hexes import METRICS

    held = sorted(n for n in viewer.nodes if n in names)
    datalist = Markup("").join(
        Markup('<option value="{}">{}</option>').format(n, names.get(n, "")) for n in held
    )
    return Markup(
        """<h2>New schedule</h2><form method="post" action="{path}" id="schedule-form">
<input type="hidden" name="csrf" value="{csrf}">
<label>Node <input name="node" list="schedule-nodes" value="{node}" required size="12"></label>
<datalist id="schedule-nodes">{datalist}</datalist>
<label>Metric <select name="metric">{metrics}</select></label>
<label>Period <select name="period">{periods}</select></label>
<label>Format <select name="format">{formats}</select></label>
<label>Time (local) <input name="time" value="06:00" pattern="[0-2][0-9]:[0-5][0-9]" size="5"></label>
<label>Keep <input name="keep" type="number" min="1" max="{kmax}" value="7" size="3"></label>
<label>Language <select name="lang">{langs}</select></label>
<button type="submit">Create</button></form>"""
    ).format(
        path=PATH,
        csrf=csrf,
        node=node,
        datalist=datalist,
        metrics=_options(METRICS, "scans"),
        periods=_options(sched.PERIODS, "day"),
        formats=_options(sched.FORMATS, "pdf"),
        kmax=sched.KEEP_MAX,
        langs=_options(sched.LANGS, "zh"),
    )


def _status(s: dict) -> Markup:
    if s["stopped"]:
        return Markup('<span class="stopped">stopped: {}</span>').format(s["stopped"])
    if s["paused"]:
        return Markup('<span class="paused">paused</span>')
    return Markup("active")


def _actions(s: dict, csrf: str) -> Markup:
    which = ["resume" if (s["paused"] or s["stopped"]) else "pause", "delete"]
    return Markup("").join(
        Markup(
            '<form class="inline" method="post" action="{path}/{sid}/{a}">'
            '<input type="hidden" name="csrf" value="{csrf}"><button type="submit" name="do" value="{a}">{a}'
            "</button></form> "
        ).format(path=PATH, sid=s["schedule_id"], a=a, csrf=csrf)
        for a in which
    )


def _outputs(s: dict) -> Markup:
    if not s["held"]:
        return Markup("<em>outside your nodes</em>")
    items = Markup("").join(
        Markup(
            '<li><a class="output" href="{path}/{sid}/files/{q}?node={node}">{name}</a> ({kb:,.0f} kB)</li>'
        ).format(
            path=PATH,
            sid=s["schedule_id"],
            name=o["file_name"],
            q=quote(o["file_name"]),
            node=quote(s["node_id"]),
            kb=o["bytes"] / 1024,
        )
        for o in s["outputs"]
    )
    return Markup("<ul>{}</ul>").format(items) if items else Markup("<em>none yet</em>")


def _row(settings, s: dict, names: dict, csrf: str) -> Markup:
    return Markup(
        '<tr data-schedule="{sid}"><td>{sid}</td><td>{name} <small>{node}</small></td><td>{metric}</td>'
        "<td>{period} at {at}</td><td>{fmt}</td><td>{keep}</td><td>{by}</td><td>{status}</td>"
        '<td>{last}</td><td class="err">{error}</td><td>{outputs}</td><td>{actions}</td></tr>'
    ).format(
        sid=s["schedule_id"],
        name=names.get(s["node_id"], ""),
        node=s["node_id"],
        metric=s["metric"],
        period=s["period"],
        at=s["at_time"],
        fmt=s["format"],
        keep=s["keep"],
        by=s["created_by"],
        status=_status(s),
        last=_local(settings, s["last_run_at"]),
        error=s["last_error"] or "",
        outputs=_outputs(s),
        actions=_actions(s, csrf),
    )


def page_html(store, settings, viewer, node: str | None = None, message: str = "") -> str:
    """The page for ``viewer``: their schedules (see ``views.schedules.visible``), the form."""
    nodes = store.nodes()
    names = dict(zip(nodes["node_id"].to_list(), nodes["name"].to_list(), strict=True))
    csrf = _csrf()
    rows = Markup("").join(_row(settings, s, names, csrf) for s in sched.visible(store, viewer))
    err = Markup('<p class="err" role="alert">{}</p>').format(message) if message else ""
    return str(
        Markup(
            "<!doctype html><html><head><meta charset='utf-8'><title>EMAP · Scheduled reports</title>"
            "<style>{style}</style></head><body><p><a href='/'>← Map</a></p><h1>Scheduled reports</h1>{err}"
            '<table id="schedules"><thead><tr><th>Id</th><th>Node</th><th>Metric</th><th>Period</th>'
            "<th>Format</th><th>Keep</th><th>Creator</th><th>Status</th><th>Last output</th><th>Last error</th>"
            "<th>Outputs</th><th></th></tr></thead><tbody>{rows}</tbody></table>{form}"
            "<p><small>Times are local ({tz}). A schedule runs as its creator, with the creator's "
            "rights at the time it runs.</small></p></body></html>"
        ).format(
            style=Markup(_STYLE),
            err=err,
            rows=rows,
            form=_form(viewer, names, node if viewer.holds(node) else viewer.root, csrf),
            tz=settings.local_tz,
        )
    )


def register(app, model, store, settings) -> None:
    """Add the page's routes to ``app``'s Flask server."""
    server = app.server

    def show():
        viewer = web.request_viewer(model)
        if request.method == "GET":
            return Response(
                page_html(store, settings, viewer, request.args.get("node")), mimetype="text/html"
            )
        if not _csrf_ok():
            return web.error_response(400, "the form expired: load the page again")
        f = request.form
        try:
            sched.create(
                store,
                viewer,
                f.get("node", "").strip(),
                f.get("metric"),
                f.get("period"),
                f.get("format"),
                f.get("time"),
                f.get("keep"),
                f.get("lang", "zh"),
            )
        except sched.ScheduleError as exc:
            html = page_html(store, settings, viewer, message=str(exc))
            return Response(html, 400, mimetype="text/html")
        return redirect(PATH, 303)

    def act(schedule_id: str, action: str):
        viewer = web.request_viewer(model)
        if not _csrf_ok():
            return web.error_response(400, "the form expired: load the page again")
        try:
            sched.change(store, settings, viewer, schedule_id, action)
        except sched.ScheduleError as exc:
            return web.error_response(400, str(exc))
        except LookupError as exc:
            return web.error_response(404, str(exc))
        return redirect(PATH, 303)

    def download(schedule_id: str, name: str):
        viewer = web.request_viewer(model)
        try:
            path, name, fmt = sched.output_file(store, settings, viewer, schedule_id, name)
        except (LookupError, sched.ScheduleError):
            return web.error_response(404, "no such output")
        return send_file(path, mimetype=MIME[fmt], as_attachment=True, download_name=name, max_age=0)

    server.add_url_rule(PATH, "emap_schedules", show, methods=["GET", "POST"])
    server.add_url_rule(f"{PATH}/<schedule_id>/<action>", "emap_schedule_action", act, methods=["POST"])
    server.add_url_rule(f"{PATH}/<schedule_id>/files/<name>", "emap_schedule_file", download, methods=["GET"])
