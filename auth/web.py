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
import os
import secrets
import threading
import time
from collections import deque
from datetime import timedelta
from urllib.parse import parse_qs, urlencode

import orjson
from flask import Response, g, has_request_context, redirect, request, session
from markupsafe import escape

from auth import scope as sc
from auth import users

SECRET_ENV = "EMAP_SECRET_KEY"
CALLBACK_PATH = "/_dash-update-component"
#: Paths reachable without a session: the login page and the token-authenticated ingest API.
PUBLIC_PREFIXES = ("/login", "/api/v1/", "/osmand")
#: Callback outputs that act rather than read: managers and admins only.
ACTING_OUTPUTS = {"export-download": "export", "outlook-note": "dispatch decision"}


class LoginLimiter:
    """Failed logins per key within a sliding window; thread-safe.

    Examples
    --------
    >>> lim = LoginLimiter(max_failures=2, window=60)
    >>> lim.failed("k"); lim.failed("k"); lim.blocked("k")
    True
    """

    def __init__(self, max_failures: int = 5, window: float = 300.0):
        self.max_failures = max_failures
        self.window = window
        self._fails: dict[str, deque] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque:
        q = self._fails.setdefault(key, deque())
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def blocked(self, key: str, limit: int | None = None) -> bool:
        with self._lock:
            return len(self._recent(key, time.monotonic())) >= (limit or self.max_failures)

    def failed(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._fails) > 100_000:  # bounded under a flood of names
                self._fails.clear()
            self._recent(key, now).append(now)

    def reset(self, key: str) -> None:
        with self._lock:
            self._fails.pop(key, None)


def viewer() -> dict | None:
    """The signed-in user of the current request (None in an open app or outside a request)."""
    return g.get("emap_user") if has_request_context() else None


def viewer_root(default: str) -> str:
    """The top node the current request may see (``default`` in an open app)."""
    return (g.get("emap_root") if has_request_context() else None) or default


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
    print(
        f"{SECRET_ENV} is not set: using a random session key for this run; "
        "sessions will not survive a restart.",
        flush=True,
    )
    return secrets.token_hex(32)


