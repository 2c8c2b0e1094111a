"""Sign-in and scope in headless Chromium: the login form, a user's own node, an edited
URL, the map drawn under the content security policy, and markup from the data shown
as text."""

# ruff: noqa: F811  (the shared fixtures are imported by name and used as arguments)
from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from tests.auth_support import PASSWORD, XSS_NAME, auth_store, auth_url  # noqa: F401
from tests.browser.conftest import ARTIFACTS

pytestmark = pytest.mark.browser

#: Collects Content-Security-Policy violations and dialogs the page raises.
WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


@pytest.fixture
def page(browser):
    """A page that honours the content security policy (no bypass)."""
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport={"width": 1500, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(20_000)
    yield pg
    context.close()


def _wait_hexes(page):
    page.wait_for_function(
        "() => { const gd = document.querySelector('#map .js-plotly-plot');"
        " const h = gd && gd.data && gd.data.find(t => t.uid === 'hexes');"
        " return h && (h.locations || []).length > 0; }"
    )


def _sign_in(page, url: str, user: str, target: str = "/"):
    page.goto(f"{url}{target}")
    page.wait_for_selector("#user")
    page.fill("#user", user)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#breadcrumb button.current")


def _node(page) -> str:
    return parse_qs(urlparse(page.url).query).get("node", [""])[-1]


def _hexes(page) -> int:
    return page.evaluate("""() => {
      const gd = document.querySelector('#map .js-plotly-plot');
      const hex = gd && gd.data ? gd.data.find(t => t.uid === 'hexes') : null;
      return hex ? (hex.locations || []).length : 0; }""")


def test_region_manager_gets_the_region_and_the_map_draws_under_the_csp(page, auth_url):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.add_init_script(WATCH)
    _sign_in(page, auth_url, "shenzhen")
    assert _node(page) == "r-440300"
    page.wait_for_function("() => document.querySelector('#map .js-plotly-plot canvas')")
    _wait_hexes(page)
    # the breadcrumb starts at the user's node: nothing above it to click
    crumbs = page.eval_on_selector_all("#breadcrumb button", "bs => bs.map(b => b.id)")
    assert len(crumbs) == 1 and "r-440300" in crumbs[0]
    # the courier layer is greyed out at region level for a manager without the grant
    disabled = page.eval_on_selector_all(
        "#layers input", "xs => xs.filter(x => x.disabled).map(x => x.value)"
    )
    assert set(disabled) == {"couriers", "vehicles"}
    page.screenshot(path=str(ARTIFACTS / "access-region.png"))
    assert page.evaluate("() => window.__csp") == [] and dialogs == []
    assert _hexes(page) > 0
    # a branch inside the region, every layer on (couriers are shown at branch level)
    page.goto(f"{auth_url}/?node=b-440304&hour=10&layers=hexes,outlines,zones,outlets,vehicles,couriers")
    page.wait_for_selector("#breadcrumb button.current")
    _wait_hexes(page)
    page.wait_for_function("() => document.querySelectorAll('#kpis .kpi').length > 0")
    page.wait_for_timeout(1000)
    assert "couriers" in page.evaluate(
        "() => document.querySelector('#map .js-plotly-plot').data.map(t => t.uid).join(' ')"
    )
    assert page.evaluate("() => window.__csp") == [] and dialogs == []


def test_an_edited_url_lands_on_the_users_own_node(page, auth_url, auth_store):
    _sign_in(page, auth_url, "shenzhen", "/?node=r-440100&hour=9")
    assert _node(page) == "r-440300"
    page.goto(f"{auth_url}/?node=hq&hour=9")
    page.wait_for_selector("#breadcrumb button.current")
    assert _node(page) == "r-440300" and "hour=9" in page.url
    # the pages never carry another node's name
    assert "广州" not in page.inner_text("body")
    n = auth_store.scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'refusal' AND user_id = 'shenzhen' AND detail LIKE '%hq%'"
    )
    assert n >= 1


def test_markup_in_a_node_name_shows_as_text(page, auth_url):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.add_init_script(WATCH)
    _sign_in(page, auth_url, "nanshan")
    assert _node(page) == "b-440305"
    crumb = page.locator("#breadcrumb button.current")
    assert crumb.inner_text() == XSS_NAME
    assert page.locator("img[src='x']").count() == 0
    # the region manager sees it in the drill-down list and the children table
    page.context.clear_cookies()
    _sign_in(page, auth_url, "shenzhen")
    page.wait_for_function(f"() => document.querySelector('#children').innerText.includes({XSS_NAME!r})")
    assert page.locator("img[src='x']").count() == 0
    page.wait_for_timeout(500)
    assert dialogs == []


def test_sign_out(page, auth_url):
    _sign_in(page, auth_url, "south")
    assert _node(page) == "div-south"
    page.click("#logout")
    page.click("button[type=submit]")
    page.wait_for_selector("#user")
    page.goto(f"{auth_url}/?node=div-south")
    assert "/login" in page.url
