"""Web workers of the serving process: the dashboard's callbacks in processes of their own.

One process serving everything shares one interpreter lock between the ingest API, the
writer and the Python that builds the dashboard's figures; under dashboard load, ingest
loses (``docs/operations.md``, "Ingest under dashboard load"). With ``serve
--web-processes N`` (``EMAP_WEB_PROCESSES``) the serving process keeps the store, the
ingest API, the phone listener, the writer, the pages and the administration, and hands
each callback request of the dashboard's panels to one of N worker processes
(:mod:`cli.web_worker`), which read the store through the serving process
(:mod:`data.store.remote`). The workers run ``EMAP_WEB_NICE`` steps lower, so that
when the cores are all busy the kernel runs ingest first.

The browser sees one server: the same port, the same session, the same answers. A
callback is handed over before the serving process looks into it, and the worker checks
it (sign-in, scope, CSRF) as the serving process would; a worker that does not answer
is taken out of the rotation, the request is answered here, and the worker is started
again.
"""

from __future__ import annotations

import http.client
import logging
import os
import queue
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import flask

from auth.web import CALLBACK_PATH, SECRET_ENV
from cli.web_worker import PEER_HEADER, SCHEME_HEADER
from data.store.remote import QueryServer
from pages import ids
from pages.answers import OUTCOME_HEADER

log = logging.getLogger("emap.web_pool")

