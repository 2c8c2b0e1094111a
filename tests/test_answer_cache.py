"""The panels' answer cache (``views/answers.py``, ``pages/answers.py``) on a real server
with sign-in on loopback: viewers of one scope share an answer, a viewer of another scope
never gets it, new data is seen as soon as it would be without the cache, and an answer
built from a read nothing versions is not kept."""

from __future__ import annotations

import time
from datetime import UTC

import orjson
import pytest
import requests

from config import Settings
from data.store import tracking
from tests.auth_support import PASSWORD, csrf_of, login, signed_in_server
from views import state as st
from views.model import Model

NANSHAN = (22.5329, 113.9305)  # inside branch b-440305 of the small demo
KPI_OUT = "..kpis.children...trend.figure...status.children.."
MAP_OUT = "..map.figure...geometry-key.data.."


@pytest.fixture(scope="module")
def server(small_demo_path, tmp_path_factory):
    """(url, app, store, ingest headers, a courier device) of a dashboard with sign-in and
    the ingest API on a copy of the small demo."""
    accounts = (
        ("hq-a", "admin", "hq"),
        ("hq-b", "admin", "hq"),
        ("shenzhen", "manager", "r-440300"),
        ("nanshan", "manager", "b-440305"),
    )
    folder = tmp_path_factory.mktemp("answers")
    with signed_in_server(small_demo_path, folder, accounts, Settings.from_env({}), "test-answers") as server:
        yield server


@pytest.fixture(scope="module")
def sessions(server):
    out = {}
    for uid in ("hq-a", "hq-b", "shenzhen", "nanshan"):
        s, r = login(server[0], uid, PASSWORD)
        assert r.status_code == 302, r.text[:300]
        out[uid] = s
    return out


@pytest.fixture(scope="module")
def day(server):
    return Model(server[2], Settings.from_env({})).dates()[-1]


