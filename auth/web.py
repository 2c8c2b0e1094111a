"""Login, logout, sessions and the request guard of the dashboard.

:func:`install` puts every request of a Dash app behind a login and checks, before any
callback runs, that every node a request names (the view state, the URL, the drill-down
choice, breadcrumb and suggestion buttons) lies inside the user's subtree; a request
naming another node gets ``403`` with no data and a line in the audit log.
:func:`security_headers` adds the security headers to every response.

The session is Flask's signed cookie (HttpOnly, SameSite=Lax); its key comes from the
environment variable ``EMAP_SECRET_KEY``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import secrets
import threading
import time
from datetime import timedelta
from urllib.parse import parse_qs, quote, unquote, urlencode

import orjson
from flask import Response, current_app, g, has_request_context, redirect, request, session
from markupsafe import escape

from auth import scope as sc
from auth import users
from auth.viewer import OutsideScope, Viewer

log = logging.getLogger(__name__)

SECRET_ENV = "EMAP_SECRET_KEY"
#: Seconds a server trusts its memory of a session before reading it again.
SESSION_RECHECK_SECONDS = 2.0
CALLBACK_PATH = "/_dash-update-component"
#: Paths reachable without a session: the login page and the token-authenticated ingest API.
PUBLIC_PREFIXES = ("/login", "/api/v1/", "/osmand")
#: Exact paths reachable without a session: ``/metrics`` has its own bearer token
#: (``EMAP_METRICS_TOKEN``; observe/routes.py), and a scraper cannot sign in. Exact, not a
#: prefix: any other path under it is a page of the dashboard, which needs a session.
PUBLIC_PATHS = frozenset({"/metrics"})


class LoginLimiter:
    """Failed sign-ins per key within a sliding window, kept in the store (the
    ``login_failures`` table), so that the limit survives a restart and holds across
    every process of the same store.

    Examples
    --------
    >>> lim = LoginLimiter(store, max_failures=2, window=60)  # doctest: +SKIP
    >>> lim.failed("k"); lim.failed("k"); lim.blocked("k")  # doctest: +SKIP
    True
    """

    def __init__(self, store, max_failures: int = 5, window: float = 300.0):
        self.store = store
        self.max_failures = max_failures
        self.window = window

    def blocked(self, key: str, limit: int | None = None) -> bool:
        return users.login_failures(self.store, key, self.window) >= (limit or self.max_failures)

    def failed(self, *keys: str) -> None:
        users.failed_login(self.store, keys, self.window)

    def reset(self, key: str) -> None:
        users.clear_login_failures(self.store, key)


def viewer() -> dict | None:
    """The signed-in user of the current request (None in an open app or outside a request)."""
    return g.get("emap_user") if has_request_context() else None


def request_viewer(model) -> Viewer:
    """The :class:`~auth.viewer.Viewer` of the current request, resolved from the
    server-side session by the guard. In an open app (no sign-in, tests and benchmarks on
    loopback) and outside a request: ``model.everyone()``. In an app with sign-in, a
    request that reached a callback without a resolved viewer is refused (fail closed).
    """
    if has_request_context():
        v = g.get("emap_viewer")
        if v is not None:
            return v
        if "emap_access" in current_app.extensions:
            raise OutsideScope("no signed-in viewer")
    return model.everyone()


def content_security_policy(app) -> str:
    """The CSP the dashboard works under: scripts only from the server (plus the hashes of
    Dash's inline bootstrap scripts); plotly's map needs ``blob:`` workers; inline styles
    are set by Dash components; tiles and glyphs may come from any HTTPS server."""
    hashes = " ".join(app.csp_hashes()) if hasattr(app, "csp_hashes") else ""
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' {hashes}".strip(),
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob: https:",
            "connect-src 'self' https:",
            "font-src 'self' data:",
            "worker-src 'self' blob:",
            "child-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(app) -> None:
    """Add CSP, frame, sniffing and referrer headers to every response of ``app``."""
    holder: dict[str, str] = {}

    @app.server.after_request
    def _headers(resp: Response) -> Response:
        if "csp" not in holder:  # computed once every callback is registered
            holder["csp"] = content_security_policy(app)
        resp.headers.setdefault("Content-Security-Policy", holder["csp"])
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        return resp


def _secret_key() -> str:
    key = os.environ.get(SECRET_ENV)
    if key:
        return key
    log.warning(
        "%s is not set: using a random session key for this run; sessions will not survive a restart.",
        SECRET_ENV,
    )
    return secrets.token_hex(32)


_SAFE_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*")


def _safe_next(target) -> str:
    """Only a path of this site may follow the sign-in (no open redirect): ``/`` for
    anything else. A path is refused if it, or it percent-decoded, holds a control
    character, white space or a backslash, or starts with ``//`` (browsers drop tabs and
    new lines and read ``/\\`` as ``//``, both of which lead off-site).

    Examples
    --------
    >>> [_safe_next(t) for t in ("/?node=b-1", "//evil.example", "/\\t/evil.example", "/%09/x", "https://x")]
    ['/?node=b-1', '/', '/', '/', '/']
    """
    if not isinstance(target, str) or len(target) > 2000:
        return "/"
    decoded = unquote(target)
    for t in (target, decoded):
        if not _SAFE_PATH.fullmatch(t) or t.startswith("//"):
            return "/"
    return target


def _networks(spec: str) -> tuple:
    """The networks of ``EMAP_TRUSTED_PROXIES`` (``ValueError`` naming a bad entry)."""
    out = []
    for part in (spec or "").split(","):
        part = part.strip()
        if part:
            try:
                out.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(
                    f"EMAP_TRUSTED_PROXIES: {part!r} is not an address or a network (e.g. 10.0.0.0/8)"
                ) from None
    return tuple(out)


def _address(text: str):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def client_address(remote: str | None, forwarded: str | None, trusted: tuple) -> str:
    """The client of a request: the socket peer, or, when that peer is a trusted proxy,
    the nearest address of ``X-Forwarded-For`` (read from the right) that is not one.

    Examples
    --------
    >>> nets = _networks("127.0.0.1")
    >>> client_address("127.0.0.1", "203.0.113.9, 198.51.100.7", nets)
    '198.51.100.7'
    >>> client_address("198.51.100.7", "10.9.9.9", nets)  # not a trusted peer: its header is ignored
    '198.51.100.7'
    """
    peer = _address(remote or "")
    if peer is None:
        return remote or "?"
    if not forwarded or not any(peer in n for n in trusted):
        return str(peer)
    for hop in reversed(forwarded.split(",")[-32:]):
        addr = _address(hop)
        if addr is None:
            return str(peer)  # a garbled chain: trust only what we saw ourselves
        if not any(addr in n for n in trusted):
            return str(addr)
    return str(peer)


def _client_ip() -> str:
    access = current_app.extensions.get("emap_access") if has_request_context() else None
    trusted = access.trusted if access is not None else ()
    return client_address(request.remote_addr, request.headers.get("X-Forwarded-For"), trusted)


def error_response(status: int, message: str) -> Response:
    """A JSON error answer (the security headers are added after every request)."""
    return Response(orjson.dumps({"error": message}), status, mimetype="application/json")


class Access:
    """The sign-in pages and request guard of one app on one store.

    Parameters
    ----------
    store : data.store.database.Store
        Holds the ``users``, ``sessions``, ``login_failures`` and ``audit_log`` tables
        (created if missing).
    settings : config.Settings
        ``session_hours``, ``cookie_secure``, ``login_max_failures``,
        ``login_window_seconds``, ``trusted_proxies``.
    """

    def __init__(self, store, settings, callbacks: dict | None = None, state_id: str = "", acting=None):
        self.store = store
        self.settings = settings
        users.ensure_tables(store)
        nodes = store.nodes()
        ids_ = nodes["node_id"].to_list()
        self.parents = dict(zip(ids_, nodes["parent_id"].to_list(), strict=True))
        self.levels = dict(zip(ids_, nodes["level"].to_list(), strict=True))
        self.top = sc.tree_root(self.parents)
        self.limiter = LoginLimiter(store, settings.login_max_failures, settings.login_window_seconds)
        self.trusted = _networks(settings.trusted_proxies)
        self._lock = threading.Lock()
        self._sessions: dict = {}  # token -> (monotonic time read, user row, sessions epoch)
        self._viewers: dict = {}  # (user, role, node, grant) -> Viewer
        #: The app's callbacks (``dash.Dash.callback_map``): the guard checks a callback
        #: request against what the callback declares, by position, as Dash reads it.
        self.callbacks = callbacks if callbacks is not None else {}
        #: The view state's component id, and the outputs that act rather than read
        #: (output id -> what it does): given by the app from its id constants.
        self.state_id = state_id
        self.acting = dict(acting or {})

    # -- who ------------------------------------------------------------------------------
    def current(self) -> dict | None:
        """The user of the request's live server-side session (None: signed out).

        A page load sends dozens of requests at once, so a session's row is remembered
        for :data:`SESSION_RECHECK_SECONDS`; signing out here forgets it at once, and a
        change made elsewhere (a disabled user, a reset password) holds within that time.
        """
        token = session.get("sid")
        if not isinstance(token, str):
            return None
        now, epoch = time.monotonic(), users.sessions_epoch(self.store)
        with self._lock:
            hit = self._sessions.get(token)
        if hit is not None and now - hit[0] < SESSION_RECHECK_SECONDS and hit[2] == epoch:
            return hit[1]
        user = users.session_user(self.store, token)
        with self._lock:
            if len(self._sessions) > 10_000:  # bounded under a flood of tokens
                self._sessions.clear()
            if user is None:
                self._sessions.pop(token, None)
            else:
                self._sessions[token] = (now, user, epoch)
        if user is None:
            session.clear()
        return user

    def forget(self, token) -> None:
        with self._lock:
            self._sessions.pop(token, None)

    def viewer_of(self, user: dict) -> Viewer:
        """The user's viewer (kept per role, node and grant: working out a subtree walks
        the tree)."""
        key = (user["user_id"], user["role"], user["node_id"], bool(user.get("can_see_couriers")))
        with self._lock:
            v = self._viewers.get(key)
        if v is None:
            v = Viewer.for_user(user, self.parents, self.levels)
            with self._lock:
                if len(self._viewers) > 10_000:
                    self._viewers.clear()
                self._viewers[key] = v
        return v

    def refuse(self, who: str | None, reason: str, status: int = 403) -> Response:
        """An error answer. A 403 (a node or right the user does not hold) is written to
        the audit log; a malformed request (400) only to the server's log, so that a
        client sending junk cannot fill the audit log."""
        line = f"{request.method} {request.path[:200]}: {reason} (from {_client_ip()})"
        if status == 403:
            users.audit(self.store, who, "refusal", line)
        else:
            log.info("refused %s: %s", who, line)
        return error_response(status, "forbidden" if status == 403 else reason)

    # -- the guard ------------------------------------------------------------------------
    def guard(self):
        path = request.path
        if path.startswith(PUBLIC_PREFIXES) or path in PUBLIC_PATHS:
            return None
        user = self.current()
        if user is None:
            if request.method == "GET" and not path.startswith("/_dash"):
                return redirect("/login?" + urlencode({"next": _safe_next(request.full_path.rstrip("?"))}))
            return error_response(401, "login required")
        g.emap_user = user
        g.emap_viewer = v = self.viewer_of(user)
        g.emap_root = v.root
        if request.method == "GET" and not path.startswith(("/_dash", "/assets/", "/_favicon", "/logout")):
            return self._check_page(v)  # Dash serves its page under any path
        if path == CALLBACK_PATH:
            return self._check_callback(v)
        return None

    def _check_page(self, v: Viewer):
        """A page URL naming a node outside the subtree goes to the viewer's own node."""
        q = parse_qs(request.query_string.decode("utf-8", "replace"), keep_blank_values=True)
        named = q.get("node", [])
        outside = [n for n in named if not v.holds(n)]
        if outside:
            users.audit(
                self.store,
                v.label,
                "refusal",
                f"GET {request.path[:200]}: node {outside[0][:64]!r} outside {v.root} (from {_client_ip()})",
            )
        if outside or (not named and v.root != self.top):
            q["node"] = [v.root]
            return redirect(_safe_next(quote(request.path)) + "?" + urlencode(q, doseq=True))
        return None

    def _check_callback(self, v: Viewer):
        """The second line behind the callbacks' own checks: the request must have the
        shape its callback declares (ids and properties by position, ``changedPropIds``
        among its inputs), and no node it names anywhere lies outside the viewer's subtree."""
        try:
            body = request.get_json(silent=True)
        except RecursionError:
            body = None
        if not isinstance(body, dict):
            return self.refuse(v.label, "callback body is not a JSON object", 400)
        outside = next((n for n in named_nodes(body, self.parents) if not v.holds(n)), None)
        if outside is not None:
            return self.refuse(v.label, f"node {outside!r} outside {v.root}")
        for item in _flatten(body.get("inputs")) + _flatten(body.get("state")):
            if item.get("id") != self.state_id or item.get("value") is None:
                continue
            view, layers = item["value"], None
            if isinstance(view, dict):
                layers = view.get("layers", [])
            if not isinstance(layers, list) or not all(isinstance(k, str) for k in layers):
                return self.refuse(v.label, "malformed view state")
            try:
                v.require_layers(view.get("node"), layers)
            except OutsideScope as exc:
                return self.refuse(v.label, str(exc))
        output = body.get("output")
        for out_id, what in self.acting.items():
            if isinstance(output, str) and f"..{out_id}." in f"..{output}" and not v.may_act:
                return self.refuse(v.label, f"{what} by a {v.role}")
        problem = callback_problem(body, self.callbacks)
        if problem:
            return self.refuse(v.label, problem, 400)
        return None

    # -- pages ------------------------------------------------------------------------------
    def login_page(self):
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(24)
        nxt = _safe_next(request.values.get("next"))
        if request.method == "GET":
            return _login_html(session["csrf"], nxt)
        form = request.form
        if not hmac.compare_digest(str(form.get("csrf", "")), str(session.get("csrf", ""))):
            return _login_html(
                session["csrf"], nxt, "Session expired: please try again. 会话已过期，请重试。", 400
            )
        uid = (form.get("user") or "").strip()[:64]
        ip = _client_ip()
        key = f"{ip}|{uid.lower()}"
        # Per name and address, plus a wider cap per address against guessing many names.
        if self.limiter.blocked(key) or self.limiter.blocked(ip, 10 * self.limiter.max_failures):
            users.audit(self.store, uid, "login_failed", f"rate limited (from {ip})")
            return _login_html(
                session["csrf"], nxt, "Too many attempts: wait a few minutes. 尝试次数过多，请稍后再试。", 429
            )
        user = users.authenticate(self.store, uid, form.get("password") or "")
        if user is None:
            self.limiter.failed(key, ip)
            users.audit(self.store, uid, "login_failed", f"from {ip}")
            return _login_html(session["csrf"], nxt, "Wrong user or password. 用户名或密码错误。", 401)
        self.limiter.reset(key)
        session.clear()  # a fresh session: nothing carried over from before the sign-in
        session.permanent = True
        session["sid"] = users.start_session(self.store, user["user_id"], self.settings.session_hours)
        session["csrf"] = secrets.token_urlsafe(24)
        users.audit(self.store, user["user_id"], "login", f"from {ip}")
        return redirect(nxt)

    def logout_page(self):
        if request.method == "GET":
            if "csrf" not in session:
                session["csrf"] = secrets.token_urlsafe(24)
            return _page(
                "Sign out · 退出",
                f"""<form method="post" action="/logout">
<input type="hidden" name="csrf" value="{escape(session["csrf"])}">
<button type="submit">Sign out · 退出</button></form>""",
            )
        if hmac.compare_digest(str(request.form.get("csrf", "")), str(session.get("csrf", ""))):
            user = self.current()
            users.end_session(self.store, session.get("sid"))  # a copied cookie dies with it
            self.forget(session.get("sid"))
            session.clear()
            if user:
                users.audit(self.store, user["user_id"], "logout", f"from {_client_ip()}")
        return redirect("/login")


