"""``python app.py serve --web-processes 1``: the dashboard's callbacks answered by a worker
process that reads the store through the serving process.

A real server on a copy of the small demo; a branch manager signs in in headless Chromium
and uses the dashboard; the metrics say a worker answered. The browser's own callback
requests are then replayed: inside the manager's branch they are answered, moved to
other nodes they are refused, after sign-out they are refused; and with the worker
killed the dashboard still answers while the worker is started again."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.auth_support import PASSWORD, csrf_of, login
from tests.security.scope_support import OUTSIDE, OWN, USER, post, retarget
from tests.serve_support import serve_process

pytestmark = pytest.mark.browser

METRICS_TOKEN = "web-workers-test-metrics-token"
HEXES_DRAWN = """() => {
  const gd = document.querySelector('#map .js-plotly-plot');
  return !!(gd && gd.data && gd.data.some(t => t.uid === 'hexes' && t.locations && t.locations.length));
}"""


def _worker_pids(server_pid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == server_pid and b"cli.web_worker" in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def split(small_demo_path, tmp_path_factory):
    """A real server with one web worker; yields (url, server process, log path)."""
    with serve_process(
        small_demo_path,
        tmp_path_factory.mktemp("web-workers"),
        ready="web worker 0 answering",
        args=("--web-processes", "1"),
        env={"EMAP_METRICS_TOKEN": METRICS_TOKEN},
        drop_env=("EMAP_SECRET_KEY",),  # the server makes one and gives it to its worker
        patience=300,
    ) as served:
        yield served.url, served.proc, served.log_path


def _answered_by(url: str) -> dict[str, float]:
    text = requests.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=30
    ).text
    out = {"worker": 0.0, "server": 0.0, "ready": 0.0, "live": 0.0, "kept": 0.0, "made": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "emap_answers_total" and s.labels["outcome"] in out:
                out[s.labels["outcome"]] = s.value
            elif s.name == "emap_web_callbacks_total":
                out[s.labels["answered_by"]] = s.value
            elif s.name == "emap_web_workers_ready":
                out["ready"] = s.value
            elif s.name == "emap_live_subscribers":
                out["live"] = s.value
    return out


@pytest.fixture(scope="module")
def recorded(split, browser):
    """The manager's dashboard used in Chromium: the callback bodies its page sent."""
    url, _, _ = split
    context = browser.new_context(viewport={"width": 1500, "height": 900}, bypass_csp=True)
    page = context.new_page()
    page.set_default_timeout(120_000)
    bodies: list[dict] = []
    page.on(
        "request",
        lambda r: (
            bodies.append(json.loads(r.post_data))
            if r.url.split("?")[0].endswith("/_dash-update-component") and r.post_data
            else None
        ),
    )
    page.goto(f"{url}/?layers=hexes,zones,couriers")
    page.fill("#user", USER)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_function(HEXES_DRAWN)
    kpis = page.locator("#kpis").inner_text()
    page.click("#hour-next")
    page.wait_for_function("k => document.querySelector('#kpis').innerText !== k", arg=kpis)
    page.wait_for_timeout(1500)
    crumbs = page.locator("#breadcrumb").inner_text()
    page.click("#live input")  # live mode: its callback, answered by the worker, counts the page
    deadline = time.monotonic() + 60
    while (live := _answered_by(url)["live"]) < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    context.close()
    return {"bodies": bodies, "kpis": kpis, "crumbs": crumbs, "live": live}


def test_a_manager_uses_the_dashboard_answered_by_the_worker(split, recorded):
    url, proc, _ = split
    assert recorded["bodies"], "the page sent no callback"
    assert OWN in recorded["crumbs"] or "南山" in recorded["crumbs"] or "Nanshan" in recorded["crumbs"]
    assert re.search(r"\d", recorded["kpis"]), recorded["kpis"]
    counts = _answered_by(url)
    assert counts["ready"] == 1
    assert counts["worker"] >= len([b for b in recorded["bodies"] if "." in b.get("output", "")]) // 2
    assert counts["server"] == 0, counts
    assert recorded["live"] == 1  # the live page, counted by the serving process
    assert len(_worker_pids(proc.pid)) == 1


def _panel_bodies(recorded) -> list[dict]:
    """Recorded requests of callbacks whose state names the manager's branch."""
    return [b for b in recorded["bodies"] if OWN in json.dumps(b)]


def test_replayed_callbacks_are_held_to_the_managers_branch_by_the_worker(split, recorded):
    url, _, _ = split
    session, _ = login(url, USER)
    bodies = _panel_bodies(recorded)
    assert bodies, "no recorded request names the branch"
    before = _answered_by(url)
    nodes = frozenset({OWN, *OUTSIDE})
    for body in bodies[:6]:
        own = post(session, url, body)
        assert own.status_code in (200, 204), (own.status_code, own.text[:300])
        again = post(session, url, body)  # a panel's answer: kept by the worker this time
        assert again.status_code == own.status_code and again.content == own.content
        for answer in (own, again):  # the worker's word to the serving process stays inside
            assert "X-EMAP-Answer" not in answer.headers
        for target in OUTSIDE[:3]:
            forged = post(session, url, retarget(body, nodes, target))
            assert forged.status_code == 403, (target, forged.status_code, forged.text[:300])
    after = _answered_by(url)
    assert after["worker"] > before["worker"]
    # what the worker's answer cache did is counted by the serving process
    assert after["kept"] > before["kept"] and after["made"] + after["kept"] > before["made"] + before["kept"]


def test_a_signed_out_session_is_refused_by_the_worker(split, recorded):
    url, _, _ = split
    session, _ = login(url, USER)
    body = _panel_bodies(recorded)[0]
    assert post(session, url, body).status_code in (200, 204)
    cookies = session.cookies.get_dict()
    form = session.get(f"{url}/logout", timeout=30).text
    out = session.post(f"{url}/logout", data={"csrf": csrf_of(form)}, allow_redirects=False, timeout=30)
    assert out.status_code in (302, 303)
    thief = requests.Session()
    thief.cookies.update(cookies)  # the cookie as it was before the sign-out
    time.sleep(2.5)  # sessions are checked against the store every 2 s
    answer = post(thief, url, body, allow_redirects=False)
    assert answer.status_code in (401, 403), (answer.status_code, answer.text[:300])


def test_a_killed_worker_is_replaced_and_the_dashboard_keeps_answering(split, recorded):
    url, proc, log_path = split
    session, _ = login(url, USER)
    body = _panel_bodies(recorded)[0]
    [worker] = _worker_pids(proc.pid)
    os.kill(worker, signal.SIGKILL)  # a process this test's server started
    deadline = time.monotonic() + 30
    while worker in _worker_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    answer = post(session, url, body)
    assert answer.status_code in (200, 204), answer.text[:300]
    assert _answered_by(url)["server"] >= 1
    deadline = time.monotonic() + 60
    while not (new := [p for p in _worker_pids(proc.pid) if p != worker]) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert new, log_path.read_text()[-2000:]
    assert "web worker 0 exited" in log_path.read_text()


def test_workers_end_when_the_serving_process_is_killed(split):
    """Last in this module: it ends the server."""
    url, proc, log_path = split
    deadline = time.monotonic() + 60
    while not (workers := _worker_pids(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert workers, log_path.read_text()[-2000:]
    proc.kill()  # no stop signal: the workers are not told
    proc.wait(30)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{p}").exists() for p in workers) and time.monotonic() < deadline:
        time.sleep(0.5)
    alive = [p for p in workers if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]
    assert not alive, f"workers {alive} outlived the serving process"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
