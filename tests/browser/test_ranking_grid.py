"""The ranking grid (dash-ag-grid) in headless Chromium under the dashboard's content
security policy: sorting by a column, a name that looks like a formula shown as text,
the grid's scripts served by the app, its own CSV export off; the server-side CSV
download of a manager (escaped, audited) and no download for a viewer."""

from __future__ import annotations

import csv
import io
from urllib.parse import urlparse

import pytest

from auth import users
from config import Settings
from pages import ids
from tests.auth_support import PASSWORD
from tests.browser.conftest import ARTIFACTS
from tests.conftest import served
from tests.security.scope_support import copy_store_with_accounts

pytestmark = pytest.mark.browser

REGION = "r-440300"
#: A branch of the region given a name a spreadsheet would run as a formula.
FORMULA_NODE = "b-440304"
FORMULA_NAME = '=HYPERLINK("http://127.0.0.1:9/x","福田区")'
MANAGER, VIEWER = "shenzhen", "sz-viewer"

#: Collects Content-Security-Policy violations.
WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""
#: The grid's rows in display order: {row index: {column: text}}.
GRID_ROWS = """() => {
  const out = {};
  for (const cell of document.querySelectorAll('#children .ag-row .ag-cell[col-id]')) {
    const i = cell.closest('.ag-row').getAttribute('row-index');
    (out[i] = out[i] || {})[cell.getAttribute('col-id')] = cell.innerText;
  }
  return out;
}"""


@pytest.fixture(scope="module")
def ranking_server(small_demo_path, tmp_path_factory):
    """A dashboard with sign-in on a copy of the small demo where one branch of Shenzhen
    has a formula for a name: ``(store, url)``."""
    from pages.app import build_app

    path = tmp_path_factory.mktemp("ranking") / "emap.duckdb"
    store = copy_store_with_accounts(small_demo_path, path, only=(MANAGER, VIEWER))
    store.cursor().execute("UPDATE nodes SET name = ? WHERE node_id = ?", [FORMULA_NAME, FORMULA_NODE])
    app = build_app(store, Settings.from_env(), warm=False, prefetch=False, auth=True)
    with served(app) as url:
        yield store, url
    store.close()


@pytest.fixture
def csp_page(browser):
    """A page that honours the content security policy (no bypass) and accepts downloads."""
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1500, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    pg.add_init_script(WATCH)
    yield pg
    context.close()


def _sign_in(page, url: str, user: str) -> None:
    page.goto(f"{url}/?node={REGION}&hour=10")
    page.fill("#user", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#breadcrumb button.current")
    page.locator("#children .ag-cell[col-id=name]").get_by_text(FORMULA_NAME, exact=True).wait_for()


def _column(page, col: str) -> list[str]:
    rows = page.evaluate(GRID_ROWS)
    return [rows[i][col] for i in sorted(rows, key=int)]


def _sort_by(page, col: str, direction: str) -> None:
    header = page.locator(f"#children .ag-header-cell[col-id={col}]")
    for _ in range(3):  # none -> ascending -> descending
        if header.get_attribute("aria-sort") == direction:
            return
        header.locator(".ag-header-cell-label").click()
        page.wait_for_timeout(200)
    assert header.get_attribute("aria-sort") == direction


def _numbers(texts: list[str]) -> list[float | None]:
    """Cell texts as numbers (an empty cell: None)."""
    return [float(t.replace(",", "")) if t.strip() else None for t in texts]


def _ascending(values: list) -> list:
    """``values`` in the grid's ascending order: empty cells first."""
    return sorted(values, key=lambda v: (v is not None, v or 0))


def test_the_grid_sorts_by_every_kind_of_column_and_shows_names_as_text(browser, csp_page, ranking_server):
    page, (_store, url) = csp_page, ranking_server
    seen = []
    page.on("request", lambda r: seen.append(r.url))
    page.on("dialog", lambda d: (seen.append("dialog " + d.message), d.dismiss()))
    _sign_in(page, url, MANAGER)
    names = _column(page, "name")
    assert FORMULA_NAME in names and len(names) >= 5
    # the server's order: largest volume first
    volumes = _numbers(_column(page, "volume"))
    assert volumes == _ascending(volumes)[::-1]
    # numbers as numbers: their order as text would differ (7 after 437)
    assert _ascending(volumes) != sorted(volumes, key=str)
    for col in ("volume", "on_time_rate", "couriers"):
        _sort_by(page, col, "ascending")
        values = _numbers(_column(page, col))
        assert values == _ascending(values), (col, values)
        _sort_by(page, col, "descending")
        values = _numbers(_column(page, col))
        assert values == _ascending(values)[::-1], (col, values)
    _sort_by(page, "name", "ascending")
    assert _column(page, "name") == sorted(names)
    page.screenshot(path=str(ARTIFACTS / "ranking-grid.png"))
    # AG Grid's own CSV export is off: asking its API for one downloads nothing
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    page.evaluate("() => dash_ag_grid.getApi('children').exportDataAsCsv()")
    page.wait_for_timeout(500)
    assert downloads == []
    # the grid's scripts come from the app; nothing ran, nothing was blocked
    assert any("/_dash-component-suites/dash_ag_grid/" in u for u in seen)
    host = urlparse(url).netloc
    assert [u for u in seen if urlparse(u).scheme in ("http", "https") and urlparse(u).netloc != host] == []
    assert [u for u in seen if u.startswith("dialog")] == []
    assert page.evaluate("() => window.__csp") == []
    assert page.locator("#children a, #children img").count() == 0


def test_a_manager_downloads_the_ranking_as_escaped_audited_csv(csp_page, ranking_server):
    page, (store, url) = csp_page, ranking_server
    before = len(users.audit_log(store, "export"))
    _sign_in(page, url, MANAGER)
    _sort_by(page, "name", "ascending")  # the client's order does not matter to the server
    with page.expect_download() as info:
        page.click(f"#{ids.RANKING_BUTTON}")
    download = info.value
    assert download.suggested_filename.startswith(
        f"ranking-{REGION}-"
    ) and download.suggested_filename.endswith(".csv")
    with open(download.path(), encoding="utf-8") as fh:
        table = list(csv.DictReader(io.StringIO(fh.read())))
    by_node = {r["node_id"]: r for r in table}
    # the formula is text: a leading single quote, as every other export writes it
    assert by_node[FORMULA_NODE]["名称"] == "'" + FORMULA_NAME
    assert all(n.startswith("b-4403") for n in by_node) and len(by_node) == len(table) >= 5
    volumes = [float(r["件量"]) for r in table]
    assert volumes == sorted(volumes, reverse=True)
    log = users.audit_log(store, "export")
    assert len(log) == before + 1
    last = log.row(-1, named=True)
    assert last["user_id"] == MANAGER and last["detail"].startswith(f"ranking node={REGION} ")
    assert page.evaluate("() => window.__csp") == []


def test_a_viewer_has_no_download_button(csp_page, ranking_server):
    page, (_store, url) = csp_page, ranking_server
    _sign_in(page, url, VIEWER)
    assert page.locator(f"#{ids.RANKING_BUTTON}").count() == 0
    assert page.locator(f"#{ids.RANKING_DOWNLOAD}").count() == 0
    assert page.evaluate("() => window.__csp") == []