def _safe_next(target: str | None) -> str:
    """Only a local path may follow the login (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _client_ip() -> str:
    # The socket peer: a forwarded-for header is the client's to choose.
    return request.remote_addr or "?"


class Access:
    """The login pages and request guard of one app on one store.

    Parameters
    ----------
    store : data.store.Store
        Holds the ``users`` and ``audit_log`` tables (created if missing).
    settings : config.Settings
        ``session_hours``, ``cookie_secure``, ``login_max_failures``, ``login_window_seconds``.
    """

    def __init__(self, store, settings):
        self.store = store
        users.ensure_tables(store)
        nodes = store.nodes()
        self.parents = dict(zip(nodes["node_id"].to_list(), nodes["parent_id"].to_list(), strict=True))
        self.levels = dict(zip(nodes["node_id"].to_list(), nodes["level"].to_list(), strict=True))
        self.top = sc.tree_root(self.parents)
        self.limiter = LoginLimiter(settings.login_max_failures, settings.login_window_seconds)

    # -- who ------------------------------------------------------------------------------
    def current(self) -> dict | None:
        uid = session.get("uid")
        if not uid:
            return None
        user = users.get_user(self.store, uid)
        if user is None or user["disabled"] or session.get("stamp") != users.session_stamp(user):
            session.clear()
            return None
        return user

    def root(self, user: dict) -> str:
        return sc.user_root(user, self.parents)

    def refuse(self, user: dict | None, reason: str, status: int = 403) -> Response:
        users.audit(
            self.store,
            user["user_id"] if user else None,
            "refusal",
            f"{request.method} {request.path}: {reason} (from {_client_ip()})",
        )
        return Response(orjson.dumps({"error": "forbidden"}), status, mimetype="application/json")

    # -- the guard ------------------------------------------------------------------------
    def guard(self):
        path = request.path
        if path.startswith(PUBLIC_PREFIXES):
            return None
        user = self.current()
        if user is None:
            if request.method == "GET" and not path.startswith("/_dash"):
                return redirect("/login?" + urlencode({"next": request.full_path.rstrip("?")}))
            return Response(orjson.dumps({"error": "login required"}), 401, mimetype="application/json")
        g.emap_user = user
        g.emap_root = root = self.root(user)
        if request.method == "GET" and not path.startswith(("/_dash", "/assets/", "/_favicon", "/logout")):
            return self._check_page(user, root)  # Dash serves its page under any path
        if path == CALLBACK_PATH:
            return self._check_callback(user, root)
        return None

    def _check_page(self, user, root):
        """A page URL naming a node outside the subtree goes to the user's own node."""
        q = parse_qs(request.query_string.decode("utf-8", "replace"), keep_blank_values=True)
        named = q.get("node", [])
        outside = [n for n in named if not sc.within(n, root, self.parents)]
        if outside:
            users.audit(
                self.store,
                user["user_id"],
                "refusal",
                f"GET {request.path}: node {outside[0]!r} outside {root} (from {_client_ip()})",
            )
        if outside or (not named and root != self.top):
            q["node"] = [root]
            return redirect(_safe_next(request.path) + "?" + urlencode(q, doseq=True))
        return None

    def _check_callback(self, user, root):
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return self.refuse(user, "callback body is not a JSON object", 400)
        items = list(_flatten(body.get("inputs"))) + list(_flatten(body.get("state")))
        state = None
        for it in items:
            cid, prop, value = it.get("id"), it.get("property"), it.get("value")
            named: list = []
            if cid == "state" and prop == "data" and value is not None:
                layers = value.get("layers") if isinstance(value, dict) else None
                if (
                    not isinstance(value, dict)
                    or "node" not in value
                    or not (
                        layers is None
                        or (isinstance(layers, list) and all(isinstance(k, str) for k in layers))
                    )
                ):
                    return self.refuse(user, "malformed view state")
                state = value
                named.append(value["node"])
            elif cid == "url" and prop == "search" and value:
                named += parse_qs(str(value).lstrip("?")).get("node", [])
            elif cid == "drill" and prop == "value" and value:
                named.append(value)
            elif isinstance(cid, dict):
                named += [cid[k] for k in ("node", "branch") if k in cid]
            for node in named:
                if not sc.within(node, root, self.parents):
                    return self.refuse(user, f"node {node!r} outside {root}")
        if state is not None:
            level = self.levels[state["node"]]
            private = sc.PRIVATE_LAYERS & set(state.get("layers") or [])
            if private and not sc.may_see_positions(user, level):
                return self.refuse(user, f"{', '.join(sorted(private))} at {level} level without the grant")
        output = str(body.get("output", ""))
        for out_id, what in ACTING_OUTPUTS.items():
            if out_id in output:
                if not sc.may_act(user):
                    return self.refuse(user, f"{what} by a {user['role']}")
                if out_id == "export-download" and state is not None:
                    fmt = next((i.get("value") for i in items if i.get("id") == "export-format"), None)
                    users.audit(
                        self.store,
                        user["user_id"],
                        "export",
                        f"node={state['node']} date={state.get('date')} hour={state.get('hour')} "
                        f"format={fmt}",
                    )
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
            self.limiter.failed(key)
            self.limiter.failed(ip)
            users.audit(self.store, uid, "login_failed", f"from {ip}")
            return _login_html(session["csrf"], nxt, "Wrong user or password. 用户名或密码错误。", 401)
        self.limiter.reset(key)
        session.clear()  # a fresh session: nothing carried over from before the login
        session.permanent = True
        session["uid"] = user["user_id"]
        session["stamp"] = users.session_stamp(user)
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
            uid = session.get("uid")
            session.clear()
            if uid:
                users.audit(self.store, uid, "logout", f"from {_client_ip()}")
        return redirect("/login")


def _flatten(items):
    """Callback inputs or state: items, or lists of items for pattern-matching ids."""
    for it in items or []:
        if isinstance(it, list):
            yield from _flatten(it)
        elif isinstance(it, dict):
            yield it


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


def install(app, store, settings) -> Access:
    """Put ``app`` (a Dash app) behind a login with the guard; returns the :class:`Access`."""
    server = app.server
    server.config.update(
        SECRET_KEY=_secret_key(),
        SESSION_COOKIE_NAME="emap_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=bool(settings.cookie_secure),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
    )
    access = Access(store, settings)
    server.before_request(access.guard)
    server.add_url_rule("/login", "emap_login", access.login_page, methods=["GET", "POST"])
    server.add_url_rule("/logout", "emap_logout", access.logout_page, methods=["GET", "POST"])
    server.extensions["emap_access"] = access
    return access