def _pattern(declared_id: str) -> dict | None:
    """A pattern-matching id as declared (``{"node": ["ALL"], "type": "crumb"}``)."""
    if not declared_id.startswith("{"):
        return None
    return orjson.loads(declared_id)


def _fits(item, declared: dict) -> bool:
    """Does one sent input or state item have the declared id and property?"""
    pattern = _pattern(declared["id"])
    if pattern is None:
        return (
            isinstance(item, dict)
            and item.get("id") == declared["id"]
            and item.get("property") == declared["property"]
        )
    # ALL: a list of the matching components, each with an id of the pattern's keys
    if not isinstance(item, list):
        return False
    return all(
        isinstance(it, dict)
        and it.get("property") == declared["property"]
        and isinstance(it.get("id"), dict)
        and set(it["id"]) == set(pattern)
        and all(it["id"][k] == w for k, w in pattern.items() if not isinstance(w, list))
        for it in item
    )


def _changed_fits(prop_id, declared: list[dict]) -> bool:
    """Is a ``changedPropIds`` entry one of the callback's declared inputs?"""
    if not isinstance(prop_id, str) or "." not in prop_id:
        return False
    cid, prop = prop_id.rsplit(".", 1)
    for d in declared:
        if d["property"] != prop:
            continue
        pattern = _pattern(d["id"])
        if pattern is None:
            if cid == d["id"]:
                return True
            continue
        try:
            sent = orjson.loads(cid)
        except orjson.JSONDecodeError:
            continue
        if (
            isinstance(sent, dict)
            and set(sent) == set(pattern)
            and all(sent[k] == w for k, w in pattern.items() if not isinstance(w, list))
        ):
            return True
    return False


