"""The push channel of live mode (``GET /live/events``) on a real server on loopback: it
needs a session, sends the signed-in viewer's own fingerprint when their data changes and
nothing for data outside their subtree, stops when the session ends, holds its caps, and
does not hold up a server's stop."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime

import orjson
import pytest
import requests

from auth import users
from auth.viewer import Viewer
from config import PROJECT_ROOT, Settings
from data.store.database import Store
from tests.auth_support import PASSWORD, csrf_of, login, signed_in_server
from tests.ingest_support import free_port
from views import live
from views.model import Model, ViewerModel

#: Points inside two branches of the small demo: Nanshan (Shenzhen) and Tianhe (Guangzhou).
NANSHAN = (22.5329, 113.9305)
GUANGZHOU = (23.1291, 113.3644)
#: Seconds to wait for an event that must come: the checker looks every 0.5 s at figures
#: trusted for 1 s; a loaded machine is given ample room.
COMES_WITHIN = 20.0


class Events:
    """An open event stream, read by a thread: ``next()`` gives the next event (a dict of
    its fields), None when none came in time; ``ended`` is set when the server closed it."""

    def __init__(self, session: requests.Session, url: str):
        self.response = session.get(f"{url}/live/events", stream=True, timeout=(5, 60))
        self.status = self.response.status_code
        self.queue: queue.Queue = queue.Queue()
        self.ended = threading.Event()
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        fields: dict = {}
        try:
            for line in self.response.iter_lines(decode_unicode=True):
                if line == "":
                    if fields:
                        self.queue.put(fields)
                    fields = {}
                elif line.startswith(":"):
                    fields.setdefault("comment", line[1:].strip())
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value.lstrip()
        except (requests.RequestException, AttributeError):  # closed by this side
            pass
        finally:
            self.ended.set()

    def next(self, timeout: float = COMES_WITHIN) -> dict | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def version(self, timeout: float = COMES_WITHIN) -> dict | None:
        """The data of the next ``version`` event (None if none came)."""
        while True:
            event = self.next(timeout)
            if event is None:
                return None
            if event.get("event") == "version":
                return orjson.loads(event["data"])

    def close(self) -> None:
        self.response.close()


@pytest.fixture(scope="module")
def push_server(small_demo_path, tmp_path_factory):
    """A dashboard with sign-in, the ingest API and the push channel on a copy of the small
    demo: ``(url, app, store, ingest headers, a courier device)``."""
    accounts = (("hq-admin", "admin", "hq"), ("nanshan", "manager", "b-440305"), ("other", "manager", "hq"))
    settings = Settings.from_env({}, live_channel="push")
    folder = tmp_path_factory.mktemp("push")
    with signed_in_server(small_demo_path, folder, accounts, settings, "test-push") as server:
        yield server


def _post(server, where: tuple[float, float], second: int) -> None:
    url, _app, _store, headers, device = server
    now = int(datetime.now(UTC).timestamp())
    fix = {"device_id": device, "ts": now - 60 + second, "lat": where[0], "lng": where[1]}
    answer = requests.post(f"{url}/api/v1/pings", json=[fix], headers=headers, timeout=30)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text


def _signed_in(url: str, user: str) -> requests.Session:
    s, answer = login(url, user)
    assert answer.status_code in (302, 303), answer.text
    return s


def _viewer(store, node: str) -> Viewer:
    n = store.nodes()
    ids = n["node_id"].to_list()
    parents = dict(zip(ids, n["parent_id"].to_list(), strict=True))
    levels = dict(zip(ids, n["level"].to_list(), strict=True))
    return Viewer.for_user(
        {"user_id": "x", "role": "manager", "node_id": node, "can_see_couriers": False}, parents, levels
    )


def test_the_stream_needs_a_session(push_server):
    url = push_server[0]
    answer = requests.get(f"{url}/live/events", allow_redirects=False, timeout=10)
    assert answer.status_code in (302, 401)
    assert "text/event-stream" not in answer.headers.get("Content-Type", "")
    if answer.status_code == 302:
        assert answer.headers["Location"].startswith("/login")
    # a forged cookie is no session
    forged = requests.get(
        f"{url}/live/events", cookies={"emap_session": "x" * 40}, allow_redirects=False, timeout=10
    )
    assert forged.status_code in (302, 401)


def test_a_managers_stream_says_when_their_subtree_changes_and_only_then(push_server):
    url, app, store, _headers, _device = push_server
    hq = Events(_signed_in(url, "hq-admin"), url)
    nanshan = Events(_signed_in(url, "nanshan"), url)
    try:
        assert hq.status == nanshan.status == 200
        assert hq.response.headers["Content-Type"].startswith("text/event-stream")
        first = nanshan.version()
        # what it carries is the fingerprint of the manager's own branch, as the poll's
        model = Model(store, Settings.from_env({}))
        mine = live.fingerprint(ViewerModel(model, _viewer(store, "b-440305")), "b-440305")
        assert first == mine and set(first) == {"v", "newest"}
        hq_first = hq.version()
        assert hq_first is not None and hq_first["v"] != first["v"]

        # a fix in Guangzhou: headquarters hears of it, the Nanshan manager does not
        _post(push_server, GUANGZHOU, 1)
        hq_next = hq.version()
        assert hq_next is not None and hq_next["v"] != hq_first["v"]
        assert nanshan.next(timeout=2.5) is None  # the checker has looked since hq's event

        # a fix in Nanshan reaches both
        _post(push_server, NANSHAN, 2)
        changed = nanshan.version()
        assert changed is not None and changed["v"] != first["v"]
        assert hq.version() is not None
        assert app.live_events.count() == 2
    finally:
        hq.close()
        nanshan.close()


def test_a_node_in_the_query_does_not_choose_the_stream(push_server):
    url, _app, store, _headers, _device = push_server
    s = _signed_in(url, "nanshan")
    answer = s.get(f"{url}/live/events?node=hq", allow_redirects=False, timeout=10)
    assert answer.status_code == 302 and "node=b-440305" in answer.headers["Location"]
    stream = Events(s, url)  # what a browser's EventSource does: the redirect is followed
    try:
        model = Model(store, Settings.from_env({}))
        mine = live.fingerprint(ViewerModel(model, _viewer(store, "b-440305")), "b-440305")
        assert stream.version() == mine
    finally:
        stream.close()


def test_the_stream_stops_when_its_user_signs_out(push_server):
    url = push_server[0]
    s = _signed_in(url, "nanshan")
    stream = Events(s, url)
    try:
        assert stream.status == 200 and stream.version() is not None
        token = csrf_of(s.get(f"{url}/logout", timeout=10).text)
        assert (
            s.post(f"{url}/logout", data={"csrf": token}, allow_redirects=False, timeout=10).status_code
            == 302
        )
        assert stream.ended.wait(COMES_WITHIN), "the stream went on after the sign-out"
        again = s.get(f"{url}/live/events", allow_redirects=False, timeout=10)
        assert again.status_code in (302, 401)
    finally:
        stream.close()


def test_the_stream_stops_when_the_users_sessions_are_ended(push_server):
    url, _app, store, _headers, _device = push_server
    stream = Events(_signed_in(url, "other"), url)
    try:
        assert stream.status == 200 and stream.version() is not None
        users.end_sessions_of(store, "other")  # what disabling a user or a password reset does
        assert stream.ended.wait(COMES_WITHIN), "the stream went on after the sessions ended"
    finally:
        stream.close()


def test_streams_are_capped_per_session_and_per_server(push_server):
    url, app, _store, _headers, _device = push_server
    hub = app.live_events
    s = _signed_in(url, "hq-admin")
    streams = [Events(s, url) for _ in range(live.STREAMS_PER_SESSION)]
    try:
        assert [e.status for e in streams] == [200] * live.STREAMS_PER_SESSION
        refused = s.get(f"{url}/live/events", timeout=10)
        assert refused.status_code == 429
        assert "live pages are open in this session" in refused.json()["error"]
        assert refused.headers["Retry-After"]
        # another session still gets one, up to the server's cap
        other = _signed_in(url, "hq-admin")
        # (streams of earlier tests, closed by their client, may not be noticed yet)
        saved, hub.max_streams = hub.max_streams, hub.count() + 1
        try:
            one = Events(other, url)
            assert one.status == 200
            full = other.get(f"{url}/live/events", timeout=10)
            assert full.status_code == 429 and "live streams are open on this server" in full.json()["error"]
            one.close()
        finally:
            hub.max_streams = saved
    finally:
        for e in streams:
            e.close()


def test_a_server_stop_is_not_held_up_by_open_streams(tmp_path, small_demo_path):
    """``python app.py serve`` (waitress) with a stream open: SIGTERM ends the stream and the
    server stops without waiting on the stream's thread (waitress would log that it gave up
    on threads still running)."""
    shutil.copy(small_demo_path, tmp_path / Settings().db_name)
    with Store(tmp_path / Settings().db_name) as store:
        users.ensure_tables(store)
        users.create_user(store, "admin", PASSWORD, "admin", "hq", by="test")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "EMAP_OSMAND_PORT"}
    env |= {"EMAP_DATA_DIR": str(tmp_path), "EMAP_LIVE_CHANNEL": "push", "PYTHONPATH": str(PROJECT_ROOT)}
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "serve", "--no-live-demo", "--osmand-port", "0", "--port", str(port)],
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=out,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        from tests.test_serve_ports import _wait_until_serving

        _wait_until_serving(proc, port, log)
        stream = Events(_signed_in(url, "admin"), url)
        assert stream.status == 200 and stream.version() is not None
        proc.send_signal(signal.SIGTERM)
        assert stream.ended.wait(30), "the stream stayed open after SIGTERM"
        # The exit status is not asserted: a server stopped while its start-up warm-up
        # still reads the store can abort in DuckDB at interpreter exit, stream or not.
        proc.wait(timeout=60)
        text = log.read_text()
        assert "still running" not in text, text[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
