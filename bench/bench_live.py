"""Live benchmark: dashboard users and live ingest at once against a real server.

A real ``python app.py serve`` subprocess on 127.0.0.1 serves a copy of a generated demo
store. First a real headless Chromium, signed in as the demo admin, records the callback
requests of different views (page load at headquarters, an hour change, drill-downs to a
division, a region and a branch, live mode switched on, a live poll). Then, for each
``--users`` N, for ``--seconds``:

* idle: N simulated users replay the recorded requests, each with its own session,
  view after view with ``--think`` seconds between views;
* ingest alone: batches of pings (``--batch-clients`` clients posting ``--batch-size``
  pings, paced to ``--ingest-rate``) to ``/api/v1/pings`` and single OsmAnd fixes (keep-
  alive connections, paced to ``--phone-rate``) to the phone port, no users (once);
* both at once.

After the runs the server is stopped and its store opened: every acknowledged ping is
looked for by (device, time). Last, with the server running again and no load, one
Chromium page in live mode sees fixes of new devices arrive: the seconds from the
server's acknowledgement to the changed KPI courier count in the page, both read from
``time.time()`` on this machine, for each live channel of ``--live-channel`` (``poll``,
``push`` or ``both``: the server is started with ``EMAP_LIVE_CHANNEL`` set to each in
turn). ``--latency-only`` skips the user and ingest runs.

The load comes from this machine too (processes of this script, sharing the cores with
the server): their CPU is printed beside the server's, with the load average.

    .venv/bin/python bench/bench_live.py                          # 8, 32, 64 users, 60 s
    .venv/bin/python bench/bench_live.py --users 8 --seconds 20 --latency-samples 5
    .venv/bin/python bench/bench_live.py --db var/bench-live-default.duckdb
    .venv/bin/python bench/bench_live.py --latency-only --latency-samples 20 --live-channel both

Without ``--db`` the demo of ``--size`` is generated once into
``var/bench-live-<size>.duckdb``; every run works on a copy of it in ``var/bench-live-run/``.
Prints figures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dashboard import HEXES_DRAWN, MAP_XY  # noqa: E402  (the dashboard bench's page probes)

#: The demo admin (data/demo/accounts.py) signs in with this password: the server is
#: started with it as EMAP_DEMO_PASSWORD, and it is set on the copy when the account exists.
ADMIN = "admin"
PASSWORD = "bench live password 42"
#: A fixed session key, so that the browser's and the simulated users' cookies stay valid
#: when the server is restarted for the latency run.
SECRET_KEY = "bench-live-session-key-0123456789abcdef"
#: The bearer token the benchmark reads the server's ``/metrics`` with.
METRICS_TOKEN = "bench-live-metrics-token-0123456789"
#: The id of the store holding a page's own id (``pages/ids.py`` OUTLOOK_CLIENT).
OUTLOOK_CLIENT = "outlook-client"
#: Where the new devices of the latency run report (Shenzhen, Futian: inside the network).
LAT, LNG = 22.5431, 114.0579
#: Fixes of new devices per latency sample.
LATENCY_DEVICES = 3
CALLBACK = "/_dash-update-component"

COURIERS = (
    "(() => { const v = document.querySelector('#kpi-couriers .value'); return v ? v.textContent : null; })()"
)
COURIERS_CHANGED = (
    "(b) => { const v = document.querySelector('#kpi-couriers .value');"
    " return v !== null && v.textContent !== b; }"
)


# -- small helpers -----------------------------------------------------------------------------
def loadavg() -> str:
    """The 1-, 5- and 15-minute load averages: other work on the machine moves the figures."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def quantiles(values: list[float]) -> tuple[float, float, float]:
    """p50, p95, p99 (nearest rank) of ``values``; NaNs when empty."""
    if not values:
        return (float("nan"),) * 3
    s = sorted(values)
    return tuple(s[min(len(s) - 1, int(q * len(s)))] for q in (0.50, 0.95, 0.99))  # type: ignore[return-value]


def ms(values: list[float]) -> str:
    p50, p95, p99 = quantiles(values)
    return f"p50 {p50 * 1000:6.0f}  p95 {p95 * 1000:6.0f}  p99 {p99 * 1000:6.0f} ms"


def clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S.%f")[:-3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_counts(into: dict, more: dict) -> dict:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v
    return into


