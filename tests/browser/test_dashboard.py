"""The dashboard in headless Chromium: hexes drawn, drill-down by clicking, breadcrumb,
hour change, alert click, language switch. Screenshots go to test-artifacts/."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from config import Settings
from tests.browser.conftest import ARTIFACTS
from views.model import Model

pytestmark = pytest.mark.browser

FUTIAN = (22.541, 114.055)  # a point inside 福田区, Shenzhen (b-440304)

MAP_STATE = """() => {
  const gd = document.querySelector('#map .js-plotly-plot');
  if (!gd || !gd._fullLayout || !gd._fullLayout.map) return null;
  const hex = gd.data.find(t => t.uid === 'hexes') || {};
  return {hexes: (hex.locations || []).length, center: gd._fullLayout.map.center,
          zoom: gd._fullLayout.map.zoom, uirevision: gd.layout.uirevision};
}"""


HOVERED = """() => {
  const gd = document.querySelector('#map .js-plotly-plot');
  return !!(gd && gd._hoverdata && gd._hoverdata.length);
}"""


class _Activity:
    """When the page last had a request in flight (callbacks, scripts, data): on a loaded
    machine the server is slow to answer and the page stays busy; a page with nothing in
    flight has nothing more coming. Event streams, open for good, are not counted."""

    def __init__(self, page):
        self._pending = 0
        self._last = time.monotonic()
        page.on("request", lambda r: self._seen(r, 1))
        page.on("requestfinished", lambda r: self._seen(r, -1))
        page.on("requestfailed", lambda r: self._seen(r, -1))

    def _seen(self, request, step: int) -> None:
        if request.resource_type not in ("eventsource", "websocket"):
            self._pending += step
            self._last = time.monotonic()

    def idle_for(self) -> float:
        """Seconds since a request was last in flight (0 while one is)."""
        return 0.0 if self._pending > 0 else time.monotonic() - self._last


def _wait(page, activity: _Activity | None, predicate: str, arg=None, idle: float = 20.0) -> None:
    """Wait until ``predicate`` holds in the page: for as long as the page has requests
    in flight or had one in the last ``idle`` seconds; then it fails. Without
    ``activity``, the page's default time-out."""
    if activity is None:
        page.wait_for_function(predicate, arg=arg)
        return
    deadline = time.monotonic() + 300  # a bound on a page that never settles
    while True:
        try:
            page.wait_for_function(predicate, arg=arg, timeout=2_000)
            return
        except PlaywrightTimeoutError:
            if activity.idle_for() >= idle or time.monotonic() >= deadline:
                raise


def _query(page) -> dict:
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


def _wait_hexes(page, activity: _Activity | None = None):
    _wait(page, activity, f"(() => {{ const s = ({MAP_STATE})(); return s && s.hexes > 0; }})()")


def _wait_node(page, node: str, activity: _Activity | None = None):
    _wait(page, activity, f"window.location.search.includes('node={node}&')")
    _wait(
        page,
        activity,
        f"document.querySelector('#breadcrumb button.current') && "
        f"document.querySelector('#breadcrumb button.current').id.includes('{node}')",
    )
    _wait_hexes(page, activity)
    time.sleep(0.8)  # let MapLibre finish moving to the new view before the next click


def _click_at(page, lat: float, lng: float):
    """Click the map at a point, once the map has taken the pointer there as over a
    territory (its click carries what the pointer is over)."""
    xy = page.evaluate(
        """([lat, lng]) => {
      const gd = document.querySelector('#map .js-plotly-plot');
      const m = gd._fullLayout.map._subplot.map;
      const p = m.project([lng, lat]);
      const r = m.getCanvas().getBoundingClientRect();
      return [r.left + p.x, r.top + p.y];
    }""",
        [lat, lng],
    )
    page.mouse.move(xy[0], xy[1])
    page.wait_for_function(HOVERED)
    page.mouse.click(xy[0], xy[1])


