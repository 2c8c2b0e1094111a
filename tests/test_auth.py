"""Access control against a real server on loopback: sign-in, scope of every request,
privacy of positions above branch level, rate limit, cookie and security headers."""

# ruff: noqa: F811  (the shared fixtures are imported by name and used as arguments)
from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest
import requests

from auth import scope as sc
from auth import users
from config import Settings
from data.ingest import tokens
from data.ingest.tokens import create_token
from tests.auth_support import PASSWORD, auth_store, auth_url, csrf_of, login  # noqa: F401
from views import state as st
from views.model import Model

#: User -> the node their view is bound to.
ROOTS = {"admin": "hq", "hq": "hq", "south": "div-south", "shenzhen": "r-440300", "nanshan": "b-440305"}


@pytest.fixture(scope="module")
def parents(auth_store):
    n = auth_store.nodes()
    return dict(zip(n["node_id"].to_list(), n["parent_id"].to_list(), strict=True))


@pytest.fixture(scope="module")
def day(auth_store):
    return Model(auth_store, Settings.from_env()).dates()[-1]


@pytest.fixture(scope="module")
def sessions(auth_url):
    out = {}
    for uid in (*ROOTS, "sz-viewer", "sz-couriers"):
        s, r = login(auth_url, uid)
        assert r.status_code == 302, r.text[:300]
        out[uid] = s
    return out