# -- the store ---------------------------------------------------------------------------------
def ensure_db(size: str) -> Path:
    """The demo of ``size``, generated once into ``var/`` (written under a temporary name
    first, so that an interrupted generation is not taken for a finished one)."""
    path = ROOT / "var" / f"bench-live-{size}.duckdb"
    if path.exists():
        return path
    sys.path.insert(0, str(ROOT))
    from data.demo import generator as demo
    from data.store.database import Store

    tmp = path.with_name(path.name + ".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.unlink(missing_ok=True)
    Path(f"{tmp}.wal").unlink(missing_ok=True)
    print(f"generating the {size} demo into {path} ...", flush=True)
    with Store(tmp) as s:
        demo.generate(s, size=size, seed=7, days=2)
    tmp.rename(path)
    return path


def prepare(source: Path, run_dir: Path, latency_ids: list[str], import_rows: int = 0) -> dict:
    """Copy ``source`` into ``run_dir`` and give the copy what the benchmark needs: a
    system token, the demo admin's password, the devices of the latency run."""
    sys.path.insert(0, str(ROOT))
    from datetime import datetime as dt

    import polars as pl

    from auth import users
    from data.demo.accounts import ACCOUNTS
    from data.ingest.tokens import create_token
    from data.store.database import Store

    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    db = run_dir / "emap.duckdb"
    shutil.copy(source, db)
    with Store(db) as store:
        token = create_token(store, "system", "bench-live")
        users.ensure_tables(store)
        if users.get_user(store, ADMIN) is not None:
            users.update_user(store, ADMIN, password=PASSWORD, by="bench")
        elif store.meta("demo_size") is None:  # not a demo store: no demo accounts will come
            role, node = next((r, n) for u, r, n, _ in ACCOUNTS if u == ADMIN)
            users.create_user(store, ADMIN, PASSWORD, role, node, by="bench")
        devices = store.sql("SELECT device_id FROM devices WHERE courier_id IS NOT NULL ORDER BY device_id")[
            "device_id"
        ].to_list()
        newest = store.scalar("SELECT epoch(max(ts))::BIGINT FROM pings")
        end_date = store.meta("demo_end_date") or store.scalar("SELECT max(ts)::DATE::VARCHAR FROM pings")
        store.upsert(
            "devices",
            pl.DataFrame(
                {
                    "device_id": latency_ids,
                    "courier_id": [f"c-{d}" for d in latency_ids],
                    "vehicle_id": [None] * len(latency_ids),
                    "registered_at": [dt(2026, 1, 1)] * len(latency_ids),
                },
                schema_overrides={"vehicle_id": pl.String},
            ),
            "device_id",
        )
        upload = None
        if import_rows:
            # A file of the store's own pings moved a week back: new records (not duplicates),
            # of registered devices, on days nobody looks at during the runs.
            upload = run_dir / f"import-{import_rows}.parquet"
            store.cursor().execute(
                "COPY (SELECT device_id, timezone('UTC', ts - INTERVAL 7 DAY) AS ts, lat, lng, speed, heading, accuracy "
                f"FROM pings ORDER BY ts LIMIT {int(import_rows)}) TO '{upload}' (FORMAT parquet)"
            )
    return {
        "db": db,
        "token": token,
        "devices": devices,
        "newest": newest or 0,
        "day": str(end_date),
        "upload": upload,
    }


def import_worker(port: int, token: str, path: str, start_at: float):
    """POST the file ``path`` to ``/api/v1/import`` from ``start_at``: (HTTP status, the
    answer, seconds, CPU seconds of this process)."""
    time.sleep(max(0.0, start_at - time.time()))
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    with open(path, "rb") as body:
        conn.request(
            "POST",
            f"/api/v1/import?kind=pings&name={Path(path).name}",
            body=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Length": str(os.path.getsize(path)),
                "Content-Type": "application/octet-stream",
            },
        )
        answer = conn.getresponse()
        text = answer.read().decode(errors="replace")
    seconds = time.perf_counter() - t0
    return answer.status, text[:300], seconds, time.process_time()