@pytest.fixture(scope="module")
def demo_day(small_store):
    return Model(small_store, Settings.from_env()).dates()[-1]


def test_load_drill_down_and_back(page, dashboard_url, demo_day):
    # The first test on the module's server: the first views are computed, not cached,
    # and on a loaded machine take long. Each wait lasts while the page is being answered.
    activity = _Activity(page)
    t0 = time.monotonic()
    page.goto(f"{dashboard_url}/?date={demo_day}&hour=10&layers=hexes,outlines,zones")
    _wait_hexes(page, activity)
    _wait(page, activity, "document.querySelector('#kpis .kpi') !== null")
    print(f"first load with hexes and KPIs: {time.monotonic() - t0:.2f} s")
    assert _query(page)["node"] == "hq"
    page.screenshot(path=str(ARTIFACTS / "dashboard-hq.png"))

    path = ["hq"]
    for expected_level in ("division", "region", "branch"):
        _click_at(page, *FUTIAN)
        _wait(page, activity, f"!window.location.search.includes('node={path[-1]}&')")
        node = _query(page)["node"]
        path.append(node)
        _wait_node(page, node, activity)
        assert re.match({"division": r"div-", "region": r"r-", "branch": r"b-"}[expected_level], node)
    assert path[1:] == [path[1], "r-440300", "b-440304"]
    assert page.locator("#breadcrumb button").count() == 4
    page.screenshot(path=str(ARTIFACTS / "dashboard-branch.png"))

    # back up with the breadcrumb to the region, then to headquarters
    page.locator("#breadcrumb button").nth(2).click()
    _wait_node(page, "r-440300", activity)
    page.locator("#breadcrumb button").first.click()
    _wait_node(page, "hq", activity)
    assert page.locator("#breadcrumb button").count() == 1


def test_hour_change_changes_kpis_and_keeps_the_url(page, dashboard_url, demo_day):
    page.goto(f"{dashboard_url}/?node=r-440300&date={demo_day}&hour=8")
    _wait_hexes(page)
    page.wait_for_selector("#kpi-pickups")
    before = page.inner_text("#kpis")
    page.click("#hour-next")
    page.wait_for_function("window.location.search.includes('hour=9')")
    page.wait_for_function("(b) => document.querySelector('#kpis').innerText !== b", arg=before)
    assert page.inner_text("#kpis") != before
    assert _query(page)["hour"] == "9"
    # a reload restores the same view from the URL
    page.reload()
    _wait_hexes(page)
    page.wait_for_selector("#kpi-pickups")
    assert _query(page)["node"] == "r-440300" and _query(page)["hour"] == "9"


def test_alert_click_moves_the_map(page, dashboard_url, small_store, demo_day):
    model = Model(small_store, Settings.from_env())
    surge = small_store.sql("SELECT * FROM demo_surges ORDER BY start_hour DESC LIMIT 1").row(0, named=True)
    loc = model.local(surge["start_hour"])
    region = model.node(surge["branch_id"])["parent_id"]
    page.goto(f"{dashboard_url}/?node={region}&date={loc.date().isoformat()}&hour={loc.hour}")
    _wait_hexes(page)
    page.wait_for_selector("#alerts button")
    time.sleep(0.5)
    before = page.evaluate(MAP_STATE)
    page.locator("#alerts button").first.click()
    page.wait_for_function("window.location.search.includes('zone=1')")
    page.wait_for_function(
        "(z) => { const gd = document.querySelector('#map .js-plotly-plot');"
        " return gd._fullLayout.map.zoom > z + 0.5; }",
        arg=before["zoom"],
    )
    after = page.evaluate(MAP_STATE)
    assert after["zoom"] > before["zoom"]
    assert after["center"] != before["center"]
    page.wait_for_selector("#alerts button.selected")
    page.screenshot(path=str(ARTIFACTS / "dashboard-alert.png"))
    # the next hour keeps the map on the zone (it used to jump back to the whole region)
    time.sleep(0.8)
    page.click("#hour-next")
    page.wait_for_function(f"window.location.search.includes('hour={(loc.hour + 1) % 24}&')")
    page.wait_for_function("document.querySelector('#status').innerText.includes(':00')")
    time.sleep(1.5)  # the map callback has answered and MapLibre has drawn
    kept = page.evaluate(MAP_STATE)
    assert "zone=" not in page.url
    assert abs(kept["zoom"] - after["zoom"]) < 0.05
    assert abs(kept["center"]["lat"] - after["center"]["lat"]) < 1e-4
    assert abs(kept["center"]["lon"] - after["center"]["lon"]) < 1e-4
    assert kept["zoom"] > before["zoom"] + 0.5


