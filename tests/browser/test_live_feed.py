"""Live mode in headless Chromium over a real ingest API: a page opened while data is
arriving starts live, and fixes acknowledged by the server reach the open page (KPIs,
courier markers, the indicator) without a reload, by the push channel (the default) and
by the poll; a page whose polls, or whose stream, go unanswered says so, and a page
refused a stream polls."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
import requests

from config import Settings
from tests.conftest import served
from tests.ingest_support import COURIER_DEVICES, SHENZHEN, copy_store

pytestmark = pytest.mark.browser

COURIERS_SHOWN = """() => {
  const gd = document.querySelector('#map .js-plotly-plot');
  const t = gd && gd.data && gd.data.find(t => t.uid === 'couriers');
  return t && t.lat ? t.lat.length : 0;
}"""


def _is_callback(url: str) -> bool:
    return "/_dash-update-component" in url


def _fixes(devices, lat_step: float = 0.0) -> list[dict]:
    now = int(datetime.now(UTC).timestamp())
    lat, lng = SHENZHEN
    return [
        {"device_id": d, "ts": now - 30 + i, "lat": lat + i * 1e-3 + lat_step, "lng": lng, "speed": 4.0}
        for i, d in enumerate(devices)
    ]


def _live_server(ingest_template, tmp_path, channel: str):
    """A dashboard with the ingest API on a fresh store (open app: no sign-in), its live
    pages on ``channel``."""
    from data.ingest.http_api import make_ingest_blueprint
    from data.store.database import Store
    from pages.app import build_app

    path, tokens = ingest_template
    settings = Settings.from_env({}, live_channel=channel)
    with Store(copy_store(path, tmp_path / "emap.duckdb")) as store:
        bp = make_ingest_blueprint(store, settings)
        app = build_app(store, settings, blueprints=[bp], warm=False, prefetch=False)
        with served(app) as url:
            yield url, {"Authorization": f"Bearer {tokens['system']}"}, app
            if app.live_events is not None:
                app.live_events.stop()  # as the server does before its store closes
        bp.committer.close()


@pytest.fixture(params=["push", "poll"])
def live_server(ingest_template, tmp_path, request):
    yield from _live_server(ingest_template, tmp_path, request.param)


@pytest.fixture
def push_server(ingest_template, tmp_path):
    yield from _live_server(ingest_template, tmp_path, "push")


@pytest.fixture
def poll_server(ingest_template, tmp_path):
    yield from _live_server(ingest_template, tmp_path, "poll")


def _post(url: str, headers: dict, fixes: list[dict]) -> None:
    r = requests.post(f"{url}/api/v1/pings", json=fixes, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == len(fixes)


def test_fixes_reach_an_open_live_page_without_a_reload(live_server, page):
    url, headers, app = live_server
    _post(url, headers, _fixes(COURIER_DEVICES[:2]))
    # no hour in the link, data arriving: the page starts live on the newest hour
    page.goto(f"{url}/?node=r-440300&layers=hexes,couriers&lang=en")
    page.wait_for_function("document.querySelector('#live input')?.checked === true")
    page.wait_for_function(
        "document.querySelector('#live-text')?.textContent.startsWith('live · last update')"
    )
    page.wait_for_function(f"({COURIERS_SHOWN})() === 2")
    before = page.locator("#kpi-couriers").inner_text()
    page.evaluate("() => { window.emapSamePage = true; }")

    _post(url, headers, _fixes(COURIER_DEVICES[2:7]))
    page.wait_for_function(f"({COURIERS_SHOWN})() === 7", timeout=20_000)
    page.wait_for_function(
        "b => document.querySelector('#kpi-couriers').innerText !== b", arg=before, timeout=20_000
    )
    assert "7" in page.locator("#kpi-couriers").inner_text()
    assert page.evaluate("() => window.emapSamePage === true"), "the page was reloaded"
    assert "live-lost" not in (page.locator("#live-badge").get_attribute("class") or "")
    assert app.metrics.value("emap_live_subscribers") == 1  # this page
    if app.live_events is not None:  # push: the page holds a stream and does not poll
        assert app.live_events.count() == 1
        asked = []
        page.on("request", lambda r: asked.append(r.url) if "live-version" in (r.post_data or "") else None)
        time.sleep(5)
        assert len(asked) <= 1  # at most one refresh of the indicator (every 15 s)


def test_a_link_to_an_hour_does_not_start_live(live_server, page):
    url, headers, _app = live_server
    _post(url, headers, _fixes(COURIER_DEVICES[:1]))
    today = datetime.now(UTC).date().isoformat()
    page.goto(f"{url}/?node=r-440300&date={today}&hour=3")
    page.wait_for_selector("#kpi-pickups")
    time.sleep(1.5)
    assert not page.evaluate("() => document.querySelector('#live input').checked")
    assert page.locator("#live-text").inner_text() == ""


def test_unanswered_polls_turn_the_indicator_to_lost(poll_server, page):
    url, headers, _app = poll_server
    _post(url, headers, _fixes(COURIER_DEVICES[:1]))
    page.goto(f"{url}/?node=r-440300&lang=en")
    page.wait_for_function("document.querySelector('#live-text')?.textContent.startsWith('live')")
    assert "live-lost" not in page.locator("#live-badge").get_attribute("class")
    # the server stops answering the page's requests
    page.route(_is_callback, lambda route: route.abort())
    page.wait_for_function(
        "document.querySelector('#live-badge').classList.contains('live-lost')", timeout=20_000
    )
    assert page.locator("#live-lost").is_visible()
    assert "does not answer" in page.locator("#live-lost").inner_text()
    # answered again: the indicator recovers
    page.unroute(_is_callback)
    page.wait_for_function(
        "!document.querySelector('#live-badge').classList.contains('live-lost')", timeout=20_000
    )


def _is_stream(url: str) -> bool:
    return "/live/events" in url


def test_a_page_whose_stream_is_cut_says_so_and_then_polls(push_server, page):
    url, headers, app = push_server
    _post(url, headers, _fixes(COURIER_DEVICES[:1]))
    page.goto(f"{url}/?node=r-440300&layers=hexes,couriers&lang=en")
    page.wait_for_function("document.querySelector('#live-text')?.textContent.startsWith('live')")
    page.wait_for_function(f"({COURIERS_SHOWN})() === 1")
    assert app.live_events.count() == 1
    # the server goes away: its stream ends, and neither a new stream nor a callback gets through
    page.route(_is_stream, lambda route: route.abort())
    page.route(_is_callback, lambda route: route.abort())
    app.live_events.stop()
    page.wait_for_function(
        "document.querySelector('#live-badge').classList.contains('live-lost')", timeout=20_000
    )
    assert "does not answer" in page.locator("#live-lost").inner_text()
    # it answers again, but refuses streams (429, as when too many are open): the page
    # polls, and fixes reach it
    page.unroute(_is_stream)
    page.unroute(_is_callback)
    page.wait_for_function(
        "!document.querySelector('#live-badge').classList.contains('live-lost')", timeout=20_000
    )
    _post(url, headers, _fixes(COURIER_DEVICES[1:4]))
    page.wait_for_function(f"({COURIERS_SHOWN})() === 4", timeout=20_000)
    assert app.live_events.count() == 0