# -- the server --------------------------------------------------------------------------------
class Server:
    """``python app.py serve`` on a store of ``run_dir``, as a subprocess of this script."""

    def __init__(
        self,
        run_dir: Path,
        threads: int,
        channel: str | None = None,
        web_processes: int | None = None,
        answer_cache_mb: int | None = None,
    ):
        self.run_dir, self.threads, self.web_processes = run_dir, threads, web_processes
        self.answer_cache_mb = answer_cache_mb  # EMAP_ANSWER_CACHE_MB (None: the server's default)
        self.channel = channel  # EMAP_LIVE_CHANNEL (None: the server's default)
        self.port, self.phone_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = run_dir / "server.log"

    def command(self) -> list[str]:
        cmd = [sys.executable, "app.py", "serve", "--port", str(self.port)]
        cmd += ["--osmand-port", str(self.phone_port), "--threads", str(self.threads)]
        helptext = subprocess.run(
            [sys.executable, "app.py", "serve", "--help"], cwd=ROOT, capture_output=True, text=True
        ).stdout
        if "--no-live-demo" in helptext:  # the store must hold only the benchmark's traffic
            cmd.append("--no-live-demo")
        if self.web_processes is not None:
            cmd += ["--web-processes", str(self.web_processes)]
        return cmd

    def start(self) -> None:
        env = {
            **os.environ,
            "EMAP_DATA_DIR": str(self.run_dir),
            "EMAP_DB_NAME": "emap.duckdb",
            "EMAP_HOST": "127.0.0.1",
            "EMAP_DEMO_PASSWORD": PASSWORD,
            "EMAP_SECRET_KEY": SECRET_KEY,
            "EMAP_METRICS_TOKEN": METRICS_TOKEN,
        }
        if self.answer_cache_mb is not None:
            env["EMAP_ANSWER_CACHE_MB"] = str(self.answer_cache_mb)
        if self.channel:
            env["EMAP_LIVE_CHANNEL"] = self.channel
        cmd = self.command()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        channel = f" (EMAP_LIVE_CHANNEL={self.channel})" if self.channel else ""
        print(f"server: pid {self.proc.pid}: {' '.join(cmd[1:])}{channel}", flush=True)
        t0, deadline = time.monotonic(), time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited:\n{self.log.read_text()[-3000:]}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/api/v1/health")
                if c.getresponse().status == 200:
                    print(f"server: answering after {time.monotonic() - t0:.0f} s", flush=True)
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit("the server did not start")

    def stats(self) -> dict:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request("GET", "/api/v1/health")
        return json.loads(c.getresponse().read())

    def scrape(self) -> dict[tuple, float]:
        """The samples of ``emap_answers_total``, of the callback duration's sum and count
        by output, and of the writer's time (commits, their phases, the queue wait) of
        pings, from ``GET /metrics``: {(sample name, label value): value}."""
        from prometheus_client.parser import text_string_to_metric_families

        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        text = c.getresponse().read().decode()
        out: dict[tuple, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "emap_answers_total":
                    out[(sample.name, sample.labels["outcome"])] = sample.value
                elif sample.name in (
                    "emap_callback_duration_seconds_sum",
                    "emap_callback_duration_seconds_count",
                ):
                    out[(sample.name, sample.labels["output"])] = sample.value
                elif sample.labels.get("kind") == "pings" and sample.name in (
                    "emap_commit_duration_seconds_sum",
                    "emap_commit_duration_seconds_count",
                    "emap_writer_wait_seconds_sum",
                    "emap_writer_wait_seconds_count",
                    "emap_commit_phase_seconds_total",
                ):
                    out[(sample.name, sample.labels.get("phase", ""))] = sample.value
        return out

    def cpu(self) -> float:
        """CPU seconds of the server and of its web workers (processes it started)."""
        if not self.proc:
            return float("nan")
        return cpu_of(self.proc.pid) + sum(cpu_of(c) for c in children_of(self.proc.pid))

    def stop(self) -> None:
        """SIGTERM (queued records are committed), then SIGKILL after a minute."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- recording in a real browser ---------------------------------------------------------------
class Recorder:
    """The callback requests of one Chromium page, labelled with the view being shown."""

    def __init__(self, page):
        self.page, self.view = page, "sign-in"
        # (view, path with Dash's query, body, seconds seen by the browser)
        self.records: list[tuple[str, str, str, float]] = []
        self.pending: dict = {}
        self.last = time.monotonic()
        page.on("request", self._request)
        page.on("response", self._response)
        page.on("requestfailed", self._failed)

    def _request(self, req) -> None:
        path = urlsplit(req.url)
        if req.method == "POST" and path.path == CALLBACK:
            target = path.path + (f"?{path.query}" if path.query else "")
            self.pending[req] = (self.view, target, req.post_data, time.monotonic())

    def _response(self, resp) -> None:
        got = self.pending.pop(resp.request, None)
        if got is None:
            return
        self.last = time.monotonic()
        if resp.status in (200, 204):  # a refused request is not replayed
            self.records.append((*got[:3], time.monotonic() - got[3]))

    def _failed(self, req) -> None:
        self.pending.pop(req, None)

    def idle(self, quiet: float = 0.8, timeout: float = 60.0) -> None:
        """Wait until no callback is pending and none finished for ``quiet`` seconds."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.page.wait_for_timeout(100)  # lets Playwright deliver its events
            if not self.pending and time.monotonic() - self.last > quiet:
                return


def drill(page, rec: Recorder, lat: float, lng: float, think: float) -> None:
    """Clicks at one place on the map down to a branch; each click is a view named by the
    level it reaches."""
    for _ in range(3):
        before = page.url
        xy = page.evaluate(MAP_XY, [lat, lng])
        page.mouse.move(*xy)
        rec.view = "drill"
        page.mouse.click(*xy)
        try:
            page.wait_for_function("(u) => window.location.href !== u", arg=before, timeout=20_000)
        except Exception:
            return
        rec.idle()
        node = re.search(r"node=([^&]+)", page.url)
        level = {"div-": "division", "r-": "region", "b-": "branch"}
        name = next((v for k, v in level.items() if node and node.group(1).startswith(k)), "drill")
        rec.records = [(name if r[0] == "drill" else r[0], *r[1:]) for r in rec.records]
        time.sleep(think)


def sign_in(page, url: str) -> None:
    page.goto(f"{url}/login")
    page.fill("#user", ADMIN)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#map")


def record(url: str, day: str) -> dict[str, list[tuple[str, str]]]:
    """The callback requests of each view, from a real Chromium: {view: [(path, body)]}."""
    from playwright.sync_api import sync_playwright

    from reports.chromium import DEFAULT_CHROMIUM, PLAYWRIGHT_ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=DEFAULT_CHROMIUM, args=PLAYWRIGHT_ARGS)
        try:
            # The app's content security policy forbids evaluated strings; the wait
            # predicates are strings, so the page bypasses it.
            page = browser.new_page(viewport={"width": 1500, "height": 900}, bypass_csp=True)
            page.set_default_timeout(120_000)
            rec = Recorder(page)
            sign_in(page, url)
            rec.idle()
            rec.records.clear()
            rec.view = "load"
            page.goto(f"{url}/?date={day}&hour=10&layers=hexes,outlines,zones")
            page.wait_for_function(HEXES_DRAWN)
            rec.idle()
            rec.view = "hour"
            page.click("#hour-next")
            rec.idle()
            time.sleep(1)
            drill(page, rec, 22.541, 114.055, 1.0)  # Shenzhen: division, region, branch
            rec.view = "live"
            page.goto(f"{url}/?date={day}&hour=11")
            page.wait_for_function(HEXES_DRAWN)
            rec.idle()
            rec.records = [r for r in rec.records if r[0] != "live"]  # the page load is "load"
            page.click("#live input")
            # polls: the first sets the version, the next find it unchanged
            page.wait_for_timeout(8_000)
            rec.idle()
        finally:
            browser.close()
    views: dict[str, list[tuple[str, str]]] = {}
    for view, path, body, _ in rec.records:
        views.setdefault(view, []).append((path, body))
    # The last poll alone (after the first): what an open live page asks every 2 s.
    polls = [r for r in views.get("live", []) if "live-version.data" in json.loads(r[1]).get("output", "")]
    if polls:
        views["poll"] = [polls[-1]]
    if not views:
        raise SystemExit("no callback request was recorded")
    print("recorded callback requests (Chromium, signed in as the demo admin): ")
    for view, bodies in views.items():
        seen = [r[3] for r in rec.records if (r[1], r[2]) in bodies]  # a poll was recorded as "live"
        print(f"  {view:9s} {len(bodies):3d} requests, browser-side {ms(seen)}")
    return views