def callback_problem(body: dict, callbacks: dict) -> str | None:
    """What is wrong with the shape of a callback request (None: it fits its callback)."""
    output = body.get("output")
    spec = callbacks.get(output) if isinstance(output, str) else None
    if spec is None or "callback" not in spec:  # a client-side callback never reaches the server
        return "unknown callback output"
    for part in ("inputs", "state"):
        sent = body.get(part, [])
        declared = spec[part]
        if not isinstance(sent, list) or len(sent) != len(declared):
            return f"{part} do not match the callback"
        for i, (item, d) in enumerate(zip(sent, declared, strict=True)):
            if not _fits(item, d):
                return f"{part}[{i}] is not {d['id']}.{d['property']}"
    if body.get("outputs") != declared_outputs(output):
        return "outputs do not match the callback"
    changed = body.get("changedPropIds", [])
    if not isinstance(changed, list) or not all(_changed_fits(c, spec["inputs"]) for c in changed):
        return "changedPropIds names a property that is not an input of the callback"
    return None


def declared_outputs(output: str):
    """The ``outputs`` a browser sends for a callback id: one ``{id, property}`` for a
    single output (``a.b``), a list of them for several (``..a.b...c.d..``).

    Examples
    --------
    >>> declared_outputs("alerts.children")
    {'id': 'alerts', 'property': 'children'}
    >>> [o["id"] for o in declared_outputs("..kpis.children...trend.figure..")]
    ['kpis', 'trend']
    """

    def one(text: str) -> dict:
        cid, prop = text.rsplit(".", 1)
        return {"id": cid, "property": prop}

    if output.startswith(".."):
        return [one(o) for o in output[2:-2].split("...")]
    return one(output)


