"""Helpers of the security suite: recording the browser's real callback requests,
moving every node reference of a request elsewhere, the shapes an attacker can give a
request, and a check that an answer carries no data of a node the user does not hold.

The suite is black-box: it speaks HTTP to a real server on loopback. The app object is
used only to enumerate what to attack (``callback_map`` and the Flask URL map).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import orjson
import requests

from pages import ids

#: The branch user every replay runs as, and the only node they hold.
USER = "nanshan"
OWN = "b-440305"
#: Nodes outside b-440305: headquarters, its division and region, another region, a
#: branch of that region and a sibling branch.
OUTSIDE = ("hq", "div-south", "r-440300", "r-440100", "b-440106", "b-440304")
#: The headers every answer, errors included, must carry.
SECURITY_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options")
CALLBACK = "/_dash-update-component"

#: Ids of people and things: couriers, vehicles, outlets and hubs, devices.
_THING_ID = re.compile(r"\b(?:c-\d{6}|v-\d{4}|[oh]-\d{6}-\d+|86\d{13})\b")


# -- the store ------------------------------------------------------------------------------
def copy_store_with_accounts(src, dest, only: tuple[str, ...] | None = None):
    """A writable copy of a demo store at ``dest`` with the accounts of tests/auth_support.py
    (``only`` those named, if given), for servers whose state must not be shared: the
    persisted sign-in limit, fuzzing."""
    from auth import users
    from data.demo.accounts import ACCOUNTS
    from data.store.database import Store
    from tests.auth_support import EXTRA, PASSWORD

    shutil.copy(src, dest)
    store = Store(dest)
    users.ensure_tables(store)
    for uid, role, node, name in ACCOUNTS:
        if only is None or uid in only:
            users.create_user(store, uid, PASSWORD, role, node, name=name, by="test")
    for uid, role, node, couriers in EXTRA:
        if only is None or uid in only:
            users.create_user(store, uid, PASSWORD, role, node, can_see_couriers=couriers, by="test")
    return store


@contextmanager
def serve_dashboard(store, settings, blueprint: bool = True) -> Iterator[tuple[object, str]]:
    """A dashboard with sign-in (and the ingest API) on a free loopback port: ``(app, url)``."""
    from data.ingest.http_api import make_ingest_blueprint
    from pages.app import build_app
    from tests.conftest import served

    bps = [make_ingest_blueprint(store, settings)] if blueprint else []
    app = build_app(store, settings, blueprints=bps, warm=False, prefetch=False, auth=True)
    try:
        with served(app) as url:
            yield app, url
    finally:
        for bp in bps:
            bp.committer.close()


def audit_count(store, action: str, user: str | None = USER) -> int:
    return store.scalar("SELECT count(*) FROM audit_log WHERE action = ? AND user_id = ?", [action, user])


def wait_for_audit(store, action: str, before: int, user: str = USER, patience: float = 3.0) -> int:
    """The audit count once it passed ``before`` (audit lines may be written just after
    the answer); returns the last count seen."""
    end = time.monotonic() + patience
    n = audit_count(store, action, user)
    while n <= before and time.monotonic() < end:
        time.sleep(0.05)
        n = audit_count(store, action, user)
    return n


# -- enumeration ----------------------------------------------------------------------------
def callback_outputs(app) -> list[str]:
    """Every server-side callback of the app, by its output key (what the browser sends
    as ``output``); client-side ones run in the page and are never sent."""
    return sorted(o for o, spec in app.callback_map.items() if "callback" in spec)


def flask_rules(app) -> list:
    """Every Flask route of the app (``Rule`` objects)."""
    return sorted(app.server.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint))


# -- recording --------------------------------------------------------------------------------
class Recorder:
    """Keeps the ``/_dash-update-component`` request bodies a page sends, per output, and
    knows when the page has no request pending."""

    def __init__(self, page):
        self.bodies: dict[str, list[dict]] = {}
        self._seen: set[bytes] = set()
        self._pending = 0
        self._lock = threading.Lock()
        page.on("request", self._request)
        page.on("requestfinished", self._done)
        page.on("requestfailed", self._done)

    @staticmethod
    def _is_callback(req) -> bool:
        return req.method == "POST" and urlsplit(req.url).path.endswith(CALLBACK)

    def _request(self, req):
        if not self._is_callback(req):
            return
        with self._lock:
            self._pending += 1
        body = req.post_data_json
        if isinstance(body, dict) and "output" in body:
            key = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
            if key not in self._seen:
                self._seen.add(key)
                self.bodies.setdefault(body["output"], []).append(body)

    def _done(self, req):
        if self._is_callback(req):
            with self._lock:
                self._pending -= 1

    def settle(self, page, quiet: int = 3, limit: float = 90.0) -> None:
        """Wait until no callback request has been pending for ``quiet`` polls."""
        end = time.monotonic() + limit
        calm = 0
        while calm < quiet and time.monotonic() < end:
            page.wait_for_timeout(100)
            calm = calm + 1 if self._pending <= 0 else 0


def _choose(page, dropdown: str, label: str) -> None:
    page.click(f"#{dropdown}")
    page.get_by_role("option", name=label, exact=True).first.click()


def _next_option(page, dropdown: str) -> None:
    page.click(f"#{dropdown}")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")


def _stray_fix(store) -> None:
    """A fix of an unregistered device in Futian (b-440304), kept in quarantine, so that
    the unknown-devices list has a row whose register button the walk clicks."""
    from data.ingest.group_commit import GroupCommitter

    gc = GroupCommitter(store, "Asia/Shanghai").start()
    try:
        fix = {
            "id": "recorded-stray",
            "lat": 22.546487,
            "lon": 114.063211,
            "timestamp": int(time.time()) - 30,
        }
        gc.submit("pings", [fix], "phone-test").result(timeout=30)
    finally:
        gc.close()


def _admin_pages(page, url: str, rec: Recorder) -> None:
    """Open each administration page: its callback runs once as the page opens."""
    for name, shown in (
        ("users", ids.ADMIN_USERS_TABLE),
        ("devices", ids.ADMIN_DEVICES_TABLE),
        ("tokens", ids.ADMIN_TOKENS_TABLE),
        ("audit", ids.ADMIN_AUDIT_TABLE),
    ):
        page.goto(f"{url}/admin/{name}")
        page.wait_for_selector(f"#{shown} > *", timeout=60_000)
        rec.settle(page)
        if name == "devices":  # one-click registration, with no owner chosen: refused, nothing changed
            page.click(f"#{ids.ADMIN_UNKNOWN_TABLE} button.admin-unknown-register", timeout=60_000)
            page.wait_for_selector(f"#{ids.ADMIN_UNKNOWN_RESULT} > *")
            rec.settle(page)


class _Walk:
    """The steps of :func:`record_dashboard`, each a method using one signed-in page."""

    def __init__(self, page, rec, url: str, names: dict, user: str, password: str):
        self.page, self.rec, self.url, self.names = page, rec, url, names
        self.user, self.password = user, password

    def sign_in(self):
        page = self.page
        page.goto(f"{self.url}/login")
        page.fill("#user", self.user)
        page.fill("#password", self.password)
        page.click("button[type=submit]")
        page.wait_for_selector(f"#{ids.KPIS} .kpi")

    def drill(self, node):
        return lambda: (
            _choose(self.page, ids.DRILL, self.names[node]),
            self.page.wait_for_selector(f"#{ids.BREADCRUMB} button:has-text('{self.names[node][:3]}')"),
        )

    def hour(self):
        page = self.page
        page.click(f"#{ids.HOUR_NEXT}")
        self.rec.settle(page)
        page.click(f"#{ids.HOUR_PREV}")
        self.rec.settle(page)
        page.focus(f"#{ids.HOUR} [role=slider]")
        page.keyboard.press("ArrowLeft")

    def play(self):
        self.page.click(f"#{ids.PLAY}")
        self.page.wait_for_timeout(2500)  # one tick of the player
        self.page.click(f"#{ids.PLAY}")

    def _twice(self, first: str, second: str):
        self.page.click(first)
        self.rec.settle(self.page)
        self.page.click(second)

    def live(self):
        self._twice(f"#{ids.LIVE} input", f"#{ids.LIVE} input")

    def language(self):
        self._twice(f"#{ids.LANGUAGE} input[value=en]", f"#{ids.LANGUAGE} input[value=zh]")

    def layers(self):
        self._twice(f"#{ids.LAYERS} input[value=couriers]", f"#{ids.LAYERS} input[value=vehicles]")

    def decide(self):
        page = self.page
        page.wait_for_selector(f"#{ids.OUTLOOK} .suggestion button", timeout=90_000)
        page.locator(f"#{ids.OUTLOOK} .suggestion button").first.click()
        page.wait_for_selector(f"#{ids.OUTLOOK_NOTE}:not(:empty)")

    def alert(self):
        self.page.locator(f"#{ids.ALERTS} button").first.click(timeout=15_000)

    def export(self):
        _choose(self.page, ids.EXPORT_FORMAT, "CSV")
        self.rec.settle(self.page)
        self.page.click(f"#{ids.EXPORT_BUTTON}")
        self.page.wait_for_selector(f"#{ids.EXPORT_STATUS}:not(:empty)", timeout=60_000)

    def ranking_download(self):
        with self.page.expect_download():
            self.page.click(f"#{ids.RANKING_BUTTON}")

    def crumb(self):
        self.page.locator(f"#{ids.BREADCRUMB} button:not([disabled])").first.click()

    def steps(self) -> list:
        return [
            ("sign in", self.sign_in),
            ("drill div-south", self.drill("div-south")),
            ("drill r-440300", self.drill("r-440300")),
            ("hour", self.hour),
            ("alert", self.alert),
            ("decide", self.decide),
            ("play", self.play),
            ("live", self.live),
            ("language", self.language),
            ("metric", lambda: _next_option(self.page, ids.METRIC)),
            ("basemap", lambda: _next_option(self.page, ids.BASEMAP)),
            ("drill b-440305", self.drill(OWN)),
            ("layers", self.layers),
            ("export", self.export),
            ("ranking download", self.ranking_download),
            ("crumb", self.crumb),
            ("administration pages", lambda: _admin_pages(self.page, self.url, self.rec)),
        ]


def record_dashboard(browser, url: str, store, user: str = "admin", password: str | None = None) -> dict:
    """Use the dashboard as ``user`` in a real Chromium and return the callback request
    bodies it sent, per output: sign in through the form, drill down with the drill
    dropdown, change the hour, play, live, language, layers (couriers too) and basemap,
    accept a dispatch suggestion, click an alert, export, download the ranking, open the
    administration pages, go back by the breadcrumb.

    Each step is tried on its own; a step that cannot be done leaves its callbacks
    unrecorded, which the suite's coverage test reports.
    """
    from tests.auth_support import PASSWORD

    names = dict(store.sql("SELECT node_id, name FROM nodes").iter_rows())
    _stray_fix(store)
    context = browser.new_context(viewport={"width": 1500, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    rec = Recorder(page)
    walk = _Walk(page, rec, url, names, user, password or PASSWORD)
    done: list[str] = []
    try:
        for name, fn in walk.steps():
            start = time.monotonic()
            try:
                fn()
                rec.settle(page)
                done.append(f"{name} ({time.monotonic() - start:.1f} s)")
            except Exception as exc:  # noqa: BLE001 - reported through the coverage test
                done.append(f"{name}: FAILED {type(exc).__name__}: {str(exc)[:200]}")
    finally:
        context.close()
    return {"bodies": rec.bodies, "steps": done}


# -- moving node references -----------------------------------------------------------------
def _pattern_key(id_: dict) -> str:
    return json.dumps(id_, sort_keys=True, separators=(",", ":"))


def retarget(obj, nodes: frozenset, target: str):
    """A copy of a request body with every node reference moved to ``target``: values that
    are node ids, ``node=`` in query strings, pattern ids (``node``, ``branch``) and the
    same inside ``changedPropIds`` strings."""
    if isinstance(obj, dict):
        return {k: retarget(v, nodes, target) for k, v in obj.items()}
    if isinstance(obj, list):
        return [retarget(v, nodes, target) for v in obj]
    if isinstance(obj, str):
        if obj in nodes:
            return target
        if obj.startswith("{") and "}." in obj:  # '{"node":"hq","type":"crumb"}.n_clicks'
            head, prop = obj.rsplit(".", 1)
            try:
                return f"{_pattern_key(retarget(json.loads(head), nodes, target))}.{prop}"
            except ValueError:
                return obj
        if "node=" in obj:
            query = obj.startswith("?")
            pairs = [(k, target if k == "node" else v) for k, v in parse_qsl(obj.lstrip("?"), True)]
            return ("?" if query else "") + urlencode(pairs)
    return obj


def names_node(obj, nodes: frozenset) -> bool:
    """Does a request part name any node?"""
    return retarget(obj, nodes, "\0") != obj


def _items(body: dict):
    """(section, index, item) of top-level input and state items that are single items."""
    for section in ("inputs", "state"):
        for i, it in enumerate(body.get(section) or []):
            yield section, i, it


def shapes(recorded: dict, nodes: frozenset, target: str) -> Iterator[tuple[str, dict]]:
    """The shapes of one recorded request with its node references moved to ``target``:
    as sent; each node-naming input's id renamed; pattern ids sent as JSON strings;
    the target only in ``changedPropIds``; nested lists; the URL search, drill choice and
    view state's node set to the target."""
    sent = retarget(recorded, nodes, target)
    own = retarget(recorded, nodes, OWN)
    yield "as sent", sent
    yield from _renamed_ids(recorded, sent, nodes)
    yield from _pattern_strings(sent)
    yield from _changed_only(recorded, own, nodes, target)
    yield from _nested(sent, nodes)
    yield from _own_values_moved(own, target)