def user_cookies(url: str, n: int) -> list[dict]:
    """``n`` sessions of the demo admin, one per simulated user (sign-in form, CSRF field)."""
    import requests

    out = []
    for _ in range(n):
        s = requests.Session()
        page = s.get(f"{url}/login", timeout=60).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        r = s.post(
            f"{url}/login",
            data={"user": ADMIN, "password": PASSWORD, "csrf": csrf, "next": "/"},
            allow_redirects=False,
            timeout=60,
        )
        if r.status_code not in (302, 303):
            raise SystemExit(f"sign-in failed: {r.status_code}")
        out.append(s.cookies.get_dict())
    return out


# -- load workers (run in processes of their own, so the load is not held by one GIL) ----------
def own_page(views: dict, u: int) -> dict:
    """The recorded requests as user ``u``'s own page sends them: the page's id (which the
    predicted-alerts panel uses to drop a page's superseded requests) made the user's own,
    as each real page load has its own."""
    found = set()
    for requests_ in views.values():
        for _path, body in requests_:
            parsed = json.loads(body)
            for item in [*(parsed.get("inputs") or []), *(parsed.get("state") or [])]:
                if (
                    isinstance(item, dict)
                    and item.get("id") == OUTLOOK_CLIENT
                    and isinstance(item.get("value"), str)
                ):
                    found.add(item["value"])
    out = {}
    for view, requests_ in views.items():
        out[view] = []
        for path, body in requests_:
            for client in found:
                body = body.replace(json.dumps(client), json.dumps(f"{client}-u{u}"))
            out[view].append((path, body))
    return out