def _outputs(output: str) -> list[dict]:
    """Dash's outputs list of a multi-output name (``..a.b...c.d..``)."""
    return [
        {"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]} for o in output.strip(".").split("...")
    ]


def _callback(
    session,
    url,
    view: dict,
    output: str = "..breadcrumb.children...drill.options..",
    extra_inputs=(),
    states=(),
):
    """A hand-made call of a dashboard callback reading the view state."""
    body = {
        "output": output,
        "outputs": _outputs(output),
        "inputs": [{"id": "state", "property": "data", "value": view}, *extra_inputs],
        "changedPropIds": ["state.data"],
        "state": list(states),
    }
    return session.post(f"{url}/_dash-update-component", json=body)


REDUCE_OUT = (
    "..state.data...url.search...date.value...date.options...hour.value...metric.value..."
    "layers.value...language.value...basemap.value...drill.value.."
)


def _reduce_body(search: str, state: dict | None) -> dict:
    """The state reducer's call after a URL change, as the browser sends it."""
    plain = [
        ("url", "search", search),
        ("date", "value", None),
        ("hour", "value", None),
        ("metric", "value", None),
        ("layers", "value", None),
        ("language", "value", None),
        ("basemap", "value", None),
        ("drill", "value", None),
        ("map", "clickData", None),
    ]
    ticks = [
        ("hour-prev", "n_clicks", 0),
        ("hour-next", "n_clicks", 0),
        ("play-tick", "n_intervals", None),
        ("live-version", "data", None),
        ("live", "value", []),
    ]
    item = lambda i, p, v: {"id": i, "property": p, "value": v}  # noqa: E731
    return {
        "output": REDUCE_OUT,
        "outputs": _outputs(REDUCE_OUT),
        "changedPropIds": ["url.search"],
        "inputs": [*(item(*x) for x in plain), [], [], *(item(*x) for x in ticks)],
        "state": [item("state", "data", state)],
    }


def _refusals(store, user: str) -> int:
    return store.scalar("SELECT count(*) FROM audit_log WHERE action = 'refusal' AND user_id = ?", [user])


# -- scope, pure --------------------------------------------------------------------------
def test_each_level_sees_exactly_its_subtree(auth_store, parents):
    """The subtree of each demo user's node equals the tree's own closure (by SQL)."""
    level = dict(auth_store.sql("SELECT node_id, level FROM nodes").iter_rows())
    for uid, root in ROOTS.items():
        user = users.get_user(auth_store, uid)
        got = sc.subtree(sc.user_root(user, parents), parents)
        expected = set(
            auth_store.sql(f"""
            WITH RECURSIVE t(node_id) AS (SELECT '{root}' UNION ALL
                SELECT n.node_id FROM nodes n JOIN t ON n.parent_id = t.node_id)
            SELECT node_id FROM t""")["node_id"].to_list()
        )
        assert got == expected, uid
        # branches seen = the store's own node_branches closure of that node
        branches = {n for n in got if level[n] == "branch"}
        closure = set(
            auth_store.sql("SELECT branch_id FROM node_branches WHERE ancestor_id = ?", [root])[
                "branch_id"
            ].to_list()
        )
        assert branches == closure, uid
    assert len(sc.subtree("b-440305", parents)) == 1
    assert not sc.within("r-440100", "r-440300", parents) and not sc.within("nope", "hq", parents)


def test_positions_above_branch_need_the_grant():
    user = {"role": "manager", "can_see_couriers": False}
    assert sc.may_see_positions(user, "branch") and not sc.may_see_positions(user, "region")
    assert sc.may_see_positions({**user, "can_see_couriers": True}, "division")
    assert not sc.may_act({"role": "viewer"}) and sc.may_act({"role": "manager"})


# -- every request needs a session --------------------------------------------------------
def test_without_a_session_nothing_is_served(auth_url):
    r = requests.get(f"{auth_url}/?node=hq", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=")
    for path in ("/_dash-layout", "/_dash-dependencies"):
        assert requests.get(f"{auth_url}{path}").status_code == 401
    view = st.default(node="hq", day="2026-11-20")
    r = requests.post(
        f"{auth_url}/_dash-update-component",
        json={"output": "kpis.children", "inputs": [{"id": "state", "property": "data", "value": view}]},
    )
    assert r.status_code == 401 and "kpi" not in r.text


def test_security_headers_and_cookie_flags(auth_url):
    s = requests.Session()
    page = s.get(f"{auth_url}/login")
    cookie = page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    _, r = login(auth_url, "nanshan")
    cookie = r.headers["Set-Cookie"]
    assert "emap_session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    for resp in (page, r, requests.get(f"{auth_url}/_dash-layout")):
        h = resp.headers
        assert h["X-Frame-Options"] == "DENY" and h["X-Content-Type-Options"] == "nosniff"
        assert "frame-ancestors 'none'" in h["Content-Security-Policy"]
        assert "script-src 'self'" in h["Content-Security-Policy"]
        assert h["Referrer-Policy"]


def test_login_form_needs_its_csrf_token(auth_url):
    s = requests.Session()
    s.get(f"{auth_url}/login")
    r = s.post(
        f"{auth_url}/login",
        data={"user": "nanshan", "password": PASSWORD, "csrf": "forged"},
        allow_redirects=False,
    )
    assert r.status_code == 400
    assert s.get(f"{auth_url}/_dash-layout").status_code == 401  # not signed in


def test_login_rate_limit(auth_url, auth_store):
    s = requests.Session()
    for _ in range(5):
        token = csrf_of(s.get(f"{auth_url}/login").text)
        r = s.post(f"{auth_url}/login", data={"user": "locked", "password": "wrong one", "csrf": token})
        assert r.status_code == 401
    token = csrf_of(s.get(f"{auth_url}/login").text)
    r = s.post(
        f"{auth_url}/login",
        data={"user": "locked", "password": PASSWORD, "csrf": token},
        allow_redirects=False,
    )
    assert r.status_code == 429  # even the right password waits
    log = users.audit_log(auth_store, "login_failed").filter(
        users.audit_log(auth_store, "login_failed")["user_id"] == "locked"
    )
    assert len(log) == 6 and "rate limited" in log["detail"][-1]


def test_disabled_user_loses_the_session(auth_url, auth_store):
    users.create_user(auth_store, "leaver", PASSWORD, "viewer", "r-440300", by="test")
    s, r = login(auth_url, "leaver")
    assert r.status_code == 302 and s.get(f"{auth_url}/_dash-layout").status_code == 200
    users.update_user(auth_store, "leaver", disabled=True, by="test")
    assert s.get(f"{auth_url}/_dash-layout").status_code == 401
    assert login(auth_url, "leaver")[1].status_code == 401


# -- the URL --------------------------------------------------------------------------------
def test_landing_and_an_edited_url_go_to_the_users_node(auth_url, auth_store, sessions):
    s = sessions["shenzhen"]
    r = s.get(f"{auth_url}/", allow_redirects=False)
    assert r.status_code == 302 and "node=r-440300" in r.headers["Location"]
    before = _refusals(auth_store, "shenzhen")
    r = s.get(f"{auth_url}/?node=r-440100&hour=9", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/?node=r-440300&hour=9"
    assert _refusals(auth_store, "shenzhen") == before + 1
    assert s.get(f"{auth_url}/?node=b-440305", allow_redirects=False).status_code == 200
    r = s.get(f"{auth_url}/any/path?node=hq", allow_redirects=False)  # Dash serves any path
    assert r.status_code == 302 and r.headers["Location"] == "/any/path?node=r-440300"
    assert sessions["hq"].get(f"{auth_url}/?node=r-440100", allow_redirects=False).status_code == 200


# -- the callback endpoint -------------------------------------------------------------------
def test_each_user_reads_its_subtree_and_nothing_else(auth_url, sessions, day):
    probes = {
        "hq": True,
        "div-south": None,
        "r-440300": None,
        "b-440305": None,
        "r-440100": None,
        "b-440304": None,
    }
    for uid, root in ROOTS.items():
        for node in probes:
            in_scope = (
                uid in ("admin", "hq")
                or node == root
                or (root == "div-south" and node != "hq")
                or (root == "r-440300" and node.startswith("b-4403"))
            )
            r = _callback(sessions[uid], auth_url, st.default(node=node, day=day))
            assert r.status_code == (200 if in_scope else 403), (uid, node, r.status_code)
            if not in_scope:
                assert r.json() == {"error": "forbidden"}


def test_crafted_callbacks_naming_another_node_are_refused_and_logged(auth_url, auth_store, sessions, day):
    s = sessions["shenzhen"]
    before = _refusals(auth_store, "shenzhen")
    other = st.default(node="r-440100", day=day)  # Guangzhou
    r = _callback(
        s,
        auth_url,
        other,
        output="..kpis.children...trend.figure...status.children..",
    )
    assert r.status_code == 403 and r.text == '{"error":"forbidden"}'
    # the URL search of the state reducer
    own = st.default(node="r-440300", day=day)
    body = _reduce_body("?node=hq", own)
    assert s.post(f"{auth_url}/_dash-update-component", json=body).status_code == 403
    # a drill-down choice and a breadcrumb button naming nodes above
    drill = {"id": "drill", "property": "value", "value": "div-south"}
    assert _callback(s, auth_url, own, extra_inputs=[drill]).status_code == 403
    crumb = [[{"id": {"type": "crumb", "node": "hq"}, "property": "n_clicks", "value": 1}]]
    assert _callback(s, auth_url, own, extra_inputs=crumb).status_code == 403
    assert _refusals(auth_store, "shenzhen") == before + 4
    last = users.audit_log(auth_store, "refusal")["detail"][-1]
    assert "outside r-440300" in last


def test_a_client_side_callback_sent_to_the_server_is_refused(auth_url, sessions):
    """The live indicator's watchdog runs in the page; a request naming it gets 400."""
    r = sessions["shenzhen"].post(
        f"{auth_url}/_dash-update-component",
        json={
            "output": "live-badge.className",
            "outputs": {"id": "live-badge", "property": "className"},
            "inputs": [
                {"id": "live-beat", "property": "data", "value": 1},
                {"id": "live-poll", "property": "n_intervals", "value": 1},
                {"id": "live", "property": "value", "value": ["live"]},
            ],
            "state": [{"id": "live-poll", "property": "interval", "value": 2000}],
            "changedPropIds": ["live-beat.data"],
        },
    )
    assert r.status_code == 400


def test_courier_positions_above_branch_level_need_the_grant(auth_url, auth_store, sessions, day):
    region = {**st.default(node="r-440300", day=day), "layers": ["hexes", "couriers"]}
    branch = {**region, "node": "b-440305"}
    assert (
        _callback(
            sessions["shenzhen"],
            auth_url,
            region,
            output="..map.figure...geometry-key.data..",
        ).status_code
        == 403
    )
    assert (
        _callback(sessions["shenzhen"], auth_url, {**region, "layers": ["hexes", "vehicles"]}).status_code
        == 403
    )
    assert _callback(sessions["shenzhen"], auth_url, branch).status_code == 200
    # layers as a string would pass a membership test: malformed, refused
    assert _callback(sessions["shenzhen"], auth_url, {**region, "layers": "couriers"}).status_code == 403
    r = _callback(
        sessions["sz-couriers"],
        auth_url,
        region,
        output="..map.figure...geometry-key.data..",
        states=[{"id": "geometry-key", "property": "data", "value": None}],
    )
    assert r.status_code == 200 and '"couriers"' in r.text
    assert "couriers at region level" in users.audit_log(auth_store, "refusal")["detail"].str.join("|").item()


def test_state_reducer_drops_positions_the_user_may_not_see(auth_url, sessions, day):
    body = _reduce_body(f"?node=r-440300&date={day}&layers=hexes,couriers", None)
    for uid, shown in (("shenzhen", False), ("sz-couriers", True)):
        r = sessions[uid].post(f"{auth_url}/_dash-update-component", json=body)
        assert r.status_code == 200
        layers = r.json()["response"]["state"]["data"]["layers"]
        assert ("couriers" in layers) is shown, uid


def test_viewer_cannot_export_and_a_manager_export_is_logged(auth_url, auth_store, sessions, day):
    view = st.default(node="b-440305", day=day)
    out = "..export-download.data...export-status.children.."
    body = {
        "output": out,
        "outputs": _outputs(out),
        "changedPropIds": ["export-button.n_clicks"],
        "inputs": [{"id": "export-button", "property": "n_clicks", "value": 1}],
        "state": [
            {"id": "export-format", "property": "value", "value": "csv"},
            {"id": "export-span", "property": "value", "value": "hour"},
            {"id": "state", "property": "data", "value": view},
        ],
    }
    r = sessions["sz-viewer"].post(f"{auth_url}/_dash-update-component", json=body)
    assert r.status_code == 403 and r.text == '{"error":"forbidden"}'
    r = sessions["shenzhen"].post(f"{auth_url}/_dash-update-component", json=body)
    assert r.status_code == 200
    log = users.audit_log(auth_store, "export")
    assert log["user_id"][-1] == "shenzhen" and "node=b-440305" in log["detail"][-1]
    # another region's export by the same manager
    other = [*body["state"][:2], {"id": "state", "property": "data", "value": {**view, "node": "r-440100"}}]
    assert (
        sessions["shenzhen"]
        .post(f"{auth_url}/_dash-update-component", json={**body, "state": other})
        .status_code
        == 403
    )


# -- the ingest API --------------------------------------------------------------------------
def test_device_token_cannot_write_another_device(auth_url, auth_store):
    devices = auth_store.sql("SELECT device_id FROM devices ORDER BY device_id LIMIT 2")[
        "device_id"
    ].to_list()
    token = create_token(auth_store, "device", devices[0])
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ping = {"device_id": devices[1], "ts": now, "lat": 22.5431, "lng": 114.0579}
    before = auth_store.scalar("SELECT count(*) FROM pings WHERE device_id = ?", [devices[1]])
    r = requests.post(f"{auth_url}/api/v1/pings", json=[ping], headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.json()["accepted"] == 0
    assert f"cannot report for device '{devices[1]}'" in r.json()["rejected"][0]["reason"]
    assert auth_store.scalar("SELECT count(*) FROM pings WHERE device_id = ?", [devices[1]]) == before
    # the refusal is logged, and the record kept in quarantine with its reason
    log = users.audit_log(auth_store, "refusal")
    assert (
        log.filter(pl.col("user_id") == f"device:{devices[0]}")["detail"].str.contains("/api/v1/pings").any()
    )
    assert (
        auth_store.scalar("SELECT count(*) FROM quarantine WHERE reason LIKE '%cannot report for device%'")
        >= 1
    )
    # a session cookie is no ingest credential
    s, _ = login(auth_url, "admin")
    assert s.post(f"{auth_url}/api/v1/pings", json=[ping]).status_code == 401


def test_system_token_bound_to_a_node_writes_only_inside_it(auth_url, auth_store):
    token = create_token(auth_store, "system", "shenzhen-wms", node_id="r-440300")
    assert (
        tokens.list_tokens(auth_store).filter(pl.col("subject") == "shenzhen-wms")["node_id"][0] == "r-440300"
    )
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    inside = {
        "event_id": "auth-in-1",
        "parcel_id": "p-auth-1",
        "kind": "pickup",
        "ts": now,
        "lat": 22.5431,
        "lng": 114.0579,
    }  # Futian, Shenzhen
    outside = {**inside, "event_id": "auth-out-1", "lat": 23.1291, "lng": 113.2644}  # Guangzhou
    r = requests.post(
        f"{auth_url}/api/v1/events", json=[inside, outside], headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    assert r.json()["rejected"] == [
        {"index": 1, "reason": "the token of system 'shenzhen-wms' cannot report outside node 'r-440300'"}
    ]
    stored = auth_store.sql("SELECT event_id FROM parcel_events WHERE event_id LIKE 'auth-%'")["event_id"]
    assert stored.to_list() == ["auth-in-1"]
    with pytest.raises(ValueError):
        create_token(auth_store, "device", "dev-x", node_id="r-440300")
