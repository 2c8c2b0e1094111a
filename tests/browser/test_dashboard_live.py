"""Live mode, Patch updates, play button and the GCJ-02 basemap in headless Chromium."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlparse

import pytest

from config import Settings
from geo.coords import wgs84_to_gcj02
from tests.browser.conftest import ARTIFACTS
from views.model import Model

pytestmark = pytest.mark.browser

HEX_STATE = """() => {
  const gd = document.querySelector('#map .js-plotly-plot');
  if (!gd || !gd.data) return null;
  const h = gd.data.find(t => t.uid === 'hexes');
  if (!h || !h.locations || !h.locations.length) return null;
  return {n: h.locations.length, first: h.geojson.features[0].geometry.coordinates[0][0],
          id: h.geojson.features[0].id, zoom: gd._fullLayout.map.zoom, center: gd._fullLayout.map.center};
}"""


def _query(page) -> dict:
    return {k: v[-1] for k, v in parse_qs(urlparse(page.url).query).items()}


def _map_responses(page, bodies: list):
    def on_response(resp):
        if "_dash-update-component" in resp.url:
            try:
                body = resp.json()
            except Exception:
                return
            if "map" in (body.get("response") or {}):
                bodies.append(body["response"]["map"]["figure"])

    page.on("response", on_response)


@pytest.fixture(scope="module")
def model(small_store):
    return Model(small_store, Settings.from_env())


def test_hour_change_patches_values_and_keeps_user_zoom(page, dashboard_url, model):
    day = model.dates()[-1]
    bodies: list = []
    page.goto(f"{dashboard_url}/?node=r-440300&date={day}&hour=9&layers=hexes,outlines,zones,couriers")
    page.wait_for_function(f"({HEX_STATE})() !== null")
    time.sleep(0.8)
    _map_responses(page, bodies)
    # the user zooms in
    page.evaluate(
        "() => { const gd = document.querySelector('#map .js-plotly-plot');"
        " const m = gd._fullLayout.map._subplot.map; m.jumpTo({zoom: m.getZoom() + 1.5}); }"
    )
    time.sleep(0.8)
    zoomed = page.evaluate(HEX_STATE)["zoom"]
    page.click("#hour-next")
    page.wait_for_function("window.location.search.includes('hour=10')")
    deadline = time.monotonic() + 15
    while not bodies and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert bodies, "no map update after the hour change"
    update = bodies[-1]
    # a Patch: operations on the existing figure, no hex geometry resent
    assert update.get("__dash_patch_update") == "__dash_patch_update"
    assert "geojson" not in json.dumps(
        [op for op in update["operations"] if op["location"][:2] == ["data", 1]]
    )
    assert len(json.dumps(update)) < 200_000
    time.sleep(0.8)
    assert abs(page.evaluate(HEX_STATE)["zoom"] - zoomed) < 0.01
    page.screenshot(path=str(ARTIFACTS / "dashboard-couriers.png"))


def test_live_mode_follows_the_newest_hour(page, dashboard_url, model):
    day = model.dates()[0]
    page.goto(f"{dashboard_url}/?node=r-440300&date={day}&hour=3")
    page.wait_for_selector("#kpi-pickups")
    page.locator("#live input").check()
    newest_day, newest_hour = model.newest()
    page.wait_for_function(
        f"window.location.search.includes('date={newest_day}') && "
        f"window.location.search.includes('hour={newest_hour}&')"
    )
    assert _query(page)["hour"] == str(newest_hour)


def test_play_steps_through_the_day(page, dashboard_url, model):
    day = model.dates()[-1]
    page.goto(f"{dashboard_url}/?node=r-440300&date={day}&hour=8")
    page.wait_for_selector("#kpi-pickups")
    page.click("#play")
    page.wait_for_function("window.location.search.includes('hour=10')", timeout=15_000)
    page.click("#play")  # pause
    time.sleep(0.5)
    stopped = _query(page)["hour"]
    time.sleep(2.5)
    assert _query(page)["hour"] == stopped


def test_amap_basemap_shifts_cells_to_gcj02(page, dashboard_url, model):
    day = model.dates()[-1]
    page.goto(f"{dashboard_url}/?node=r-440300&date={day}&hour=10&basemap=none")
    page.wait_for_function(f"({HEX_STATE})() !== null")
    plain = page.evaluate(HEX_STATE)
    page.goto(f"{dashboard_url}/?node=r-440300&date={day}&hour=10&basemap=amap")
    page.wait_for_function(f"({HEX_STATE})() !== null")
    shifted = page.evaluate(HEX_STATE)
    assert plain["id"] == shifted["id"]
    lat, lng = wgs84_to_gcj02([plain["first"][1]], [plain["first"][0]])
    assert shifted["first"] == pytest.approx([lng[0], lat[0]], abs=3e-5)
    layers = page.evaluate("() => document.querySelector('#map .js-plotly-plot').layout.map.layers")
    assert layers and "autonavi" in layers[0]["source"][0]
