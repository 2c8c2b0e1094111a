"""Benchmark of the dashboard: server-side callback times, update payloads, first load.

A real server (in a thread) behind a WSGI timer; a real headless Chromium drives it:
page loads, hour changes (the ▶ button) and drill-downs (clicks on the map from
headquarters to a branch, then the breadcrumb back). Prints p50/p95 per callback.

    .venv/bin/python bench/bench_dashboard.py --size default
    .venv/bin/python bench/bench_dashboard.py --db var/emap.duckdb
    .venv/bin/python bench/bench_dashboard.py --auth   # signed in: the request guard and
                                                       # session look-up are timed too

Without ``--db`` the demo of ``--size`` is generated once into ``var/bench-<size>.duckdb``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import PROJECT_ROOT, Settings  # noqa: E402
from data.store.database import Store  # noqa: E402
from reports.chromium import PLAYWRIGHT_ARGS as CHROMIUM_ARGS  # noqa: E402

#: Branch label points to click down to (one per demo city), lat/lng.
TARGETS = [
    (22.541, 114.055),
    (23.129, 113.264),
    (31.230, 121.473),
    (39.915, 116.404),
    (30.573, 104.066),
    (30.593, 114.305),
]


#: The account the benchmark signs in with (``--auth``), created in the benchmark's store.
BENCH_USER = "bench-admin"
BENCH_PASSWORD = "bench password 42"


class Timer:
    """WSGI middleware recording (outputs, seconds, response bytes) of each callback."""

    def __init__(self, app):
        self.app = app
        self.records: list[tuple[str, float, int]] = []
        self.lock = threading.Lock()
        self.active = 0  # callback requests being answered

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != "/_dash-update-component":
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        import io

        environ["wsgi.input"] = io.BytesIO(body)
        output = json.loads(body).get("output", "?")
        with self.lock:
            self.active += 1
        t = time.perf_counter()
        try:
            chunks = list(self.app(environ, start_response))
        finally:
            dt = time.perf_counter() - t
            with self.lock:
                self.active -= 1
        with self.lock:
            self.records.append((output, dt, sum(len(c) for c in chunks)))
        return chunks

    def take(self):
        with self.lock:
            out, self.records = self.records, []
        return out


def _name(output: str) -> str:
    if output.startswith("..map.figure"):
        return "map"
    if output.startswith("..kpis.children"):
        return "kpis+trend"
    if output.startswith("..children.rowData"):
        return "ranking"
    if output.startswith("alerts.children"):
        return "alerts"
    if output.startswith("..state.data"):
        return "state"
    if output.startswith("..breadcrumb"):
        return "breadcrumb"
    if output.startswith("outlook.children"):
        return "outlook"
    if output.startswith("..label-"):
        return "labels"
    return "other"


def _load() -> str:
    """The machine's load average (1, 5, 15 min): figures on shared cores depend on it."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def _node(url: str) -> str:
    from urllib.parse import parse_qs, urlparse

    return parse_qs(urlparse(url).query).get("node", ["?"])[0]


def ensure_db(size: str) -> Path:
    path = PROJECT_ROOT / "var" / f"bench-{size}.duckdb"
    if not path.exists():
        from data.demo import generator as demo

        print(f"generating the {size} demo into {path} ...", flush=True)
        with Store(path) as s:
            demo.generate(s, size=size, seed=7, days=2)
    return path


def wait_idle(page, timer_count, quiet=0.4, timeout=20.0, busy=lambda: 0):
    """Wait until no callback has finished for ``quiet`` seconds and none (``busy()``) is
    still being answered: a slow callback of one action (the panel of a page just opened)
    is not counted with the next action's."""
    end = time.monotonic() + timeout
    last, last_n = time.monotonic(), timer_count()
    while time.monotonic() < end:
        time.sleep(0.05)
        n = timer_count()
        if n != last_n or busy():
            last, last_n = time.monotonic(), n
        elif time.monotonic() - last > quiet:
            return


