"""The ranking's CSV download over HTTP against a real server with sign-in: refused to a
viewer and outside the user's node (403, audited), made from the server's data for a
manager (escaped, audited), and never from rows the request carries."""

# ruff: noqa: F811  (the shared fixtures are imported by name and used as arguments)
from __future__ import annotations

import base64
import csv
import io

import pytest

from auth import users
from config import Settings
from layers import escape
from pages import ids, ranking
from tests.auth_support import auth_store, auth_url, login  # noqa: F401
from views import state as st
from views.model import Model, ViewerModel

OUTPUT = f"{ids.RANKING_DOWNLOAD}.data"
REGION = "r-440300"


@pytest.fixture(scope="module")
def day(auth_store):
    return Model(auth_store, Settings.from_env()).dates()[-1]


@pytest.fixture(scope="module")
def sessions(auth_url):
    out = {}
    for uid in ("shenzhen", "sz-viewer"):
        s, r = login(auth_url, uid)
        assert r.status_code == 302, r.text[:300]
        out[uid] = s
    return out


def _body(view: dict, extra_state=()) -> dict:
    """The download's request as the browser sends it after a click on the button."""
    return {
        "output": OUTPUT,
        "outputs": {"id": ids.RANKING_DOWNLOAD, "property": "data"},
        "changedPropIds": [f"{ids.RANKING_BUTTON}.n_clicks"],
        "inputs": [{"id": ids.RANKING_BUTTON, "property": "n_clicks", "value": 1}],
        "state": [{"id": ids.STATE, "property": "data", "value": view}, *extra_state],
    }


def _post(session, url, body):
    return session.post(f"{url}/_dash-update-component", json=body)


def _count(store, action: str, user: str) -> int:
    return store.scalar("SELECT count(*) FROM audit_log WHERE action = ? AND user_id = ?", [action, user])


def test_a_viewers_forged_download_is_refused_and_audited(auth_url, auth_store, sessions, day):
    before = _count(auth_store, "refusal", "sz-viewer")
    exports = _count(auth_store, "export", "sz-viewer")
    r = _post(sessions["sz-viewer"], auth_url, _body(st.default(node=REGION, day=day)))
    assert r.status_code == 403 and r.text == '{"error":"forbidden"}'
    assert _count(auth_store, "refusal", "sz-viewer") == before + 1
    assert _count(auth_store, "export", "sz-viewer") == exports
    assert "ranking download by a viewer" in users.audit_log(auth_store, "refusal")["detail"][-1]


def test_a_managers_download_is_the_servers_ranking_escaped_and_audited(auth_url, auth_store, sessions, day):
    before = _count(auth_store, "export", "shenzhen")
    view = {**st.default(node=REGION, day=day), "lang": "en"}
    r = _post(sessions["shenzhen"], auth_url, _body(view))
    assert r.status_code == 200
    sent = r.json()["response"][ids.RANKING_DOWNLOAD]["data"]
    assert sent["filename"] == f"ranking-{REGION}-{day}-10.csv" and sent["type"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(base64.b64decode(sent["content"]).decode("utf-8"))))
    model = Model(auth_store, Settings.from_env())
    want = model.child_table(REGION, day, 10)
    assert [r["node_id"] for r in rows] == want["node_id"].to_list()
    assert [r["Name"] for r in rows] == [escape.csv_cell(n) for n in want["name"].to_list()]
    assert _count(auth_store, "export", "shenzhen") == before + 1
    assert (
        users.audit_log(auth_store, "export")["detail"][-1]
        == f"ranking node={REGION} date={day} hour=10 format=csv"
    )


def test_another_node_or_rows_sent_by_the_client_are_refused(auth_url, auth_store, sessions, day):
    s = sessions["shenzhen"]
    assert _post(s, auth_url, _body(st.default(node="r-440100", day=day))).status_code == 403
    # the callback reads no rows from the page: a request carrying the grid's rows is malformed
    grid = {"id": ids.CHILDREN, "property": "rowData", "value": [{"name": "=1+1", "volume": 1}]}
    assert _post(s, auth_url, _body(st.default(node=REGION, day=day), [grid])).status_code == 400


def test_ranking_csv_keeps_to_the_viewers_scope(small_store):
    from auth.viewer import OutsideScope, of_store

    model = Model(small_store, Settings.from_env())
    day = model.dates()[-1]
    viewer = of_store(small_store, {"user_id": "v", "role": "viewer", "node_id": "b-440305"})
    t = {key: key for key in ranking.COLUMNS.values()}
    with pytest.raises(OutsideScope):
        ranking.ranking_csv(ViewerModel(model, viewer), st.default(node=REGION, day=day), t)
    blob, name = ranking.ranking_csv(
        ViewerModel(model, model.everyone()), st.default(node=REGION, day=day), t
    )
    assert name == f"ranking-{REGION}-{day}-10.csv"
    header, *lines = blob.decode("utf-8").splitlines()
    assert header.split(",") == ["node_id", *ranking.COLUMNS.values()]
    assert len(lines) == len(model.children(REGION))