def users_worker(
    url: str, cookies: list[dict], first: int, views: dict, start_at: float, seconds: float, think: float
):
    """Simulated users, a thread each: view after view, ``think`` s between views; every
    request of a view in its recorded order. Returns {view: [seconds]}, {view: {status: n}},
    CPU seconds of this process."""
    import requests

    names = list(views)
    lat: dict[str, list[float]] = {v: [] for v in names}
    err: dict[str, dict] = {v: {} for v in names}
    lock = threading.Lock()
    cpu0 = time.process_time()

    def user(u: int, cookie: dict) -> None:
        s = requests.Session()
        s.cookies.update(cookie)
        mine = own_page(views, u)
        k = u  # users start at different views
        time.sleep(max(0.0, start_at - time.time()) + (u % 10) * think / 10)
        end = start_at + seconds
        while time.time() < end:
            view = names[k % len(names)]
            k += 1
            for path, body in mine[view]:
                if time.time() >= end:
                    break
                t = time.perf_counter()
                try:
                    r = s.post(
                        url + path, data=body, headers={"Content-Type": "application/json"}, timeout=60
                    )
                    status = r.status_code
                except requests.RequestException:
                    status = 0
                dt = time.perf_counter() - t
                with lock:
                    if status in (200, 204):
                        lat[view].append(dt)
                    else:
                        err[view][status] = err[view].get(status, 0) + 1
            time.sleep(think)

    threads = [threading.Thread(target=user, args=(first + i, c)) for i, c in enumerate(cookies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, err, time.process_time() - cpu0


def batch_worker(
    port: int, token: str, devices: list[str], t0: int, first_batch: int, args: dict, start_at: float
):
    """Paced clients posting batches; batch k holds keys ``k*n .. k*n+n-1``, key j being a
    fix of ``devices[j % len]`` at second ``t0 + j // len`` (one row per acknowledged fix).
    Returns acknowledged batch numbers, their ack seconds, failures by status, CPU s."""
    n, clients, rate, seconds = (
        args["batch_size"],
        args["batch_clients"],
        args["ingest_rate"],
        args["seconds"],
    )
    nd = len(devices)
    prefix = [
        f'{{"device_id":"{d}","lat":{LAT + (i % 97) * 4e-4:.6f},"lng":{LNG + (i // 97 % 97) * 4e-4:.6f},'
        f'"speed":4.2,"ts":'.encode()
        for i, d in enumerate(devices)
    ]
    head = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    acked, lat, failed = [], [], {}
    lock = threading.Lock()
    counter = [0]
    limit = int(rate / n * seconds) + 1
    cpu0 = time.process_time()

    def body(k: int) -> bytes:
        j0 = k * n
        return (
            b"["
            + b",".join(prefix[j % nd] + str(t0 + j // nd).encode() + b"}" for j in range(j0, j0 + n))
            + b"]"
        )

    def client(c: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        interval = clients * n / rate
        due = start_at + c * interval / clients
        while True:
            now = time.time()
            if now >= start_at + seconds:
                return
            if due > now:
                time.sleep(due - now)
            due += interval
            with lock:
                if counter[0] >= limit:
                    return
                k = first_batch + counter[0]
                counter[0] += 1
            data = body(k)
            t = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/pings", body=data, headers=head)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            dt = time.perf_counter() - t
            with lock:
                if status == 200:
                    acked.append(k)
                    lat.append(dt)
                else:
                    failed[status] = failed.get(status, 0) + 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return acked, lat, failed, time.process_time() - cpu0


def phone_worker(port: int, devices: list[str], base: int, args: dict, start_at: float):
    """Single OsmAnd fixes on keep-alive connections from one asyncio loop (phones are many
    mostly idle connections), paced; fix k is of ``devices[k % len]`` at second
    ``base + k // len``. Returns acknowledged k, ack seconds, failures by status, CPU s."""
    conns, rate, seconds = args["phone_connections"], args["phone_rate"], args["seconds"]
    nd = len(devices)
    acked, lat, failed = [], [], {}
    counter = [0]
    cpu0 = time.process_time()

    def request(k: int) -> bytes:
        i = k % nd
        path = (
            f"/osmand?id={devices[i]}&lat={LAT + (i % 97) * 4e-4:.6f}&lon={LNG + (i // 97 % 97) * 4e-4:.6f}"
            f"&timestamp={base + k // nd}&speed=8.1&bearing=90&accuracy=5"
        )
        return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()

    async def connection(w: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        interval = conns / rate
        due = start_at + w * interval / conns
        end = start_at + seconds
        try:
            while True:
                now = time.time()
                if now >= end:
                    return
                if due > now:
                    await asyncio.sleep(due - now)
                due += interval
                k = counter[0]
                counter[0] += 1
                t = time.perf_counter()
                status = 0
                try:
                    writer.write(request(k))
                    line = await reader.readline()
                    length = 0
                    while True:
                        h = await reader.readline()
                        if h in (b"\r\n", b""):
                            break
                        if h.lower().startswith(b"content-length:"):
                            length = int(h.split(b":", 1)[1])
                    await reader.readexactly(length)
                    status = int(line.split(b" ", 2)[1])
                except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                dt = time.perf_counter() - t
                if status == 200:
                    acked.append(k)
                    lat.append(dt)
                else:
                    failed[status] = failed.get(status, 0) + 1
        finally:
            writer.close()

    async def main() -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        if rate > 0:  # --phone-rate 0: batches alone
            await asyncio.gather(*(connection(w) for w in range(conns)))

    asyncio.run(main())
    return acked, lat, failed, time.process_time() - cpu0


# -- a run ---------------------------------------------------------------------------------------
class Plan:
    """Which fixes each run sends: batches and phone fixes get their own devices and, per
    run, their own keys, so every acknowledged fix is one (device, second) of the store."""

    def __init__(self, args, devices: list[str], newest: int):
        self.batch_devices, self.phone_devices = devices[0::2], devices[1::2]
        per_run_batches = int(args.ingest_rate / args.batch_size * args.seconds) + 1
        self.per_run_batches = per_run_batches
        self.phone_span = int(args.phone_rate * args.seconds / len(self.phone_devices)) + 2
        runs = len(args.users) + 1
        span = max(
            runs * per_run_batches * args.batch_size // len(self.batch_devices), runs * self.phone_span
        )
        # In the past, ending before the current hour: the latency run's fixes then open an
        # hour of their own, where the courier count starts from them. Never among the
        # demo's own pings (a (device, second) twice would be stored once).
        hour = int(time.time()) // 3600 * 3600
        self.t0 = max(hour - span - 600, newest + 1)
        self.runs = 0
        self.acked_batches: list[int] = []
        self.acked_phone: list[tuple[int, int]] = []  # (base second, k)

    def next_run(self) -> tuple[int, int]:
        """(first batch number, base second of the phone fixes) of the next ingest run."""
        first, base = self.runs * self.per_run_batches, self.t0 + self.runs * self.phone_span
        self.runs += 1
        return first, base


def settle(server: Server, idle: float = 0.25, window: float = 3.0, limit: float = 90.0) -> str:
    """Wait until the server uses under ``idle`` cores over ``window`` s (work left by the
    previous run, such as a new hour's figures, is not counted in the next), at most ``limit`` s."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        c = server.cpu()
        time.sleep(window)
        if (server.cpu() - c) / window < idle:
            break
    return f"server settled in {time.monotonic() - t0:.0f} s"


def run(
    label: str,
    args,
    server: Server,
    plan: Plan,
    views: dict,
    cookies: list[dict],
    ingest: bool,
    upload: Path | None = None,
) -> dict:
    """One run of ``--seconds``: users (``cookies``: one per user) and/or ingest, and a
    file import started with them (``upload``)."""
    n = len(cookies)
    settled = settle(server)
    print(
        f"\n== {label}: {n} users, ingest {'on' if ingest else 'off'}; {settled}; load average {loadavg()}",
        flush=True,
    )
    a = vars(args)
    procs = (2 if n > 8 else 1) if n else 0  # the users' threads spread over processes
    ctx = get_context("spawn")  # a clean interpreter: nothing of Playwright or the store
    start_at = time.time() + 8.0  # the workers' interpreters are ready by then
    before = server.stats()
    scraped = server.scrape()
    cpu_server = server.cpu()
    futures = {}
    with ProcessPoolExecutor(
        max_workers=procs + (2 if ingest else 0) + (1 if upload else 0), mp_context=ctx
    ) as pool:
        if upload is not None:
            futures["import"] = pool.submit(import_worker, server.port, args.token, str(upload), start_at)
        if ingest:
            first, base = plan.next_run()
            futures["batch"] = pool.submit(
                batch_worker, server.port, args.token, plan.batch_devices, plan.t0, first, a, start_at
            )
            futures["phone"] = pool.submit(
                phone_worker, server.phone_port, plan.phone_devices, base, a, start_at
            )
        for p in range(procs):
            part = cookies[p::procs]
            futures[f"users{p}"] = pool.submit(
                users_worker, server.url, part, p * 1000, views, start_at, args.seconds, args.think
            )
        results = {k: f.result() for k, f in futures.items()}
    elapsed = args.seconds
    cpu_server = server.cpu() - cpu_server
    after = server.stats()
    out: dict = {"label": label, "users": n, "ingest": ingest, "load": loadavg(), "server_cpu": cpu_server}
    out["client_cpu"] = sum(r[-1] for r in results.values())
    lat: dict[str, list[float]] = {}
    err: dict[str, dict] = {}
    for k, r in results.items():
        if k.startswith("users"):
            for v in r[0]:
                lat.setdefault(v, []).extend(r[0][v])
                add_counts(err.setdefault(v, {}), r[1][v])
    out["lat"], out["err"] = lat, err
    if ingest:
        acked, blat, bfail, _ = results["batch"]
        plan.acked_batches += acked
        packed, plat, pfail, _ = results["phone"]
        plan.acked_phone += [(base, k) for k in packed]
        out.update(
            pings=len(acked) * args.batch_size / elapsed,
            batch_lat=blat,
            batch_fail=bfail,
            phone=len(packed) / elapsed,
            phone_lat=plat,
            phone_fail=pfail,
        )
    if upload is not None:
        status, answer, seconds, _ = results["import"]
        out["import"] = f"import of {upload.name}: HTTP {status} in {seconds:.1f} s: {answer}"
        print(out["import"], flush=True)
    commits = after.get("groups", 0) - before.get("groups", 0)
    out["commits"] = commits
    delta = {k: v - scraped.get(k, 0.0) for k, v in server.scrape().items()}
    out["answers"] = {label: v for (name, label), v in delta.items() if name == "emap_answers_total"}
    out["outputs"] = {
        label: (v, delta.get(("emap_callback_duration_seconds_count", label), 0.0))
        for (name, label), v in delta.items()
        if name == "emap_callback_duration_seconds_sum" and v > 0
    }
    out["writer"] = {
        (name.removeprefix("emap_"), label): v
        for (name, label), v in delta.items()
        if name.startswith(("emap_commit", "emap_writer"))
    }
    print_run(out, args)
    return out


def print_run(r: dict, args) -> None:
    if r["users"]:
        print(f"  callbacks (client-side seconds, {args.think:.0f} s think time between views):")
        everything, errors = [], {}
        for view, v in r["lat"].items():
            everything += v
            add_counts(errors, r["err"][view])
            print(
                f"    {view:9s} n={len(v):5d}  {ms(v)}  errors {sum(r['err'][view].values())} {r['err'][view] or ''}"
            )
        print(
            f"    {'all':9s} n={len(everything):5d}  {ms(everything)}  errors {sum(errors.values())} {errors or ''}"
            f"  = {len(everything) / args.seconds:.1f} callbacks/s"
        )
        a = r.get("answers") or {}
        total = sum(a.values())
        if total:
            print(
                f"  panel answers: {a.get('kept', 0):,.0f} served kept ({a.get('kept', 0) / total:.0%}), "
                f"{a.get('made', 0):,.0f} made and kept, {a.get('not_kept', 0):,.0f} made, not keepable"
            )
        busiest = sorted(r.get("outputs", {}).items(), key=lambda kv: -kv[1][0])[:8]
        if busiest:
            print("  server-side seconds by callback output (the largest sums):")
            for output, (seconds, count) in busiest:
                print(
                    f"    {seconds:7.1f} s  n={count:5.0f}  mean {1000 * seconds / max(count, 1):6.0f} ms  {output[:70]}"
                )
    if r["ingest"]:
        print(
            f"  batches: {r['pings']:,.0f} pings/s acknowledged (target {args.ingest_rate:,.0f}), ack {ms(r['batch_lat'])},"
            f" failed {sum(r['batch_fail'].values())} {r['batch_fail'] or ''}"
        )
        print(
            f"  phones:  {r['phone']:,.0f} requests/s acknowledged (target {args.phone_rate:,.0f}), ack {ms(r['phone_lat'])},"
            f" failed {sum(r['phone_fail'].values())} {r['phone_fail'] or ''}"
        )
        print(f"  writer: {r['commits']:,} commits in the run")
        w = r.get("writer") or {}
        commits = w.get(("commit_duration_seconds_count", ""), 0.0)
        if commits:
            phase = {
                p: w.get(("commit_phase_seconds_total", p), 0.0)
                for p in ("validate", "prepare", "store", "quarantine")
            }
            waits = w.get(("writer_wait_seconds_count", ""), 0.0)
            print(
                f"  pings commits: {commits:,.0f}, mean {1000 * w.get(('commit_duration_seconds_sum', ''), 0.0) / commits:,.0f} ms;"
                f" busy: preparer {(phase['validate'] + phase['prepare']) / args.seconds:.0%}"
                f" (validate {phase['validate'] / args.seconds:.0%}), committer"
                f" {(phase['store'] + phase['quarantine']) / args.seconds:.0%} (store {phase['store'] / args.seconds:.0%})"
                f" of the run; a request waited {1000 * w.get(('writer_wait_seconds_sum', ''), 0.0) / max(waits, 1):,.0f} ms"
                " (mean) for the writer"
            )
    print(
        f"  CPU over {args.seconds:.0f} s: server {r['server_cpu']:.1f} s ({r['server_cpu'] / args.seconds:.2f} cores), "
        f"load generator {r['client_cpu']:.1f} s ({r['client_cpu'] / args.seconds:.2f} cores); "
        f"load average after {r['load']}",
        flush=True,
    )


# -- acknowledged = stored? ----------------------------------------------------------------------
def check_lost(db: Path, plan: Plan, args) -> tuple[int, int]:
    """(acknowledged, of them stored): every acknowledged fix looked for by (device, second)
    in the stopped server's store."""
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import polars as pl

    from data.store.database import Store

    n, nb, npd = args.batch_size, len(plan.batch_devices), len(plan.phone_devices)
    j = (
        (np.array(plan.acked_batches, dtype=np.int64)[:, None] * n + np.arange(n)).ravel()
        if plan.acked_batches
        else np.array([], dtype=np.int64)
    )
    base = np.array([b for b, _ in plan.acked_phone], dtype=np.int64)
    k = np.array([x for _, x in plan.acked_phone], dtype=np.int64)
    want = pl.concat(
        [
            pl.DataFrame({"device_id": np.array(plan.batch_devices)[j % nb], "s": plan.t0 + j // nb}),
            pl.DataFrame({"device_id": np.array(plan.phone_devices)[k % npd], "s": base + k // npd}),
        ]
    )
    with Store(db, read_only=True) as store:
        have = store.sql(
            "SELECT device_id, epoch(ts)::BIGINT AS s FROM pings WHERE epoch(ts) >= $t0", {"t0": plan.t0}
        )
    stored = want.join(have.unique(), on=["device_id", "s"], how="semi")
    return len(want), len(stored)


# -- acknowledgement -> browser ------------------------------------------------------------------
def latency(server: Server, token: str, samples: int, prefix: str = "lt") -> list[tuple[float, float]]:
    """(ack time, time the page showed the new courier count) of each sample; the new
    devices are ``<prefix>-<sample>-<n>`` (registered by :func:`prepare`)."""
    from playwright.sync_api import sync_playwright

    from reports.chromium import DEFAULT_CHROMIUM, PLAYWRIGHT_ARGS

    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=DEFAULT_CHROMIUM, args=PLAYWRIGHT_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 900}, bypass_csp=True)
            page.set_default_timeout(120_000)
            sign_in(page, server.url)
            page.goto(f"{server.url}/")  # a bare URL: live when data is arriving
            page.wait_for_selector("#kpi-couriers")
            try:
                page.wait_for_function("document.querySelector('#live input').checked", timeout=20_000)
                started = True
            except Exception:  # no data arriving as the server sees it: tick live by hand
                started = False
                page.click("#live input")
            print(f"  live page opened; live mode {'started by itself' if started else 'ticked'}", flush=True)
            for i in range(samples):
                before = stable(page)
                fixes = [
                    {
                        "device_id": f"{prefix}-{i:03d}-{d}",
                        "ts": int(time.time()),
                        "lat": LAT + d * 2e-3,
                        "lng": LNG + i * 2e-3,
                    }
                    for d in range(LATENCY_DEVICES)
                ]
                c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                c.request(
                    "POST",
                    "/api/v1/pings",
                    body=json.dumps(fixes),
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                )
                status = c.getresponse().status
                acked = time.time()
                if status != 200:
                    print(f"  sample {i + 1}: answered {status}", flush=True)
                    continue
                try:
                    page.wait_for_function(COURIERS_CHANGED, arg=before, timeout=60_000, polling=20)
                    seen = time.time()
                except Exception:
                    # counted at the wait's limit (a lower bound), not left out of the figures
                    out.append((acked, acked + 60.0))
                    print(
                        f"  sample {i + 1:2d}: acknowledged {clock(acked)}  not seen within 60 s", flush=True
                    )
                    continue
                out.append((acked, seen))
                print(
                    f"  sample {i + 1:2d}: acknowledged {clock(acked)}  seen {clock(seen)}  "
                    f"{seen - acked:5.2f} s  couriers {before} -> {page.evaluate(COURIERS)}",
                    flush=True,
                )
                time.sleep((i * 0.37) % 2.0)  # samples fall at different points of the 2 s poll (and check)
        finally:
            browser.close()
    return out


def stable(page, quiet: float = 2.5) -> str:
    """The courier count once it has not changed for ``quiet`` s (longer than a poll)."""
    value, since = page.evaluate(COURIERS), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.1)
        now = page.evaluate(COURIERS)
        if now != value:
            value, since = now, time.monotonic()
    return value


# -- main ------------------------------------------------------------------------------------------
def _interrupt(*_signal) -> None:
    raise KeyboardInterrupt


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="default")
    ap.add_argument("--db", type=Path, help="a demo store to copy (default: var/bench-live-<size>.duckdb)")
    ap.add_argument("--users", default="8,32,64", help="simulated users of each run, comma-separated")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--think", type=float, default=1.0, help="seconds a user looks at a view")
    ap.add_argument("--ingest-rate", type=float, default=22_000.0, help="target pings/s in batches")
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument(
        "--batch-clients", type=int, default=32, help="paced to the target together: more than the rate needs"
    )
    ap.add_argument("--phone-rate", type=float, default=2_200.0, help="target OsmAnd requests/s")
    ap.add_argument(
        "--phone-connections",
        type=int,
        default=3000,
        help="paced to the target together; each waits for its answer (rate x ack time are busy)",
    )
    ap.add_argument("--server-threads", type=int, default=256)
    ap.add_argument(
        "--web-processes",
        type=int,
        help="serve --web-processes N: callbacks in N worker processes (default: the server's own default)",
    )
    ap.add_argument(
        "--answer-cache-mb",
        type=int,
        help="EMAP_ANSWER_CACHE_MB of the server (0: every panel answer built anew; default: the server's)",
    )
    ap.add_argument("--latency-samples", type=int, default=20)
    ap.add_argument(
        "--live-channel",
        choices=["poll", "push", "both"],
        default="both",
        help="the live channel(s) whose acknowledgement -> browser latency is measured (both: poll, then push)",
    )
    ap.add_argument(
        "--latency-only",
        action="store_true",
        help="only the acknowledgement -> browser latency: no user or ingest runs",
    )
    ap.add_argument(
        "--import-rows",
        type=int,
        default=0,
        help="also a run of the largest --users with ingest while a file of this many pings is "
        "imported through POST /api/v1/import (0: none)",
    )
    args = ap.parse_args(argv)
    args.users = [int(x) for x in str(args.users).split(",") if x.strip()]
    return args


def summary(runs: list[dict], args) -> None:
    print("\nsummary (callbacks client-side; ingest acknowledged per second):")
    print(
        f"  {'run':22s} {'users':>5s} {'cb p50':>7s} {'cb p95':>7s} {'cb p99':>7s} {'cb err':>6s} {'cb/s':>6s}"
        f" {'pings/s':>8s} {'ack p99':>8s} {'phone/s':>8s} {'ph p99':>7s} {'ing err':>7s} {'srv cpu':>7s} {'gen cpu':>7s}"
    )
    for r in runs:
        everything = [x for v in r["lat"].values() for x in v]
        p50, p95, p99 = quantiles(everything)
        errs = sum(sum(e.values()) for e in r["err"].values())
        cb = f"{p50 * 1000:7.0f} {p95 * 1000:7.0f} {p99 * 1000:7.0f} {errs:6d} {len(everything) / args.seconds:6.1f}"
        if not r["users"]:
            cb = f"{'-':>7s} {'-':>7s} {'-':>7s} {'-':>6s} {'-':>6s}"
        ing = f"{'-':>8s} {'-':>8s} {'-':>8s} {'-':>7s} {'-':>7s}"
        if r["ingest"]:
            ing_err = sum(r["batch_fail"].values()) + sum(r["phone_fail"].values())
            ing = (
                f"{r['pings']:8,.0f} {quantiles(r['batch_lat'])[2] * 1000:6.0f}ms {r['phone']:8,.0f}"
                f" {quantiles(r['phone_lat'])[2] * 1000:5.0f}ms {ing_err:7d}"
            )
        print(
            f"  {r['label']:22s} {r['users']:5d} {cb} {ing} {r['server_cpu'] / args.seconds:7.2f}"
            f" {r['client_cpu'] / args.seconds:7.2f}"
        )


def user_and_ingest_runs(args, server: Server, plan: Plan, prep: dict) -> list[dict]:
    """The recorded views replayed by ``--users`` users, with and without ingest."""
    views = record(server.url, prep["day"])
    cookies = user_cookies(server.url, max(args.users, default=0))
    runs = [run("ingest alone", args, server, plan, views, [], ingest=True)]
    for n in args.users:
        runs.append(run(f"{n} users, no ingest", args, server, plan, views, cookies[:n], ingest=False))
        runs.append(run(f"{n} users + ingest", args, server, plan, views, cookies[:n], ingest=True))
    if prep["upload"] is not None and args.users:
        n = max(args.users)
        label = f"{n} users + ingest + import"
        runs.append(run(label, args, server, plan, views, cookies[:n], ingest=True, upload=prep["upload"]))
    return runs


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?"
    )
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}; load average {loadavg()}"
    )
    print(
        "the load generator (this script's processes) runs on the same cores as the server: "
        "its CPU is printed with each run"
    )
    source = args.db or ensure_db(args.size)
    run_dir = ROOT / "var" / "bench-live-run"
    channels = ["poll", "push"] if args.live_channel == "both" else [args.live_channel]
    prefixes = {ch: f"lt{c}" for c, ch in enumerate(channels)}  # new devices of their own
    latency_ids = [
        f"{prefixes[ch]}-{i:03d}-{d}"
        for ch in channels
        for i in range(args.latency_samples)
        for d in range(LATENCY_DEVICES)
    ]
    prep = prepare(source, run_dir, latency_ids, args.import_rows)
    args.token = prep["token"]
    plan = Plan(args, prep["devices"], prep["newest"])
    print(
        f"store: copy of {source} ({source.stat().st_size / 1e6:,.0f} MB), day {prep['day']}; "
        f"{len(plan.batch_devices):,} demo devices for batches, {len(plan.phone_devices):,} for phones; "
        f"fixes from {clock(plan.t0)} UTC on"
    )
    server = Server(run_dir, args.server_threads, channels[0], args.web_processes, args.answer_cache_mb)
    # Ctrl-C and SIGTERM end the runs through the finally clauses, which stop the server.
    signal.signal(signal.SIGTERM, _interrupt)
    runs: list[dict] = []
    got: dict[str, list[tuple[float, float]]] = {}
    loads: dict[str, str] = {}
    try:
        server.start()
        if not args.latency_only:
            runs = user_and_ingest_runs(args, server, plan, prep)
        for channel in channels:
            if server.channel != channel:  # the channel is a setting: a server started with it
                server.stop()
                server.channel = channel
                server.start()
            loads[channel] = loadavg()
            print(
                f"\nacknowledgement -> browser, live channel {channel} ({args.latency_samples} samples, "
                f"{LATENCY_DEVICES} new devices each, no other load; {settle(server)}; load average {loads[channel]}):",
                flush=True,
            )
            got[channel] = latency(server, args.token, args.latency_samples, prefixes[channel])
    finally:
        server.stop()
    if not args.latency_only:
        acked, stored = check_lost(prep["db"], plan, args)
        summary(runs, args)
        print(
            f"\nacknowledged {acked:,}, stored {stored:,}, lost {acked - stored:,} (batches and phone fixes of all runs)"
        )
    print()
    for channel, samples in got.items():
        secs = [seen - acked for acked, seen in samples]
        if secs:
            p50, p95, _ = quantiles(secs)
            late = sum(x >= 60.0 for x in secs)
            print(
                f"acknowledgement -> browser, {channel}: {len(secs)} samples, p50 {p50:.2f} s, p95 {p95:.2f} s, "
                f"max {max(secs):.2f} s (load average before: {loads[channel]})"
                + (f" ({late} not seen within 60 s, counted as 60 s)" if late else "")
            )
    print(f"load average at the end {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