_NODE_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def named_nodes(body, parents) -> list[str]:
    """Every node id named anywhere in a request body: a string value, a key, or a word
    inside a string (a query string, an id sent as JSON text). Iterative, so that no
    nesting depth can exhaust the stack."""
    found, stack, seen = [], [body], 0
    while stack:
        x = stack.pop()
        seen += 1
        if seen > 200_000:
            break
        if isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, str):
            if x in parents:
                found.append(x)
            elif len(x) <= 100_000:
                found.extend(t for t in _NODE_TOKEN.findall(x) if t in parents)
    return found


def _flatten(items) -> list[dict]:
    """Callback inputs or state: items, or lists of items for pattern-matching ids."""
    out = []
    for it in items if isinstance(items, list) else []:
        if isinstance(it, list):
            out.extend(i for i in it if isinstance(i, dict))
        elif isinstance(it, dict):
            out.append(it)
    return out


_STYLE = """body{font-family:system-ui,sans-serif;background:#f4f5f7;display:flex;justify-content:center;
padding-top:12vh}main{background:#fff;padding:24px 32px;border-radius:6px;box-shadow:0 1px 4px #0002;
min-width:280px}label{display:block;margin-top:10px;font-size:13px}input{width:100%;padding:6px;
box-sizing:border-box}button{margin-top:16px;padding:6px 18px}.err{color:#b00020;font-size:13px}"""