def _renamed_ids(recorded: dict, sent: dict, nodes: frozenset) -> Iterator[tuple[str, dict]]:
    renamed_all = copy.deepcopy(sent)
    any_named = False
    for section, i, it in _items(recorded):
        if isinstance(it, dict) and isinstance(it.get("id"), str) and names_node(it, nodes):
            b = copy.deepcopy(sent)
            b[section][i]["id"] = "x"
            renamed_all[section][i]["id"] = "x"
            any_named = True
            yield f"id {it['id']!r} renamed", b
    if any_named:
        yield "every node-naming id renamed", renamed_all


def _stringified(x):
    if isinstance(x, list):
        return [_stringified(v) for v in x]
    if isinstance(x, dict) and isinstance(x.get("id"), dict):
        return {**x, "id": _pattern_key(x["id"])}
    return x


def _pattern_strings(sent: dict) -> Iterator[tuple[str, dict]]:
    if any(isinstance(it, list) for _, _, it in _items(sent)):
        yield (
            "pattern ids as JSON strings",
            {
                **sent,
                "inputs": _stringified(sent.get("inputs") or []),
                "state": _stringified(sent.get("state") or []),
            },
        )


def _changed_only(recorded: dict, own: dict, nodes: frozenset, target: str) -> Iterator[tuple[str, dict]]:
    changed = recorded.get("changedPropIds") or []
    if names_node(changed, nodes):
        yield "target only in changedPropIds", {**own, "changedPropIds": retarget(changed, nodes, target)}
        return
    # a pattern input's button named in changedPropIds only, the inputs being the user's own
    for _, _, it in _items(recorded):
        if isinstance(it, list) and it and names_node(it, nodes):
            pid = it[0]["id"]
            key = f"{_pattern_key(retarget(pid, nodes, target))}.{it[0]['property']}"
            yield "target only in changedPropIds", {**own, "changedPropIds": [key]}
            return