HEXES_DRAWN = (
    "(() => { const gd = document.querySelector('#map .js-plotly-plot');"
    " const h = gd && gd.data && gd.data.find(t => t.uid === 'hexes');"
    " return h && h.locations && h.locations.length > 0"
    " && document.querySelector('#kpi-pickups') !== null; })()"
)
#: Screen position of a lat/lng on the map (for a click there).
MAP_XY = """([lat, lng]) => { const gd = document.querySelector('#map .js-plotly-plot');
    const m = gd._fullLayout.map._subplot.map; const p = m.project([lng, lat]);
    const r = m.getCanvas().getBoundingClientRect(); return [r.left + p.x, r.top + p.y]; }"""


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="default")
    ap.add_argument("--db", type=Path)
    ap.add_argument("--hours", type=int, default=12, help="hour changes to time")
    ap.add_argument("--loads", type=int, default=3, help="page loads to time")
    ap.add_argument("--no-prefetch", action="store_true", help="time cold drill-downs")
    ap.add_argument(
        "--think", type=float, default=2.0, help="seconds a user looks at a view before drilling further"
    )
    ap.add_argument(
        "--without-outlook",
        action="store_true",
        help="leave out the predicted-alerts panel (its callback runs seconds of forecasting on each "
        "view and competes with the other callbacks for the two cores)",
    )
    ap.add_argument(
        "--auth",
        action="store_true",
        help="serve with sign-in (as `python app.py serve` does) and sign in as an admin: the request "
        "guard, the session look-up and the scope checks are part of every timed callback",
    )
    return ap.parse_args(argv)


def build(args, db: Path):
    """The store and the dashboard app, warmed up as the server does at start."""
    from pages.app import build_app

    # Sign-in keeps sessions in the store: it must be writable then.
    store = Store(db, read_only=not args.auth)
    settings = Settings.from_env()
    if args.auth:
        from auth import users

        users.ensure_tables(store)
        if users.get_user(store, BENCH_USER) is None:
            users.create_user(store, BENCH_USER, BENCH_PASSWORD, "admin", "hq", by="bench")
    if args.without_outlook:
        from pages import outlook

        outlook.register = lambda *_a, **_k: None  # the panel stays empty
    t = time.perf_counter()
    app = build_app(store, settings, prefetch=not args.no_prefetch, auth=args.auth)
    for th in threading.enumerate():
        if th.name == "emap-warm":
            th.join()
    print(
        "start-up warm-up (alert state of the newest two days, root view; with the panel, the network-wide "
        f"forecast frames and the root's outlooks of the day): {time.perf_counter() - t:.1f} s"
    )
    print(
        f"prefetch {'off' if args.no_prefetch else 'on'}, think time {args.think:.1f} s between drill-down clicks"
    )
    return store, settings, app


