"""Live by default: ``python app.py serve`` on a demo store plays a live day, and a page
opened on it in headless Chromium sees a courier marker move, the KPI panel change and
the day's scheduled surge open a peak-load alert, without a reload."""

from __future__ import annotations

import re

import pytest

from tests.auth_support import PASSWORD
from tests.serve_support import serve_process

pytestmark = pytest.mark.browser

#: Data seconds per second: an hour of the day in a minute. Faster, the view (which
#: follows the newest hour) leaves the surge's hour before its alert has shown.
SPEEDUP = 60
COURIERS = """() => {
  const gd = document.querySelector('#map .js-plotly-plot');
  const t = gd && gd.data && gd.data.find(t => t.uid === 'couriers');
  return t && t.lat && t.lat.length ? JSON.stringify([t.lat, t.lon]) : null;
}"""


@pytest.fixture(scope="module")
def live_demo(small_demo_path, tmp_path_factory):
    """A real server on a copy of the small demo, playing its live day; yields its URL and
    the surge's branch (from the server's log)."""
    with serve_process(
        small_demo_path,
        tmp_path_factory.mktemp("live-demo"),
        # the in-transit scans are sent first: then data is arriving and the day is under way
        ready="live demo day, in-transit scans",
        args=("--live-speedup", str(SPEEDUP)),
        env={"EMAP_LIVE_DEMO": "1", "EMAP_ACCESS_LOG": "false"},
        # a stopping server waits up to 10 s for each of the live day's threads to finish
        # what they are sending; this test checks nothing of the stop
        graceful=False,
    ) as served:
        surge = re.search(r"surge x[\d.]+ in (b-[\w-]+) from", served.log())
        assert surge, served.log()
        yield served.url, surge.group(1)


def test_a_page_opened_on_the_demo_sees_the_day_move_and_the_surge_alert(live_demo, page):
    url, branch = live_demo
    page.goto(f"{url}/?node={branch}&layers=hexes,zones,couriers")
    page.wait_for_selector("#user")
    page.fill("#user", "admin")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    # no hour in the link and data arriving: the page starts live
    page.wait_for_function("document.querySelector('#live input')?.checked === true")
    page.wait_for_function(f"({COURIERS})() !== null")
    page.evaluate("() => { window.emapSamePage = true; }")
    markers = page.evaluate(COURIERS)
    kpis = page.locator("#kpis").inner_text()

    # within 60 s: a courier marker moves and the KPIs change
    page.wait_for_function(f"m => ({COURIERS})() !== m", arg=markers, timeout=60_000)
    page.wait_for_function("k => document.querySelector('#kpis').innerText !== k", arg=kpis, timeout=60_000)
    # the surge opens a peak-load alert in its branch (within its first hour: a minute at 60x)
    page.wait_for_function("document.querySelectorAll('#alerts button').length > 0", timeout=180_000)
    assert page.evaluate("() => window.emapSamePage === true"), "the page was reloaded"
    assert (
        "live" in page.locator("#live-text").inner_text() or "实时" in page.locator("#live-text").inner_text()
    )