def _nested(sent: dict, nodes: frozenset) -> Iterator[tuple[str, dict]]:
    yield (
        "nested lists",
        {
            **sent,
            "inputs": [
                [it] if isinstance(it, dict) and names_node(it, nodes) else it for it in sent["inputs"]
            ],
        },
    )
    yield "inputs nested in a list", {**sent, "inputs": [sent.get("inputs") or []]}


def _own_values_moved(own: dict, target: str) -> Iterator[tuple[str, dict]]:
    for section, i, it in _items(own):
        if not isinstance(it, dict):
            continue
        if it.get("property") == "search":
            for search in (f"?node={target}", f"?node={OWN}&node={target}", f"?node={target}&node={OWN}"):
                b = copy.deepcopy(own)
                b[section][i]["value"] = search
                yield f"url search {search}", {**b, "changedPropIds": [f"{it['id']}.search"]}
        if it.get("id") == ids.DRILL and it.get("property") == "value":
            b = copy.deepcopy(own)
            b[section][i]["value"] = target
            yield "drill value", {**b, "changedPropIds": [f"{ids.DRILL}.value"]}
        if isinstance(it.get("value"), dict) and "node" in it["value"]:
            b = copy.deepcopy(own)
            b[section][i]["value"] = {**it["value"], "node": target}
            yield f"view state {it['id']!r} node", b


