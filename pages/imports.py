"""The imports page (``/admin/imports``): import a CSV or Parquet file from the browser,
follow its progress, read its counts and download its rejected rows; the history of
imports below.

A plain server-rendered page (like ``/schedules``) on the dashboard's Flask server and
behind its sign-in guard, not a Dash callback: ``dcc.Upload`` would base64 the whole
file into the page and the callback request, where a file of several GB does not fit.
Here the browser sends the file itself as the body of one ``POST`` (``imports.js``, with
the session's CSRF token in a header), which :mod:`data.ingest.uploads` copies to a spool
file in chunks; without scripts, the form posts ``multipart/form-data``, which the web
server spools to a temporary file. The server shares the ingest API's
:class:`~data.ingest.uploads.Uploads`, so one import runs at a time, whichever way it
came. Every rule is in :mod:`views.imports`, with the request's viewer; names from data
are escaped as text.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from datetime import UTC
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson
from flask import Response, redirect, request, send_file, session
from markupsafe import Markup

from auth import web
from data.ingest.importer import KINDS, ImportFileError
from pages.admin import PREFIX, TITLES
from views import admin as rules
from views import imports as imp

PATH = PREFIX + "imports"
SCRIPT = Path(__file__).with_name("imports.js")
#: Rejected rows shown on the page after an import (all of them are in the download).
SHOWN_REJECTED = 20
_STYLE = """body{font-family:system-ui,sans-serif;margin:16px 24px;color:#222}nav a{margin-right:14px}
table{border-collapse:collapse;margin:8px 0 24px}th,td{border-bottom:1px solid #ddd;padding:4px 8px;
text-align:left;vertical-align:top;font-size:13px}td.n{text-align:right}.err{color:#b00020}
#import-drop{border:2px dashed #889;border-radius:6px;padding:18px;margin:8px 0;max-width:640px}
#import-drop.over{background:#eef3ff;border-color:#36c}label{margin-right:10px;font-size:13px}
.hint{color:#555;font-size:13px}progress{width:320px}"""


def _csrf() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def _csrf_ok(sent) -> bool:
    kept = session.get("csrf", "")
    return bool(kept) and hmac.compare_digest(str(sent or ""), str(kept))


def _local(settings, ts) -> str:
    if ts is None:
        return ""
    return ts.replace(tzinfo=UTC).astimezone(ZoneInfo(settings.local_tz)).strftime("%Y-%m-%d %H:%M:%S")


def _nav(viewer) -> Markup:
    links = [Markup('<a href="/">Map · 地图</a>')]
    links += [Markup('<a href="{}">{}</a>').format(PREFIX + p, TITLES[p]) for p in rules.pages_for(viewer)]
    if viewer.may_act:
        links.append(Markup('<a href="/schedules">Scheduled reports · 定时报表</a>'))
    return Markup('<nav id="admin-nav" class="admin-nav">{}</nav>').format(Markup(" ").join(links))


def _form(viewer, csrf: str) -> Markup:
    kinds = Markup("").join(Markup('<option value="{0}">{0}</option>').format(k) for k in KINDS)
    where = (
        Markup("any node · 全部")
        if rules.is_admin(viewer)
        else Markup("inside <b>{}</b> only: rows outside it are rejected with the reason").format(viewer.root)
    )
    return Markup(
        """<form id="import-form" method="post" action="{path}" enctype="multipart/form-data">
<input type="hidden" name="csrf" value="{csrf}">
<div id="import-drop">Drop a CSV or Parquet file here, or choose one · 拖放或选择文件<br>
<input type="file" id="import-file" name="file" accept=".csv,.tsv,.parquet,text/csv" required></div>
<label>Kind · 类型 <select name="kind" id="import-kind"><option value="">from its name or columns</option>
{kinds}</select></label>
<button type="submit" id="import-submit">Import · 导入</button></form>
<p class="hint">Records go to {where}. Re-importing a file stores nothing twice.</p>
<div id="import-progress" role="status" hidden><progress id="import-bar"></progress>
<span id="import-progress-text"></span></div>
<p id="import-error" class="err" role="alert"></p>"""
    ).format(path=PATH, csrf=csrf, kinds=kinds, where=where)


def _report_link(row: dict) -> Markup:
    if not row["rejected"]:
        return Markup("–")
    return Markup('<a class="import-report" href="{}/{}/rejected.csv">rejected rows (CSV)</a>').format(
        PATH, quote(row["import_id"])
    )


def _result(store, viewer, done: str | None) -> Markup:
    """The counts and first rejected rows of the import just made (``?done=<id>``)."""
    if not done:
        return Markup("")
    row, rejected = imp.rejected(store, viewer, done, SHOWN_REJECTED)
    lines = Markup("").join(
        Markup('<tr><td class="n">{}</td><td>{}</td><td><code>{}</code></td></tr>').format(n, why, raw)
        for n, why, raw in rejected.iter_rows()
    )
    table = (
        Markup(
            '<table id="import-rejected"><thead><tr><th>Row</th><th>Reason</th><th>Record</th></tr></thead>'
            "<tbody>{}</tbody></table>"
        ).format(lines)
        if lines
        else Markup("")
    )
    return Markup(
        '<section id="import-result" data-import="{id}"><h3>{name}: {kind}</h3><p>'
        '<span id="import-rows">{rows}</span> rows = <span id="import-accepted">{acc}</span> accepted + '
        '<span id="import-rejected-count">{rej}</span> rejected + <span id="import-duplicates">{dup}</span> '
        "duplicates ({secs:.1f} s). {link}</p>{table}</section>"
    ).format(
        id=row["import_id"],
        name=row["file_name"],
        kind=row["kind"],
        rows=row["rows"],
        acc=row["accepted"],
        rej=row["rejected"],
        dup=row["duplicates"],
        secs=row["seconds"] or 0.0,
        link=_report_link(row),
        table=table,
    )


def _history(store, settings, viewer) -> Markup:
    rows = Markup("").join(
        Markup(
            '<tr data-import="{id}"><td>{at}</td><td>{who}</td><td>{ch}</td><td>{name}</td><td>{kind}</td>'
            '<td>{node}</td><td class="n">{rows}</td><td class="n">{acc}</td><td class="n">{rej}</td>'
            '<td class="n">{dup}</td><td class="n">{mb:,.1f}</td><td class="n">{secs:,.1f}</td><td>{link}</td></tr>'
        ).format(
            id=r["import_id"],
            at=_local(settings, r["started_at"]),
            who=r["user_id"],
            ch=r["channel"],
            name=r["file_name"],
            kind=r["kind"] or "",
            node=r["scope_node"] or "any",
            rows=r["rows"],
            acc=r["accepted"],
            rej=r["rejected"],
            dup=r["duplicates"],
            mb=(r["bytes"] or 0) / 1e6,
            secs=r["seconds"] or 0.0,
            link=_report_link(r),
        )
        for r in imp.visible(store, viewer).iter_rows(named=True)
    )
    return Markup(
        '<table id="imports-history"><thead><tr><th>Started</th><th>Who</th><th>Via</th><th>File</th>'
        "<th>Kind</th><th>Node</th><th>Rows</th><th>Accepted</th><th>Rejected</th><th>Duplicates</th>"
        "<th>MB</th><th>Seconds</th><th>Quarantine report</th></tr></thead><tbody>{}</tbody></table>"
    ).format(rows)


def page_html(store, settings, viewer, done: str | None = None, message: str = "") -> str:
    """The page for ``viewer``: the form, the import just made, the history they may see."""
    user = web.viewer()
    who = f"{user['name']} · {user['role']} · {user['node_id']}" if user else viewer.label
    err = Markup('<p class="err" role="alert" id="import-message">{}</p>').format(message) if message else ""
    return str(
        Markup(
            "<!doctype html><html><head><meta charset='utf-8'><title>EMAP · Imports</title>"
            "<style>{style}</style></head><body class='admin-page'>{nav}<p class='admin-user'>{who}</p>"
            "<h2>{title}</h2>{err}{form}{result}<h3>History · 导入记录</h3>{history}"
            "<p class='hint'>Times are local ({tz}).</p>"
            '<script src="{path}/upload.js"></script></body></html>'
        ).format(
            style=Markup(_STYLE),
            nav=_nav(viewer),
            who=who,
            title=TITLES["imports"],
            err=err,
            form=_form(viewer, _csrf()),
            result=_result(store, viewer, done),
            history=_history(store, settings, viewer),
            tz=settings.local_tz,
            path=PATH,
        )
    )


class Progress:
    """The running import's progress, for the page's polling: who started it, the bytes
    received and the rows done (one import runs at a time, so one record is enough)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._now: dict = {}

    def start(self, who: str, name: str) -> bool:
        """Follow a new import; False while another is followed (it will be refused busy)."""
        with self._lock:
            if self._now:
                return False
            self._now = {"who": who, "name": name, "bytes": 0, "rows": None, "total": None}
            return True

    def update(self, **values) -> None:
        with self._lock:
            if self._now:
                self._now.update(values)

    def done(self) -> None:
        with self._lock:
            self._now = {}

    def of(self, who: str) -> dict | None:
        with self._lock:
            return dict(self._now) if self._now.get("who") == who else None


class _Counted:
    """A request body read through, counting the bytes for the progress."""

    def __init__(self, stream, progress: Progress):
        self.stream, self.progress, self.bytes = stream, progress, 0

    def read(self, n: int = -1) -> bytes:
        chunk = self.stream.read(n)
        self.bytes += len(chunk)
        self.progress.update(bytes=self.bytes)
        return chunk


#: The answer to each reason an import does not happen (nothing was stored): 400 for others.
_STATUS = {imp.ImportBusy: 409, imp.TooLarge: 413}


def _sent():
    """``(stream, file name, kind)`` of the request, or ``(status, message)`` if its CSRF
    token is wrong or it holds no file. The page's script sends the file as the body and
    the token in a header; the form without scripts posts ``multipart/form-data``."""
    if request.mimetype == "multipart/form-data":
        if not _csrf_ok(request.form.get("csrf")):
            return 400, "the form expired: load the page again"
        sent = request.files.get("file")
        if sent is None or not sent.filename:
            return 400, "choose a CSV or Parquet file"
        return sent.stream, sent.filename, request.form.get("kind")
    if not _csrf_ok(request.headers.get("X-CSRF-Token")):
        return 400, "the page expired: load it again"
    return request.stream, request.args.get("name"), request.args.get("kind")


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


def register(app, model, store, settings, uploads=None) -> None:
    """Add the page's routes to ``app``'s Flask server; ``uploads`` is the ingest API's
    (one import at a time for the whole server), or one of the page's own."""
    server = app.server
    uploads = uploads if uploads is not None else imp.Uploads(store, settings)
    progress = Progress()

    def show():
        viewer = web.request_viewer(model)
        rules.require_page(viewer, imp.PAGE)
        return Response(page_html(store, settings, viewer, request.args.get("done")), mimetype="text/html")

    def refused(viewer, status: int, message: str):
        if _wants_json():
            return web.error_response(status, message)
        return Response(page_html(store, settings, viewer, message=message), status, mimetype="text/html")

    def upload():
        viewer = web.request_viewer(model)
        rules.require_page(viewer, imp.PAGE)  # a viewer role: 403 and an audit line
        if request.content_length is not None and request.content_length > uploads.max_bytes:
            return refused(
                viewer, 413, f"the file is larger than {uploads.max_bytes:,} bytes; nothing was stored"
            )
        sent = _sent()
        if isinstance(sent, tuple) and isinstance(sent[0], int):
            return refused(viewer, *sent)
        stream, name, kind = sent
        followed = progress.start(viewer.label, imp.file_name(name))
        try:
            result = imp.import_file(
                store,
                uploads,
                viewer,
                _Counted(stream, progress),
                name,
                kind,
                progress=lambda done, total: progress.update(rows=done, total=total),
            )
        except (imp.ImportBusy, imp.TooLarge, ImportFileError, rules.AdminError) as exc:
            return refused(viewer, _STATUS.get(type(exc), 400), str(exc)[:300])
        finally:
            if followed:
                progress.done()
        shown = f"{PATH}?done={quote(result.import_id or '')}"
        if _wants_json():
            return Response(orjson.dumps({**result.as_json(), "page": shown}), mimetype="application/json")
        return redirect(shown, 303)

    def status():
        viewer = web.request_viewer(model)
        rules.require_page(viewer, imp.PAGE)
        mine = progress.of(viewer.label)
        body = {"busy": uploads.busy, "mine": mine is not None}
        if mine is not None:
            body.update({k: mine[k] for k in ("bytes", "rows", "total")})
        return Response(orjson.dumps(body), mimetype="application/json")

    def report(import_id: str):
        viewer = web.request_viewer(model)
        name, text = imp.quarantine_csv(store, viewer, import_id)
        return Response(
            text,
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"},
        )

    def script():
        return send_file(SCRIPT, mimetype="text/javascript", max_age=0)

    server.add_url_rule(PATH, "emap_imports", show, methods=["GET"])
    server.add_url_rule(PATH, "emap_imports_upload", upload, methods=["POST"])
    server.add_url_rule(f"{PATH}/progress", "emap_imports_progress", status, methods=["GET"])
    server.add_url_rule(f"{PATH}/<import_id>/rejected.csv", "emap_imports_report", report, methods=["GET"])
    server.add_url_rule(f"{PATH}/upload.js", "emap_imports_script", script, methods=["GET"])