def _page(title: str, body: str, status: int = 200) -> Response:
    html = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>EMAP · {escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><main><h1>EMAP</h1>{body}</main></body></html>"
    )
    return Response(html, status, mimetype="text/html")


def _login_html(csrf: str, nxt: str, message: str = "", status: int = 200) -> Response:
    err = f"<p class='err' role='alert'>{escape(message)}</p>" if message else ""
    return _page(
        "Sign in · 登录",
        f"""{err}<form method="post" action="/login">
<input type="hidden" name="csrf" value="{escape(csrf)}">
<input type="hidden" name="next" value="{escape(nxt)}">
<label for="user">User · 用户</label><input id="user" name="user" autocomplete="username" required>
<label for="password">Password · 密码</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in · 登录</button></form>""",
        status,
    )


def install_errors(app, store, bad_input: tuple = ()) -> None:
    """Answers for what a request may provoke in a callback: a node (or layer) the viewer
    does not hold is ``403`` with an audit line; a value no page sends (one of the
    ``bad_input`` exception types) is ``400`` with what is wrong. Both as JSON; the
    security headers are added after every request."""

    @app.server.errorhandler(OutsideScope)
    def _outside(exc: OutsideScope):
        who = g.get("emap_viewer")
        users.ensure_tables(store)
        users.audit(
            store,
            who.label if who is not None else None,
            "refusal",
            f"{request.method} {request.path[:200]}: {str(exc)[:300]} (from {_client_ip()})",
        )
        return error_response(403, "forbidden: " + str(exc)[:300])

    def _bad(exc: Exception):
        return error_response(400, str(exc)[:300])

    for kind in bad_input:
        app.server.register_error_handler(kind, _bad)


def install(app, store, settings, state_id: str = "", acting=None) -> Access:
    """Put ``app`` (a Dash app) behind a sign-in with the guard; returns the :class:`Access`.

    ``state_id`` is the view state's component id and ``acting`` maps the ids of outputs
    that act (export, dispatch decision) to what they do: managers and admins only.
    """
    server = app.server
    server.config.update(
        SECRET_KEY=_secret_key(),
        SESSION_COOKIE_NAME="emap_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(settings.cookie_secure),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
        # The session ends at a fixed time on the server (users.start_session), so the
        # cookie set at sign-in already lasts as long: re-signing it on every answer (each
        # callback) would only cost time and a Set-Cookie header.
        SESSION_REFRESH_EACH_REQUEST=False,
    )
    access = Access(store, settings, app.callback_map, state_id, acting)
    server.before_request(access.guard)
    server.add_url_rule("/login", "emap_login", access.login_page, methods=["GET", "POST"])
    server.add_url_rule("/logout", "emap_logout", access.logout_page, methods=["GET", "POST"])
    server.extensions["emap_access"] = access
    return access
