"""The dashboard's export control: the current view downloads as a report with the
panels' numbers (a real server on loopback and a real headless Chromium)."""

from __future__ import annotations

import json

import pytest

from pages import export
from reports import build as rb
from tests.conftest import served as serve_app
from views import state as st
from views.model import Model

pytestmark = pytest.mark.browser


DAY = "2026-11-20"
REGION = "r-440300"


def test_export_view_is_the_report_of_the_view(small_store, settings):
    model = Model(small_store, settings)
    state = {**st.default(node=REGION, day=DAY, hour=10), "metric": "pickups", "lang": "en"}
    blob, name = export.export_view(model, model.everyone(), state, "geojson")
    assert name == f"emap-{REGION}-{DAY}T10-pickups.geojson"
    doc = json.loads(blob)
    hexes = model.hex_frame(REGION, DAY, 10, "pickups")
    assert len(doc["features"]) == len(hexes)
    assert sum(f["properties"]["value"] for f in doc["features"]) == pytest.approx(hexes["value"].sum())
    blob, name = export.export_view(model, model.everyone(), state, "csv", span="day")
    assert name == f"emap-{REGION}-{DAY}-pickups.csv" and blob.startswith(b"cell,lat,lng")
    with pytest.raises(rb.EmptyPeriodError):
        export.export_view(model, model.everyone(), {**state, "date": "2026-01-05"}, "html")


@pytest.fixture(scope="module")
def served(small_store, settings):
    from pages.app import build_app

    app = build_app(small_store, settings, warm=False)
    with serve_app(app) as url:
        yield url


def test_dashboard_button_downloads_the_current_view(served, small_store, settings, tmp_path, browser):
    import polars as pl

    from pages import ids

    page = browser.new_page(viewport={"width": 1500, "height": 900}, accept_downloads=True)
    try:
        page.set_default_timeout(30_000)
        page.goto(f"{served}/?node={REGION}&date={DAY}&hour=10&metric=deliveries&lang=en")
        page.wait_for_selector(f"#{ids.EXPORT_BUTTON}")
        page.wait_for_selector("#kpi-deliveries .value")
        page.locator(f"#{ids.EXPORT_FORMAT}").click()
        page.get_by_text("CSV", exact=True).click()
        with page.expect_download() as info:
            page.locator(f"#{ids.EXPORT_BUTTON}").click()
        download = info.value
        assert download.suggested_filename == f"emap-{REGION}-{DAY}T10-deliveries.csv"
        path = tmp_path / download.suggested_filename
        download.save_as(path)
        shown = page.locator("#kpi-deliveries .value").inner_text()
    finally:
        page.close()
    csv = pl.read_csv(path)
    model = Model(small_store, settings)
    hexes = model.hex_frame(REGION, DAY, 10, "deliveries")
    assert len(csv) == len(hexes) and csv["value"].sum() == pytest.approx(hexes["value"].sum())
    # the exported deliveries add up to the KPI card the page shows
    assert f"{int(csv['deliveries'].sum()):,}" == shown