def serve(app) -> tuple[object, Timer, str]:
    """The app served in a thread behind a :class:`Timer`: (server, timer, URL)."""
    from werkzeug.serving import make_server

    timer = Timer(app.server.wsgi_app)
    app.server.wsgi_app = timer
    server = make_server("127.0.0.1", 0, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, timer, f"http://127.0.0.1:{server.server_port}"


class Session:
    """One browser page on the served app, waiting for its callbacks as a user would."""

    def __init__(self, page, url: str, timer: Timer, day):
        self.page, self.url, self.timer, self.day = page, url, timer, day

    def idle(self, quiet: float = 0.4) -> None:
        wait_idle(self.page, lambda: len(self.timer.records), quiet=quiet, busy=lambda: self.timer.active)

    def open(self, query: str) -> None:
        """Go to the page of ``query`` and wait until its hexes are drawn and it is idle."""
        self.page.goto(f"{self.url}/?{query}")
        self.page.wait_for_function(HEXES_DRAWN)
        self.idle()

    def sign_in(self) -> None:
        page = self.page
        page.goto(f"{self.url}/login")
        page.fill("#user", BENCH_USER)
        page.fill("#password", BENCH_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#map")
        self.idle()
        self.timer.take()

    def time_loads(self, n: int) -> list[float]:
        """Seconds until the hexes and KPIs are drawn, for ``n`` page loads."""
        loads = []
        for i in range(n):
            t = time.monotonic()
            self.page.goto(f"{self.url}/?date={self.day}&hour={9 + i}&layers=hexes,outlines,zones")
            self.page.wait_for_function(HEXES_DRAWN)
            loads.append(time.monotonic() - t)
            self.idle()
            self.timer.take()
        return loads

    def time_hours(self, n: int) -> tuple[list[float], list]:
        """A region opened by its address, then ``n`` hour changes: (the panel's seconds
        when opened, the hour changes' callbacks)."""
        self.open(f"node=r-440300&date={self.day}&hour=7")
        opened = [dt for out, dt, _ in self.timer.take() if _name(out) == "outlook"]
        recs = []
        for _ in range(n):
            self.page.click("#hour-next")
            self.idle()
            recs += self.timer.take()
        return opened, recs

    def time_drills(self, think: float) -> list:
        """Drill-downs by clicking at each of :data:`TARGETS`, back with the breadcrumb."""
        self.open(f"date={self.day}&hour=10&layers=hexes,outlines,zones")
        self.timer.take()
        recs = []
        for lat, lng in TARGETS:
            recs += self.drill_at(lat, lng, think)
            print(f"  drilled to {_node(self.page.url)} at {lat:.3f},{lng:.3f}", flush=True)
            if self.page.locator("#breadcrumb button").count() > 1:
                self.page.locator("#breadcrumb button").first.click()
                self.idle()
                recs += self.timer.take()
        return recs

    def drill_at(self, lat: float, lng: float, think: float) -> list:
        """Up to three clicks at one place, each after ``think`` seconds: their callbacks."""
        page, recs = self.page, []
        for _level in range(3):
            before = page.url
            time.sleep(think)
            xy = page.evaluate(MAP_XY, [lat, lng])
            page.mouse.move(*xy)
            page.mouse.click(*xy)
            try:
                page.wait_for_function("(u) => window.location.href !== u", arg=before, timeout=15_000)
            except Exception:
                break  # nothing to drill into at this point
            self.idle(quiet=0.6)
            recs += self.timer.take()
        return recs


def print_results(loads: list[float], opened: list[float], results: dict[str, list]) -> None:
    print(f"load average at the end {_load()}")
    print("page first load (hexes and KPIs drawn), s: " + ", ".join(f"{x:.2f}" for x in loads))
    print(
        "region opened by its address (before the hour changes), panel: "
        + ", ".join(f"{x * 1000:.0f}" for x in opened)
        + " ms"
    )
    for action, recs in results.items():
        print(f"\n{action}: {len(recs)} callbacks")
        print_callbacks(recs)


def print_callbacks(recs: list) -> None:
    """p50 and p95 time and payload per callback, and the slowest predicted-alerts panels."""
    by: dict[str, list] = {}
    for out, dt, size in recs:
        by.setdefault(_name(out), []).append((dt, size))
    for name, v in sorted(by.items()):
        dts = np.array([x[0] for x in v]) * 1000
        sizes = np.array([x[1] for x in v])
        print(
            f"  {name:18s} n={len(v):3d}  p50 {np.percentile(dts, 50):6.0f} ms  p95 {np.percentile(dts, 95):6.0f} ms"
            f"  payload p50 {np.percentile(sizes, 50) / 1e3:7.1f} kB  max {sizes.max() / 1e3:7.1f} kB"
        )
    slow = sorted((dt for out, dt, _ in recs if _name(out) == "outlook"), reverse=True)[:5]
    if slow:
        print("  outlook, slowest: " + ", ".join(f"{x * 1000:.0f}" for x in slow) + " ms")


def main(argv=None):
    args = parse_args(argv)
    db = args.db or ensure_db(args.size)

    from playwright.sync_api import sync_playwright

    from views.model import Model

    store, settings, app = build(args, db)
    server, timer, url = serve(app)
    day = Model(store, settings).dates()[-1]
    print(f"store {db} ({db.stat().st_size / 1e6:.0f} MB), day {day}")
    print(f"predicted-alerts panel {'left out' if args.without_outlook else 'on'}; load average {_load()}")
    print(f"sign-in {'on (admin)' if args.auth else 'off (open app)'}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        # The app's content security policy forbids evaluated strings; the benchmark's
        # wait predicates are strings, so its page bypasses the policy.
        page = browser.new_page(viewport={"width": 1500, "height": 900}, bypass_csp=True)
        page.set_default_timeout(60_000)
        session = Session(page, url, timer, day)
        if args.auth:
            session.sign_in()
        loads = session.time_loads(args.loads)
        opened, hours = session.time_hours(args.hours)
        results = {"hour": hours, "drill": session.time_drills(args.think)}
        browser.close()
    server.shutdown()
    print_results(loads, opened, results)
    sys.stdout.flush()
    # Background prefetch/warm threads may be inside DuckDB: leave without tearing down.
    os._exit(0)


if __name__ == "__main__":
    main()
