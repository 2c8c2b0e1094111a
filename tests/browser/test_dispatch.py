# ruff: noqa: F811  (the shared demo fixtures are imported by name and used as arguments)
"""Dispatch suggestions in headless Chromium: where couriers cannot reach a predicted zone
in time, idle vans are suggested; their orange arrows are on the map beside the list,
and accepting one in the panel records a decision about vans. Screenshot in test-artifacts/."""

from __future__ import annotations

import shutil

import pytest

from tests.browser.conftest import ARTIFACTS
from tests.conftest import served
from tests.forecast_support import forecast_demo_path, forecast_settings, forecast_store  # noqa: F401

pytestmark = pytest.mark.browser

REGION = "r-440300"
#: 15:00 local on the scored day: vans are back at their hubs, the afternoon rush is on.
LOCAL_HOUR = 15

VAN_TRACES = """() => {
  const gd = document.querySelector('#map .js-plotly-plot');
  if (!gd || !gd.data) return null;
  const by = Object.fromEntries(gd.data.map(t => [t.uid, t]));
  const n = t => (t && t.lat ? t.lat.length : 0);
  return {vans: n(by.dispatch_van_arrows), couriers: n(by.dispatch_arrows),
          colour: by.dispatch_van_arrows && by.dispatch_van_arrows.line && by.dispatch_van_arrows.line.color,
          labels: by.dispatch_van_labels ? by.dispatch_van_labels.text : []};
}"""


@pytest.fixture
def vans_only_app(forecast_demo_path, forecast_settings, tmp_path):
    """The dashboard on a writable copy of the forecast demo, with couriers slowed to a
    crawl (they reach 0.5 km in 15 minutes) and vans given 10 km: only vans can help."""
    from dataclasses import replace

    from data.store.database import Store
    from pages.app import build_app

    path = tmp_path / "emap.duckdb"
    shutil.copy(forecast_demo_path, path)
    settings = replace(
        forecast_settings,
        data_dir=tmp_path,
        dispatch_walk_kmh=1.0,
        dispatch_ebike_kmh=2.0,
        dispatch_van_kmh=40.0,
    )
    with Store(path) as store:
        yield build_app(store, settings, warm=False, prefetch=False), store


def test_van_suggestion_is_drawn_listed_and_accepted(page, vans_only_app, forecast_store, forecast_settings):
    from data.store import decisions
    from views import backtest as bt

    app, store = vans_only_app
    day = bt.newest_day(forecast_store, "hq", forecast_settings.local_tz)
    with served(app) as url:
        page.goto(f"{url}/?node={REGION}&date={day}&hour={LOCAL_HOUR}&layers=outlines,zones,dispatch_arrows")
        page.wait_for_selector("#outlook .suggestion.vehicle")
        page.wait_for_function(f"(() => {{ const s = ({VAN_TRACES})(); return s && s.vans > 0; }})()")
        traces = page.evaluate(VAN_TRACES)
        assert traces["colour"] == "#d95f02" and traces["couriers"] == 0
        assert traces["labels"] and all(t.endswith(" 车") for t in traces["labels"])
        row = page.locator("#outlook .suggestion.vehicle").first
        text = row.inner_text()
        assert "辆车，来自" in text and "km" in text and "转运中心" in text
        assert "车辆调派" in page.inner_text(".dispatch-legend")
        # the map's own legend names both kinds of arrow in their colours
        legend = page.locator("#legend-dispatch_arrows")
        assert "快递员调派" in legend.inner_text() and "车辆调派" in legend.inner_text()
        assert "217, 95, 2" in legend.locator(".legend-vehicle .dot").evaluate(
            "e => getComputedStyle(e).backgroundColor"
        )
        page.screenshot(path=str(ARTIFACTS / "dispatch-vans.png"))
        row.locator("button").first.click()  # ✓ accept
        page.wait_for_function("document.querySelector('#outlook-note').innerText.includes('已记录')")
    rec = decisions.decisions(store, REGION).row(0, named=True)
    assert rec["decision"] == "accepted" and rec["kind"] == "vehicle" and rec["mode"] == "van"
    assert rec["vehicles"] >= 1 and rec["couriers"] == 0
    assert rec["source_outlet"].startswith("h-440300-")