# -- what an answer may not carry -----------------------------------------------------------
def strings_of(obj) -> set[str]:
    """Every string leaf of a JSON value (and numbers as text)."""
    out: set[str] = set()

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        elif isinstance(x, str):
            out.add(x)
        elif isinstance(x, (int, float)) and not isinstance(x, bool):
            out.add(repr(x))

    walk(obj)
    return out


def decoded(resp) -> tuple[object, str]:
    """The JSON of an answer (None if it is none) and its text with unicode unescaped."""
    try:
        data = resp.json()
    except ValueError:
        return None, resp.text
    return data, json.dumps(data, ensure_ascii=False)


class Secrets:
    """What a user holding only :data:`OWN` must never receive.

    ``foreign_things``: courier, vehicle, outlet and device ids of other branches;
    ``foreign_nodes``: node id -> name of every node but the user's own;
    per callback output, ``distinctive``: strings of admin's answer for an outside node
    that the user's own answer and admin's answer for the user's node do not hold
    (KPI figures, cells, names), gathered by :meth:`learn`.
    """

    def __init__(self, store):
        q = store.sql
        own_things = set()
        foreign = set()
        for table, col in (("couriers", "courier_id"), ("vehicles", "vehicle_id"), ("outlets", "outlet_id")):
            df = q(f"SELECT {col} AS id, branch_id FROM {table}")
            for i, b in df.iter_rows():
                (own_things if b == OWN else foreign).add(i)
        dev = q(
            "SELECT d.device_id AS id, coalesce(c.branch_id, v.branch_id) AS b FROM devices d "
            "LEFT JOIN couriers c USING (courier_id) LEFT JOIN vehicles v USING (vehicle_id)"
        )
        for i, b in dev.iter_rows():
            (own_things if b == OWN else foreign).add(i)
        self.foreign_things = foreign - own_things
        nodes = q("SELECT node_id, name FROM nodes")
        self.nodes = frozenset(nodes["node_id"].to_list())
        self.names = dict(nodes.iter_rows())
        self.own_name = self.names[OWN]
        self.distinctive: dict[tuple[str, str], set[str]] = {}
        self.baseline: dict[str, str] = {}

    def learn(self, output: str, target: str, admin_answer, own_answers: list) -> None:
        """Remember what admin's answer for ``target`` holds that answers about the
        user's own node (``own_answers``: admin's and the user's) do not."""
        mine: set[str] = set()
        for a in own_answers:
            mine |= strings_of(a)
            self.baseline[output] = self.baseline.get(output, "") + json.dumps(a, ensure_ascii=False)
        self.distinctive[(output, target)] = {
            s for s in strings_of(admin_answer) - mine if len(s) >= 5 and not s.isspace()
        }

    def leaks(self, output: str, target: str, data, text: str) -> list[str]:
        """Why an answer to the user carries another node's data (empty: it does not)."""
        why = []
        things = set(_THING_ID.findall(text)) & self.foreign_things
        if things:
            why.append(f"ids of other branches' couriers/vehicles/outlets/devices: {sorted(things)[:5]}")
        base = self.baseline.get(output, "")
        for node in (target, *OUTSIDE):
            name = self.names.get(node)
            if name and name in text and name not in self.own_name and name not in base:
                why.append(f"the name of {node} ({name})")
                break
        if data is not None:
            leaves = strings_of(data)
            if f"node={target}" in text or f'"node": "{target}"' in text:
                why.append(f"{target} as the view's node")
            hits = leaves & self.distinctive.get((output, target), set())
            if hits:
                why.append(f"{len(hits)} values of admin's answer for {target}, e.g. {sorted(hits)[:3]}")
        return why


