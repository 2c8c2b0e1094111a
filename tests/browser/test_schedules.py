"""The scheduled-reports page in headless Chromium: its creator signs in and sees the
schedule, its status and the link to its output."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from config import Settings
from reports.scheduler import run_due
from tests.auth_support import PASSWORD
from tests.browser.conftest import ARTIFACTS
from tests.conftest import served
from tests.test_schedules import make_store, new

pytestmark = pytest.mark.browser


def test_the_creator_sees_the_schedule_and_its_output(browser, small_demo_path, tmp_path):
    from pages.app import build_app

    store = make_store(small_demo_path, tmp_path / "emap.duckdb")
    settings = Settings.from_env({}, data_dir=tmp_path)
    sid = new(store, "nanshan", "b-440305", period="hour", at="00:05")
    (done,) = run_due(store, settings, now=datetime(2026, 11, 20, 10, 6, tzinfo=ZoneInfo("Asia/Shanghai")))
    app = build_app(store, settings, warm=False, prefetch=False, auth=True)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        with served(app) as url:
            page.goto(f"{url}/login?next=/schedules")
            page.fill("#user", "nanshan")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            row = page.wait_for_selector(f'#schedules tr[data-schedule="{sid}"]')
            assert "active" in row.inner_text()
            link = row.query_selector("a.output")
            assert link.inner_text() == done["detail"]
            with page.expect_download() as got:
                link.click()
            assert got.value.suggested_filename == done["detail"]
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "schedules.png"))
    finally:
        context.close()
        store.close()
