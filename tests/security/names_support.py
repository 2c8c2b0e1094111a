"""Shared set-up of the name-safety tests: hostile names put into a copy of the small demo
through the real importer, a loopback server that records every request a name could
make, a local file that reports when a browser opens it, and a browser page that listens
for dialogs, console messages and requests.

Test modules import the fixtures they use from here (``tests/security/conftest.py``
belongs to the access tests).
"""

from __future__ import annotations

import csv
import shutil
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from data.ingest.importer import import_file
from data.store.database import Store

DAY = "2026-11-20"
REGION = "r-440300"
#: The branch given hostile names and outlets (南山区).
BRANCH = "b-440305"
#: Branches of the region whose names look like spreadsheet formulas.
FORMULA_BRANCHES = {
    "b-440304": '=HYPERLINK("{url}/csv","open")',
    "b-440303": "@SUM(1+1)*cmd|' /C calc'!A0",
    "b-440308": "+1+cmd|' /C calc'!A0",
    "b-440309": "-2+3+cmd|' /C calc'!A0",
}


@dataclass
class Recorder:
    """A loopback HTTP server that records the path of every request it gets."""

    url: str
    hits: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def recorder():
    """Base URL of a loopback server recording every hit (``recorder.hits``)."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _hit(self):
            hits.append(f"{self.command} {self.path}")
            body = b"<html><body>EMAP-RECORDER</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_HEAD = _hit

        def log_message(self, *args):  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Recorder(f"http://127.0.0.1:{server.server_port}", hits)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def probe_file(tmp_path_factory, recorder):
    """``file://`` URL of a local page that calls the recorder (``/from-file``) when a
    browser opens it: a hit means a local file was read."""
    folder = tmp_path_factory.mktemp("probe")
    folder.chmod(0o755)
    page = folder / "probe.html"
    page.write_text(
        f'<html><body>EMAP-LOCAL-SECRET<img src="{recorder.url}/from-file"></body></html>', encoding="utf-8"
    )
    page.chmod(0o644)
    return page.as_uri()


def hostile_names(recorder: Recorder, probe: str) -> list[str]:
    """Names that would run, load or break something if any context failed to escape them."""
    r = recorder.url
    return [
        '</script><iframe src="file:///etc/os-release"></iframe>',
        f'</script><iframe src="{probe}"></iframe>',
        f'"><iframe src="{probe}"></iframe><b x="',
        f"'><object data=\"{probe}\"></object><b x='",
        f'<img src="{r}/img" onerror="alert(1)">',
        "<script>alert('script')</script>",
        "</script><script>alert('breakout')</script>",
        '<a href="javascript:alert(1)">link</a>',
        "<svg onload=alert(1)><text>svg</text></svg>",
        "';alert(1);//",
        '";alert(1);//',
        "`${alert(1)}`\\",
        "<!--<script>alert(1)//",
        f'</style><img src="{r}/css">',
        "line\u2028alert(1)\u2029sep",
    ]


#: The branch's and region's own names (breadcrumbs, titles, rankings, outlines).
def node_names(recorder: Recorder, probe: str) -> dict[str, str]:
    r = recorder.url
    names = {
        BRANCH: f'南山区</script><iframe src="{probe}"></iframe><img src="{r}/branch" onerror=alert(2)>',
        REGION: f'深圳市"><svg onload=alert(3)><img src="{r}/region">',
    }
    names.update({b: n.format(url=r) for b, n in FORMULA_BRANCHES.items()})
    return names


@dataclass
class Hostile:
    """A writable copy of the small demo holding hostile names."""

    path: Path
    store: Store
    outlet_names: list[str]
    node_names: dict[str, str]


@pytest.fixture(scope="session")
def hostile(small_demo_path, tmp_path_factory, recorder, probe_file):
    """The small demo with hostile outlets imported from a CSV into :data:`BRANCH` and
    hostile node names (as ``tests/auth_support.py`` does)."""
    folder = tmp_path_factory.mktemp("names")
    path = folder / "emap.duckdb"
    shutil.copy(small_demo_path, path)
    store = Store(path)
    lat, lng = store.sql(
        "SELECT lat, lng FROM outlets WHERE branch_id = ? ORDER BY outlet_id LIMIT 1", [BRANCH]
    ).row(0)
    names = hostile_names(recorder, probe_file)
    src = folder / "outlets.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["outlet_id", "name", "lat", "lng", "capacity_couriers", "capacity_parcels_per_hour"])
        for i, name in enumerate(names):
            w.writerow([f"o-x{i:02d}", name, lat + 0.0004 * i, lng, 4 + i, 60])
    report = import_file(store, src, kind="outlets")
    assert report.accepted == len(names), report
    stored = store.sql("SELECT name FROM outlets WHERE outlet_id LIKE 'o-x%' ORDER BY outlet_id")
    assert stored["name"].to_list() == names  # imported as they are: the exports must cope
    nodes = node_names(recorder, probe_file)
    for node_id, name in nodes.items():
        store.cursor().execute("UPDATE nodes SET name = ? WHERE node_id = ?", [name, node_id])
    yield Hostile(path, store, names, nodes)
    store.close()


@pytest.fixture(scope="session")
def hostile_model(hostile, settings):
    from views.model import Model

    return Model(hostile.store, settings)


@dataclass
class Watched:
    """What a page did: dialogs, console messages, page errors, requests made and
    requests its Content-Security-Policy refused."""

    dialogs: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def open_watched(browser, url: str, width: int = 1280, height: int = 900):
    """A new page on ``url`` with every dialog, console message, page error and request
    recorded (dialogs dismissed, requests other than ``url`` aborted). Returns
    ``(context, page, watched)``; close the context when done."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    seen = Watched()

    def dialog(d):
        seen.dialogs.append(d.message)
        d.dismiss()

    def route(r):
        if r.request.url == url:
            r.continue_()
        else:
            seen.requests.append(r.request.url)
            r.abort()

    page.on("dialog", dialog)
    page.on("console", lambda m: seen.console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: seen.errors.append(str(e)))
    page.route("**/*", route)
    # a request the route did not see but that completed (none should) counts too; one
    # refused by the page's CSP never leaves the browser and is kept apart
    page.on("requestfinished", lambda r: None if r.url == url else seen.requests.append(r.url))
    page.on("requestfailed", lambda r: seen.refused.append(r.url) if r.failure == "csp" else None)
    page.goto(url)
    page.wait_for_load_state("load")
    return context, page, seen