# -- checks on any answer ---------------------------------------------------------------------
def header_problems(resp) -> list[str]:
    return [f"no {h}" for h in SECURITY_HEADERS if not resp.headers.get(h)]


def off_site(location: str, base: str) -> bool:
    """Would a browser following ``location`` (from a page of ``base``) leave the site?
    Browsers drop tabs and new lines from URLs and read a backslash as a slash."""
    cleaned = re.sub(r"[\t\r\n]", "", location).replace("\\", "/").strip()
    target = urlsplit(urljoin(base + "/", cleaned))
    return (target.scheme, target.netloc) != (urlsplit(base).scheme, urlsplit(base).netloc)


def raw_get(url: str, path: str, cookie: str | None = None) -> tuple[int, dict, bytes]:
    """GET a path sent byte for byte (tabs, backslashes and all) over a plain socket, not
    normalised or refused by an HTTP client."""
    import socket

    u = urlsplit(url)
    head = f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nConnection: close\r\n"
    if cookie:
        head += f"Cookie: {cookie}\r\n"
    with socket.create_connection((u.hostname, u.port), timeout=60) as sock:
        sock.sendall((head + "\r\n").encode("utf-8", "surrogateescape"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().title() if k.lower() != "location" else "Location"] = v.strip()
    return status, headers, body


def to_json(body) -> bytes:
    """JSON bytes of any value (integers past 64 bits too, which orjson refuses)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body).encode()


def post(session: requests.Session, url: str, body, **kw) -> requests.Response:
    """POST a callback body (any JSON value) to the callback endpoint."""
    return session.post(
        url + CALLBACK,
        data=to_json(body),
        headers={"Content-Type": "application/json"},
        timeout=300,
        **kw,
    )
