"""Scheduled reports on a real copy of the small demo: creating them, the runner's look
at a chosen time (CSV outputs, keep N, retries), schedules that stop when their
creator is moved or disabled, and the download route over real HTTP."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests

from auth import users
from auth.viewer import OutsideScope, of_store
from config import Settings
from data.store import schedules as table
from data.store.database import Store
from reports import FORMATS
from reports.scheduler import Scheduler, run_due
from tests.auth_support import PASSWORD, XSS_NAME, login
from tests.conftest import served
from views import schedules as sched

TZ = ZoneInfo("Asia/Shanghai")
#: (user, role, node): two branch managers of Shenzhen, a region manager, a viewer.
PEOPLE = (
    ("nanshan", "manager", "b-440305"),
    ("futian", "manager", "b-440304"),
    ("shenzhen", "manager", "r-440300"),
    ("sz-viewer", "viewer", "r-440300"),
)
#: The morning after the small demo's newest day (2026-11-20), local time.
MORNING = datetime(2026, 11, 21, 7, 0, tzinfo=TZ)


def make_store(src, dest) -> Store:
    """A writable copy of the small demo with :data:`PEOPLE` (password ``PASSWORD``)."""
    shutil.copy(src, dest)
    store = Store(dest)
    users.ensure_tables(store)
    for uid, role, node in PEOPLE:
        users.create_user(store, uid, PASSWORD, role, node, by="test")
    table.ensure_tables(store)
    return store


@pytest.fixture(scope="module")
def people_store(small_demo_path, tmp_path_factory):
    """Path of :func:`make_store`'s store, made once for the module (its accounts take a
    second or more to create): each test writes a copy of its own."""
    path = tmp_path_factory.mktemp("schedules-people") / "emap.duckdb"
    make_store(small_demo_path, path).close()
    return path


def copy_of(people_store, folder) -> Store:
    shutil.copy(people_store, folder / "emap.duckdb")
    return Store(folder / "emap.duckdb")


@pytest.fixture
def env(people_store, tmp_path):
    store = copy_of(people_store, tmp_path)
    settings = Settings.from_env({}, data_dir=tmp_path)
    yield store, settings
    store.close()


@pytest.fixture(scope="module")
def day_csv(people_store, tmp_path_factory):
    """A store whose branch manager's day schedule produced its CSV (a day's report
    costs seconds: made once for the tests that read it)."""
    folder = tmp_path_factory.mktemp("schedules")
    store = copy_of(people_store, folder)
    settings = Settings.from_env({}, data_dir=folder)
    sid = new(store, "nanshan", "b-440305")
    done = run_due(store, settings, now=MORNING)
    yield store, settings, sid, done
    store.close()


def viewer_of(store, uid):
    return of_store(store, users.get_user(store, uid))


def new(store, uid, node, fmt="csv", period="day", at="06:00", keep=3, metric="scans"):
    return sched.create(store, viewer_of(store, uid), node, metric, period, fmt, at, keep, "en")


def test_the_formats_are_the_reports(env):
    assert set(sched.FORMATS) == set(FORMATS)


def test_a_day_schedule_makes_a_csv_once_audited_as_its_creator(day_csv):
    store, settings, sid, done = day_csv
    assert [(r["schedule_id"], r["status"]) for r in done] == [(sid, "produced")]
    outs = table.outputs(store, sid)
    assert [o["period"] for o in outs] == ["2026-11-20"]
    path = settings.data_dir / "reports" / sid / outs[0]["file_name"]
    head = path.read_text(encoding="utf-8").splitlines()[0]
    assert head.startswith("cell,") and "value" in head
    assert outs[0]["bytes"] == path.stat().st_size
    s = table.get(store, sid)
    assert s["last_period"] == "2026-11-20" and s["last_error"] is None
    # produced once: the next look the same morning has nothing to do
    assert run_due(store, settings, now=MORNING + timedelta(minutes=1)) == []
    log = users.audit_log(store, "export")
    assert log.filter(log["detail"].str.contains(sid))["user_id"].to_list() == ["nanshan"]


def test_keep_n_prunes_the_oldest_outputs(env):
    store, settings = env
    sid = new(store, "nanshan", "b-440305", period="hour", at="00:05", keep=2)
    made = []
    for hour in (10, 11, 12):  # each look produces the hour before
        now = datetime(2026, 11, 20, hour, 6, tzinfo=TZ)
        (r,) = run_due(store, settings, now=now)
        assert r["status"] == "produced", r
        made.append(r["detail"])
    outs = table.outputs(store, sid)
    assert [o["period"] for o in outs] == ["2026-11-20T11", "2026-11-20T10"]
    files = sorted(p.name for p in (settings.data_dir / "reports" / sid).iterdir())
    assert files == sorted(made[1:])


def test_an_empty_period_is_recorded_and_tried_again_later(env):
    store, settings = env
    sid = new(store, "nanshan", "b-440305", period="hour", at="00:05")
    later = datetime(2026, 11, 30, 7, 6, tzinfo=TZ)  # the 30th holds no data
    (r,) = run_due(store, settings, now=later)
    assert r["status"] == "failed" and "no data" in r["detail"]
    s = table.get(store, sid)
    assert "no data" in s["last_error"] and s["stopped"] is None and s["last_period"] is None
    assert run_due(store, settings, now=later + timedelta(minutes=1)) == []  # waits before a retry
    (again,) = run_due(store, settings, now=later + timedelta(seconds=settings.schedule_retry_seconds + 60))
    assert again["status"] == "failed"


def test_a_creator_moved_to_another_branch_stops_the_schedule(env):
    store, settings = env
    sid = new(store, "futian", "b-440304")
    users.update_user(store, "futian", node_id="b-440305", by="test")
    (r,) = run_due(store, settings, now=MORNING)
    assert r["status"] == "stopped" and "outside" in r["detail"]
    s = table.get(store, sid)
    assert "b-440304" in s["stopped"] and table.outputs(store, sid) == []
    assert not (settings.data_dir / "reports" / sid).exists()
    assert run_due(store, settings, now=MORNING + timedelta(days=1)) == []  # stays stopped
    # the creator still sees it, with the reason, but no outputs of a node no longer theirs
    (seen,) = [s for s in sched.visible(store, viewer_of(store, "futian")) if s["schedule_id"] == sid]
    assert seen["stopped"] and not seen["held"] and seen["outputs"] == []


def test_a_disabled_creator_stops_the_schedule(env):
    store, settings = env
    sid = new(store, "shenzhen", "r-440300")
    users.update_user(store, "shenzhen", disabled=True, by="test")
    (r,) = run_due(store, settings, now=MORNING)
    assert r["status"] == "stopped" and "disabled" in r["detail"]
    assert table.get(store, sid)["stopped"] and table.outputs(store, sid) == []


def test_who_may_create_and_see(env):
    store, _ = env
    with pytest.raises(OutsideScope):
        new(store, "sz-viewer", "r-440300")  # viewers: none
    with pytest.raises(OutsideScope):
        new(store, "nanshan", "b-440304")  # another branch
    with pytest.raises(sched.ScheduleError):
        new(store, "nanshan", "b-440305", at="25:00")
    mine = new(store, "nanshan", "b-440305")
    theirs = new(store, "futian", "b-440304")
    assert {s["schedule_id"] for s in sched.visible(store, viewer_of(store, "nanshan"))} == {mine}
    assert {s["schedule_id"] for s in sched.visible(store, viewer_of(store, "shenzhen"))} == {mine, theirs}
    with pytest.raises(OutsideScope):
        sched.change(store, None, viewer_of(store, "nanshan"), theirs, "pause")


def test_paused_schedules_wait_and_a_resumed_stop_checks_the_rights_again(env):
    store, settings = env
    sid = new(store, "futian", "b-440304", period="hour", at="00:05")
    boss = viewer_of(store, "shenzhen")  # the region's manager may pause a branch's schedule
    sched.change(store, settings, boss, sid, "pause")
    assert run_due(store, settings, now=MORNING) == []
    users.update_user(store, "futian", disabled=True, by="test")
    sched.change(store, settings, boss, sid, "resume")
    (r,) = run_due(store, settings, now=MORNING)
    assert r["status"] == "stopped"
    users.update_user(store, "futian", disabled=False, by="test")
    sched.change(store, settings, boss, sid, "resume")
    assert table.get(store, sid)["stopped"] is None
    sched.change(store, settings, boss, sid, "delete")
    assert table.get(store, sid) is None
    log = users.audit_log(store, "schedule_change")["detail"].to_list()
    assert any(f"schedule={sid} pause" in d for d in log) and any("stopped" in d for d in log)


def test_the_runner_thread_records_a_failure_and_keeps_looking(env):
    """The thread looks at the real clock: the demo's days are long past, so the hour
    before now holds no data; the failure is recorded and the thread lives on."""
    store, settings = env
    sid = new(store, "nanshan", "b-440305", period="hour", at="00:00")
    runner = Scheduler(store, settings, interval=0.05).start()
    try:
        for _ in range(600):
            if table.get(store, sid)["last_error"]:
                break
            runner.thread.join(0.05)
        assert "no data" in table.get(store, sid)["last_error"]
        assert runner.thread.is_alive()
    finally:
        runner.close()
    assert not runner.thread.is_alive()


def test_the_download_route_checks_the_node_over_http(day_csv):
    from pages.app import build_app

    store, settings, sid, (r,) = day_csv
    name = r["detail"]
    store.cursor().execute("UPDATE nodes SET name = ? WHERE node_id = 'b-440305'", [XSS_NAME])
    app = build_app(store, settings, warm=False, prefetch=False, auth=True)
    with served(app) as url:
        own, _ = login(url, "nanshan")
        got = own.get(f"{url}/schedules/{sid}/files/{name}?node=b-440305")
        assert got.status_code == 200 and got.content.startswith(b"cell,")
        assert got.headers["Content-Disposition"] == f"attachment; filename={name}"
        page = own.get(f"{url}/schedules").text
        assert sid in page and name in page
        assert "<img src=x" not in page and "&lt;img src=x" in page  # a name from data is text
        other, _ = login(url, "futian")
        refused = other.get(f"{url}/schedules/{sid}/files/{name}")
        assert refused.status_code == 403 and name.encode() not in refused.content
        assert sid not in other.get(f"{url}/schedules").text
        for bad in ("..%2F..%2Femap.duckdb", "%2E%2E", ".emap.duckdb", "x.csv"):
            got = own.get(f"{url}/schedules/{sid}/files/{bad}?node=b-440305")
            assert "Content-Disposition" not in got.headers and b"DUCK" not in got.content[:64]
        viewer, _ = login(url, "sz-viewer")
        assert viewer.get(f"{url}/schedules/{sid}/files/{name}").status_code == 403
        # a form without its token changes nothing
        assert requests.post(f"{url}/schedules/{sid}/pause", cookies=own.cookies).status_code == 400
        assert table.get(store, sid)["paused"] is False