def _body(view: dict, output: str = KPI_OUT, states=()) -> dict:
    outputs = [
        {"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]} for o in output.strip(".").split("...")
    ]
    return {
        "output": output,
        "outputs": outputs,
        "inputs": [{"id": "state", "property": "data", "value": view}],
        "changedPropIds": ["state.data"],
        "state": list(states),
    }


class Outcomes:
    """What the answer cache did, from the app's ``emap_answers_total`` counters."""

    def __init__(self, app):
        self.app = app
        self.before = self.now()

    def now(self) -> dict:
        return {
            o: self.app.metrics.value("emap_answers_total", outcome=o) or 0.0
            for o in ("kept", "made", "not_kept")
        }

    def since(self) -> dict:
        now = self.now()
        out = {o: now[o] - self.before[o] for o in now}
        self.before = now
        return out


def _ask(session, url, body) -> requests.Response:
    return session.post(
        f"{url}/_dash-update-component",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )


def test_viewers_of_one_scope_share_an_answer(server, sessions, day):
    url, app = server[0], server[1]
    body = _body(st.default(node="r-440300", day=day, hour=11))
    seen = Outcomes(app)
    first = _ask(sessions["hq-a"], url, body)
    assert first.status_code == 200
    assert seen.since() == {"kept": 0, "made": 1, "not_kept": 0}
    second = _ask(sessions["hq-b"], url, body)  # another user of the same scope
    assert second.status_code == 200 and second.content == first.content
    assert second.headers["Content-Type"].startswith("application/json")
    assert "Content-Security-Policy" in second.headers  # the app's own headers on a kept answer too
    assert seen.since() == {"kept": 1, "made": 0, "not_kept": 0}
    # a manager of that region is another scope: the same request is made for them anew
    third = _ask(sessions["shenzhen"], url, body)
    assert third.status_code == 200
    assert seen.since() == {"kept": 0, "made": 1, "not_kept": 0}


def test_a_kept_answer_is_never_given_outside_the_viewers_scope(server, sessions, day):
    url, app, store = server[0], server[1], server[2]
    body = _body(st.default(node="r-440100", day=day, hour=11))  # Guangzhou
    assert _ask(sessions["hq-a"], url, body).status_code == 200
    assert _ask(sessions["hq-b"], url, body).status_code == 200  # kept now
    refusals = store.scalar("SELECT count(*) FROM audit_log WHERE action = 'refusal' AND user_id = 'nanshan'")
    seen = Outcomes(app)
    answer = _ask(sessions["nanshan"], url, body)
    assert answer.status_code == 403
    assert b"kpi" not in answer.content
    assert seen.since()["kept"] == 0
    after = store.scalar("SELECT count(*) FROM audit_log WHERE action = 'refusal' AND user_id = 'nanshan'")
    assert after == refusals + 1  # refused and audited as without the cache


def test_a_signed_out_session_gets_no_kept_answer(server, day):
    url = server[0]
    s, r = login(url, "hq-a", PASSWORD)
    assert r.status_code == 302
    body = _body(st.default(node="hq", day=day, hour=12))
    assert _ask(s, url, body).status_code == 200
    cookies = s.cookies.copy()
    form = s.get(f"{url}/logout", timeout=30).text
    out = s.post(f"{url}/logout", data={"csrf": csrf_of(form)}, allow_redirects=False, timeout=30)
    assert out.status_code in (302, 303)
    copied = requests.Session()
    copied.cookies.update(cookies)
    answer = copied.post(
        f"{url}/_dash-update-component",
        data=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
        allow_redirects=False,
        timeout=60,
    )
    assert answer.status_code in (302, 401, 403)
    assert b"kpi" not in answer.content


def test_new_data_is_seen_through_a_kept_answer(server, sessions, day):
    url, app, store, headers, device = server
    view = st.default(node="b-440305", day=day, hour=11)
    body = _body(view, output=MAP_OUT, states=[{"id": "geometry-key", "property": "data", "value": None}])
    # the hexes of the branch's hour, twice: made, then kept
    seen = Outcomes(app)
    before = _ask(sessions["nanshan"], url, body)
    assert before.status_code == 200
    assert _ask(sessions["nanshan"], url, body).content == before.content
    assert seen.since()["kept"] == 1
    # a late fix in the branch, in that hour
    start, _ = Model(store, Settings.from_env({})).hour_window(day, 11)
    ts = int(start.replace(tzinfo=UTC).timestamp()) + 1800
    fix = {"device_id": device, "ts": ts, "lat": NANSHAN[0], "lng": NANSHAN[1]}
    posted = requests.post(f"{url}/api/v1/pings", json=[fix], headers=headers, timeout=30)
    assert posted.status_code == 200 and posted.json()["accepted"] == 1, posted.text
    # within the one-second check of the day's fingerprint the answer is made anew
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        after = _ask(sessions["nanshan"], url, body)
        assert after.status_code == 200
        if after.content != before.content:
            break
        time.sleep(0.3)
    else:
        pytest.fail("the kept answer outlived the data it was built from")
    assert seen.since()["made"] >= 1


def test_an_answer_read_outside_the_caches_is_not_kept(server, sessions, day):
    """Courier positions are read from the store for each request: nothing says when they
    change, so the map that shows them is made every time."""
    url, app = server[0], server[1]
    view = {**st.default(node="b-440305", day=day, hour=11), "layers": ["hexes", "couriers"]}
    body = _body(view, output=MAP_OUT, states=[{"id": "geometry-key", "property": "data", "value": None}])
    seen = Outcomes(app)
    for _ in range(2):
        assert _ask(sessions["nanshan"], url, body).status_code == 200
    assert seen.since() == {"kept": 0, "made": 0, "not_kept": 2}


def test_what_a_panel_reads_is_recorded(server, day):
    """The recording the cache relies on: the KPI panel reads versioned day frames only;
    the positions of couriers are an uncached read."""
    store = server[2]
    model = Model(store, Settings.from_env({}))
    tracking.begin()
    model.kpis("r-440300", day, 11)
    reads = tracking.end()
    assert not reads.uncached
    assert any(k[0] == "cube" for k in reads.versions) and any(k[0] == "hours" for k in reads.versions)
    assert all(model.version_of(k) == v for k, v in reads.versions.items())
    tracking.begin()
    model.positions("b-440305", day, 11, "courier")
    assert tracking.end().uncached