ROOT = Path(__file__).resolve().parents[1]
#: Seconds a handed-over callback may take before it is answered here instead.
FORWARD_TIMEOUT = 120.0
#: Seconds a worker has to answer its first request after it started.
START_TIMEOUT = 180.0
#: Connections kept open to each worker between requests.
IDLE_CONNECTIONS = 64
#: Seconds between two starts of one worker.
RESTART_PAUSE = 10.0
#: Headers that belong to one connection (RFC 9110 7.6.1), never passed on; and the ones
#: only the serving process may set.
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "x-emap-peer",
        "x-emap-scheme",
    }
)
_PEER = PEER_HEADER[len("HTTP_") :].replace("_", "-")
_SCHEME = SCHEME_HEADER[len("HTTP_") :].replace("_", "-")


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the Unix socket of one worker."""

    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.path)
        self.sock = sock


class _Worker:
    def __init__(self, index: int, http_socket: Path):
        self.index, self.http_socket = index, http_socket
        self.proc: subprocess.Popen | None = None
        self.ready = False
        self.started = 0.0
        #: Kept-alive connections to it, shared by the request threads (a thread's own
        #: would hold one per thread: far more than the worker takes).
        self.idle: queue.LifoQueue[_UnixConnection] = queue.LifoQueue()

    def take(self) -> tuple[_UnixConnection, bool]:
        """A connection to the worker, and whether it was used before."""
        try:
            return self.idle.get_nowait(), True
        except queue.Empty:
            return _UnixConnection(str(self.http_socket), FORWARD_TIMEOUT), False

    def give(self, conn: _UnixConnection) -> None:
        if self.idle.qsize() < IDLE_CONNECTIONS:
            self.idle.put(conn)
        else:
            conn.close()

    def drop_idle(self) -> None:
        while True:
            try:
                self.idle.get_nowait().close()
            except queue.Empty:
                return


class WebPool:
    """N worker processes and the query socket they read the store through.

    Parameters
    ----------
    store : Store
        The store this process owns.
    processes : int
        Workers to run.
    nice : int
        How much lower the threads running the workers' statements here are scheduled
        (the workers lower themselves by ``EMAP_WEB_NICE``).
    """

    def __init__(self, store, processes: int, nice: int = 0):
        self.store = store
        self.dir = Path(tempfile.mkdtemp(prefix="emap-web-"))  # 0700: this account only
        # the workers' statements run here, scheduled as low as the workers themselves
        self.query = QueryServer(store, self.dir / "query.sock", nice=nice)
        self.workers = [_Worker(i, self.dir / f"web-{i}.sock") for i in range(processes)]
        self._next = 0
        self._closing = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> WebPool:
        # The workers must read the same session cookies: one key for all processes.
        if not os.environ.get(SECRET_ENV):
            os.environ[SECRET_ENV] = secrets.token_hex(32)
        if self.query.nice > 0:
            # DuckDB would run a statement on threads of its own pool too, which nothing
            # lowers: with one thread, each statement runs on the thread that asked, so a
            # worker's runs as low as the worker and the writer's commit goes first.
            self.store.cursor().execute("SET threads = 1")
        self.query.start()
        for w in self.workers:
            self._spawn(w)
        threading.Thread(target=self._watch, name="emap-web-pool", daemon=True).start()
        return self

    def _spawn(self, w: _Worker) -> None:
        w.drop_idle()  # connections to the process before, if any
        w.http_socket.unlink(missing_ok=True)
        w.ready, w.started = False, time.monotonic()
        env = {**os.environ, "EMAP_LIVE_DEMO": "0"}  # the serving process plays it
        w.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.web_worker", str(self.query.path), str(w.http_socket)],
            cwd=ROOT,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C is for the serving process: it stops them
        )
        log.info("web worker %d started (pid %d)", w.index, w.proc.pid)

    def _watch(self) -> None:
        """Marks workers ready once they answer; starts again the ones that exited."""
        while not self._closing.wait(0.5):
            for w in self.workers:
                if w.proc is None:
                    continue
                if w.proc.poll() is not None:
                    w.ready = False
                    if time.monotonic() - w.started < RESTART_PAUSE:
                        continue  # one that fails at its start is not started in a loop
                    log.warning("web worker %d exited with %s: starting it again", w.index, w.proc.returncode)
                    self._spawn(w)
                elif not w.ready:
                    w.ready = _answers(w.http_socket)
                    if w.ready:
                        log.info(
                            "web worker %d answering after %.0f s", w.index, time.monotonic() - w.started
                        )
                    elif time.monotonic() - w.started > START_TIMEOUT:
                        log.error(
                            "web worker %d did not start in %.0f s: stopping it", w.index, START_TIMEOUT
                        )
                        w.proc.kill()

    def ready(self) -> list[_Worker]:
        return [w for w in self.workers if w.ready]

    def forward(self, request: flask.Request) -> flask.Response | None:
        """The answer of a worker to ``request``, or None when none could answer (the
        caller answers it itself)."""
        ready = self.ready()
        if not ready:
            return None
        with self._lock:
            self._next += 1
            first = self._next
        body = request.get_data(cache=True)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        headers[_PEER] = request.environ.get("REMOTE_ADDR") or ""
        headers[_SCHEME] = request.environ.get("wsgi.url_scheme", "http")
        path = request.full_path if request.query_string else request.path
        for k in range(len(ready)):
            w = ready[(first + k) % len(ready)]
            try:
                return self._ask(w, path, body, headers)
            except TimeoutError:
                # A worker that is slow, not gone: answering again here would only do
                # the work twice on a machine already short of time.
                log.warning("web worker %d took over %.0f s for a callback", w.index, FORWARD_TIMEOUT)
                return flask.Response("the dashboard is too busy to answer now; try again", 504)
            except (OSError, http.client.HTTPException) as exc:
                log.warning("web worker %d did not answer (%s): answering here", w.index, exc)
                w.drop_idle()
                w.ready = _answers(w.http_socket)
        return None

    def _ask(self, w: _Worker, path: str, body: bytes, headers: dict) -> flask.Response:
        conn, reused = w.take()
        try:
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except TimeoutError:
            conn.close()
            raise
        except (OSError, http.client.HTTPException):
            conn.close()
            if reused:  # a kept-alive connection the worker had closed meanwhile: once more
                return self._ask(w, path, body, headers)
            raise
        kept = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
        if resp.will_close:
            conn.close()
        else:
            w.give(conn)
        return flask.Response(data, status=resp.status, headers=kept)

    def close(self) -> None:
        """Stop the workers (SIGTERM, then SIGKILL after 10 s) and the query socket."""
        self._closing.set()
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.terminate()
        deadline = time.monotonic() + 10
        for w in self.workers:
            if w.proc is None:
                continue
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
        self.query.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _answers(path: Path) -> bool:
    """The worker at ``path`` answers HTTP (its sign-in page)."""
    if not path.exists():
        return False
    conn = _UnixConnection(str(path), 10.0)
    try:
        conn.request("GET", "/login")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def install(app, pool: WebPool) -> None:
    """Hand the callbacks of the dashboard's panels (``app.panel_outputs``) to ``pool``,
    before anything else of this process looks at them. The administration's callbacks
    stay here, beside the writer they use."""
    panel_outputs = frozenset(app.panel_outputs)
    metrics = app.metrics
    metrics.watch_web_workers(lambda: len(pool.ready()))
    live_pages = getattr(app, "live_pages", None)

    def hand_over():
        req = flask.request
        if req.path != CALLBACK_PATH or req.method != "POST":
            return None
        body = req.get_json(silent=True)
        output = body.get("output") if isinstance(body, dict) else None
        if not isinstance(output, str) or output not in panel_outputs:
            return None
        t0 = time.perf_counter()
        answer = pool.forward(req)
        if answer is None:
            metrics.web_callback("server")
            return None  # answered here, by the hooks and the callback of this process
        metrics.web_callback("worker")
        metrics.callback(output, time.perf_counter() - t0)
        outcome = answer.headers.pop(OUTCOME_HEADER, None)
        if outcome is not None:  # counted here: a worker's own metrics are not served
            metrics.answer(outcome)
        if live_pages is not None and answer.status_code == 200 and output.startswith(LIVE_OUTPUT):
            page = _live_page(body)
            if page is not None:
                live_pages.seen(page)  # emap_live_subscribers is this process's gauge
        return answer

    app.server.before_request_funcs.setdefault(None, []).insert(0, hand_over)


#: The start of the live view's version callback's output (``pages/live.py``).
LIVE_OUTPUT = f"..{ids.LIVE_VERSION}.data"


def _live_page(body: dict):
    """The page id a live page's callback carries when live mode is on, else None."""
    items = [*(body.get("inputs") or []), *(body.get("state") or [])]
    by_id = {
        i.get("id"): i.get("value") for i in items if isinstance(i, dict) and isinstance(i.get("id"), str)
    }
    return by_id.get(ids.OUTLOOK_CLIENT) if by_id.get(ids.LIVE) else None