def drawn(page, selector: str) -> bool:
    """Whether ``selector`` appears within 15 s (False rather than an error, so that a
    test states what the page did before it states what the page failed to draw)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector(selector, state="attached", timeout=15_000)
    except PlaywrightTimeout:
        return False
    return True


#: Shows every tooltip of a Leaflet map the way Leaflet does (its HTML set as innerHTML
#: of an element) and returns their text; a tooltip bound as a function is called.
SHOW_TOOLTIPS = """() => {
    if (typeof L === 'undefined') return [];
    const maps = Object.keys(window).filter(k => k.startsWith('map_') && window[k] instanceof L.Map);
    const out = [];
    for (const k of maps) {
        window[k].eachLayer(layer => {
            const tip = layer.getTooltip && layer.getTooltip();
            if (!tip) return;
            let c = tip._content;
            if (typeof c === 'function') c = c(layer);
            const div = document.createElement('div');
            div.innerHTML = typeof c === 'string' ? c : (c && c.outerHTML) || '';
            document.body.appendChild(div);
            out.push(div.textContent);
        });
    }
    return out;
}"""
#: Text of every Leaflet marker icon (outline labels are ``DivIcon`` HTML).
ICON_TEXTS = "() => Array.from(document.querySelectorAll('.leaflet-marker-icon')).map(e => e.textContent)"