def test_state_colours_have_a_legend(page, dashboard_url, demo_day):
    from layers import couriers, vehicles

    page.goto(f"{dashboard_url}/?node=b-440304&date={demo_day}&hour=10&layers=hexes,couriers,vehicles")
    page.wait_for_selector("#legend-couriers")
    page.wait_for_selector("#legend-vehicles")
    text = page.inner_text("#map-legend")
    assert "移动中" in text and "停留" in text and "离线超过 15 分钟" in text
    dots = page.evaluate(
        "() => [...document.querySelectorAll('#legend-couriers .dot')].map(d => d.style.background)"
    )
    expected = [
        "rgb({}, {}, {})".format(*(int(c[i : i + 2], 16) for i in (1, 3, 5)))
        for c in couriers.STYLE.categories.values()
    ]
    assert dots == expected
    assert page.locator("#legend-vehicles .dot").count() == len(vehicles.STYLE.categories)
    page.screenshot(path=str(ARTIFACTS / "dashboard-legend.png"))
    # no legend when neither layer is shown
    page.goto(f"{dashboard_url}/?node=b-440304&date={demo_day}&hour=10&layers=hexes")
    page.wait_for_selector("#kpi-pickups")
    page.wait_for_function("document.querySelector('#legend-couriers') === null")
    assert page.inner_text("#map-legend").strip() == ""


def test_language_switch(page, dashboard_url, demo_day):
    page.goto(f"{dashboard_url}/?node=r-440300&date={demo_day}&hour=10")
    page.wait_for_selector("#kpi-pickups")
    assert "运营电子地图" in page.inner_text("#title")
    page.get_by_text("English", exact=True).click()
    page.wait_for_function("document.querySelector('#title').innerText.includes('operations map')")
    page.wait_for_function("document.querySelector('#kpis').innerText.includes('Pickups')")
    assert _query(page)["lang"] == "en"
    assert "Peak-load alerts" in page.inner_text("#label-alerts")
    page.screenshot(path=str(ARTIFACTS / "dashboard-en.png"))


def test_english_labels_are_drawn_from_glyphs_served_by_the_app(page, dashboard_url, demo_day):
    seen = []
    page.on("response", lambda r: seen.append((r.status, r.url)))
    page.goto(f"{dashboard_url}/?date={demo_day}&hour=10&lang=en&layers=hexes,outlines")
    _wait_hexes(page)
    # the division labels are English: placed (drawn) only if their Latin glyphs loaded
    page.wait_for_function(
        """() => { const gd = document.querySelector('#map .js-plotly-plot');
        const m = gd._fullLayout.map._subplot.map;
        return m.queryRenderedFeatures({layers: ['plotly-trace-layer-labels-symbol']}).length > 0; }"""
    )
    names = page.evaluate(
        """() => { const gd = document.querySelector('#map .js-plotly-plot');
        return gd.data.find(t => t.uid === 'labels').text; }"""
    )
    assert "South China" in " ".join(names)
    glyphs = [(s, u) for s, u in seen if "/assets/glyphs/" in u]
    assert glyphs and all(s == 200 for s, _ in glyphs)
    assert all(u.startswith((dashboard_url, "data:", "blob:")) for _, u in seen), "a remote request"
    page.screenshot(path=str(ARTIFACTS / "dashboard-en-labels.png"))
