"""Names with markup, imported through the real importer (outlets from a CSV, node names
as the access tests set them, a user's display name), on the dashboard in headless
Chromium under the dashboard's own Content-Security-Policy: the user bar, the
breadcrumb, the drill-down list, the child ranking, the alert list, the predicted
alerts, the map's territory labels and an outlet's hover label. No dialog, no console
error, no policy violation, no request beyond the server's own origin, nobody called,
and every name shown as the characters it is made of."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from auth import users
from tests.conftest import served
from tests.security.names_support import *  # noqa: F403 (the fixtures)
from tests.security.names_support import BRANCH, DAY, FORMULA_BRANCHES, REGION

pytestmark = pytest.mark.browser

USER = "names-dash"
PASSWORD = "correct horse 42"
#: Milliseconds a locator waits for a panel (the first views of a cold server).
WAIT_MS = 30_000

#: Records Content-Security-Policy violations (an init script runs outside the policy).
WATCH_CSP = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""

#: Whatever markup in a name could have made: frames, objects, images off the origin,
#: handlers and links to javascript:.
MADE_BY_MARKUP = (
    "iframe, object, embed, script[src*='127.0.0.1:'], [onerror], [onload], "
    "img:not([src^='/']):not([src^='data:']):not([src^='blob:']), a[href^='javascript:']"
)

#: The map's plotly element and its traces by ``uid``.
TRACES = """() => {
  const gd = document.querySelector('#map .js-plotly-plot');
  const out = {};
  for (const t of (gd && gd.data) || []) out[t.uid] = {text: t.text || null, customdata: t.customdata || null,
      lat: t.lat || null, lon: t.lon || null};
  return out;
}"""

#: Centres the map on a point at a zoom where outlets 44 m apart are ~30 px apart. A
#: relayout while the map's style is still loading (the figure was just drawn or redrawn)
#: fails inside plotly, reading the layers of a style not loaded yet: it is tried once the
#: style is loaded, again for up to 10 s.
ZOOM_TO = """async ([lat, lon]) => {
  const gd = document.querySelector('#map .js-plotly-plot');
  for (let i = 0; i < 100; i++) {
    const sub = gd._fullLayout && gd._fullLayout.map && gd._fullLayout.map._subplot;
    if (sub && sub.map && sub.map.isStyleLoaded()) {
      try {
        await window.Plotly.relayout(gd, {'map.center': {lat: lat, lon: lon}, 'map.zoom': 16.5});
        return true;
      } catch (e) { /* the style went away again: next round */ }
    }
    await new Promise((done) => setTimeout(done, 100));
  }
  return false;
}"""

#: Page coordinates of a point on the map.
SCREEN_POINT = """([lat, lon]) => {
  const gd = document.querySelector('#map .js-plotly-plot');
  const m = gd._fullLayout.map._subplot.map;
  const p = m.project([lon, lat]);
  const box = m.getContainer().getBoundingClientRect();
  return [box.left + p.x, box.top + p.y];
}"""


def user_name(url: str) -> str:
    return f'调度员<img src="{url}/user" onerror=alert(4)><script>alert(5)</script>'


@dataclass
class Seen:
    """What the page did beyond drawing itself."""

    origin: str
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def own(self, url: str) -> bool:
        return url.startswith((self.origin + "/", "blob:" + self.origin + "/"))


@pytest.fixture(scope="module")
def alert_hour(hostile_model):
    """The first hour of the day with a peak-load zone in the hostile branch (the alert
    list and the predicted alerts of the region then name it)."""
    for hour in range(24):
        if BRANCH in hostile_model.zones(REGION, DAY, hour, with_since=False)["branch_id"].to_list():
            return hour
    raise AssertionError(f"the demo day has no peak-load zone in {BRANCH}")


@pytest.fixture(scope="module")
def dash_url(hostile, settings, recorder):
    """The dashboard with sign-in on the hostile store, a region manager whose display
    name holds markup."""
    from pages.app import build_app

    users.ensure_tables(hostile.store)
    users.create_user(
        hostile.store, USER, PASSWORD, "manager", REGION, name=user_name(recorder.url), by="test"
    )
    app = build_app(hostile.store, settings, auth=True, warm=False, prefetch=False)
    with served(app) as url:
        yield url


@pytest.fixture
def watched(browser, dash_url):
    """A page that honours the dashboard's policy (no bypass) with every dialog, console
    message, page error and request off the origin recorded (dialogs dismissed, such
    requests aborted)."""
    context = browser.new_context(viewport={"width": 1500, "height": 950})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    seen = Seen(dash_url)

    def dialog(d):
        seen.dialogs.append(d.message)
        d.dismiss()

    def route(r):
        if seen.own(r.request.url):
            r.continue_()
        else:
            seen.requests.append(r.request.url)
            r.abort()

    def console(m):
        seen.console.append(f"{m.type}: {m.text}")
        if m.type == "error":
            seen.errors.append(m.text)

    page.on("dialog", dialog)
    page.on("console", console)
    page.on("pageerror", lambda e: seen.errors.append(f"page error: {e}"))
    page.on(
        "request",
        lambda r: None if seen.own(r.url) or r.url.startswith("data:") else seen.requests.append(r.url),
    )
    page.route("**/*", route)
    page.add_init_script(WATCH_CSP)
    yield page, seen
    context.close()


def _sign_in(page, url: str, target: str) -> None:
    page.goto(f"{url}{target}")
    page.locator("#user").fill(USER)
    page.locator("#password").fill(PASSWORD)
    page.locator("button[type=submit]").click()
    page.locator("#breadcrumb button.current").wait_for()


def _nothing_happened(page, seen: Seen, recorder, before: int) -> None:
    page.wait_for_timeout(300)  # let a handler or a frame that markup made fire
    print("console:", *seen.console, sep="\n  ")
    assert seen.dialogs == []
    assert seen.errors == []
    assert sorted(set(seen.requests)) == []
    assert page.evaluate("() => window.__csp") == []
    assert recorder.hits[before:] == []
    assert page.locator(MADE_BY_MARKUP).count() == 0


def test_names_on_the_region_view_show_as_text(watched, dash_url, hostile, recorder, alert_hour):
    page, seen = watched
    before = len(recorder.hits)
    names = hostile.node_names
    _sign_in(page, dash_url, f"/?node={REGION}&date={DAY}&hour={alert_hour}")

    # the user bar and the breadcrumb (the region's own name)
    assert page.locator("#user-name").inner_text().startswith(user_name(recorder.url) + " · ")
    assert page.locator("#breadcrumb button.current").inner_text() == names[REGION]
    # the child ranking (sorted by the table, so the branch is on its first page)
    table = page.locator("#children")
    table.get_by_text(names[BRANCH], exact=True).wait_for()
    for branch in FORMULA_BRANCHES:
        assert table.get_by_text(names[branch], exact=True).count() == 1
    # the alert list names the branch of each zone
    alert = page.locator("#alerts button", has_text=names[BRANCH])
    alert.first.wait_for()
    assert names[BRANCH] in alert.first.inner_text()
    # the predicted alerts of the next hours name the branch too
    page.locator("#outlook .predicted", has_text=names[BRANCH]).first.wait_for(timeout=60_000)
    # the drill-down list: the options are the branches' names
    page.locator("#drill").click()
    option = page.get_by_role("option", name=names[BRANCH], exact=True)
    option.wait_for()
    assert option.inner_text() == names[BRANCH]
    page.keyboard.press("Escape")
    # the map's territory labels are the names, drawn as glyphs
    page.locator("#map .js-plotly-plot .maplibregl-canvas").wait_for()
    labels = page.evaluate(TRACES)["labels"]
    assert names[BRANCH] in labels["text"]
    # and the hover label of the branch's territory shows the name as text
    at = labels["text"].index(names[BRANCH])
    x, y = page.evaluate(SCREEN_POINT, [labels["lat"][at], labels["lon"][at]])
    page.mouse.move(x + 30, y + 30)
    page.mouse.move(x, y, steps=4)
    hover = page.locator("#map .hoverlayer .hovertext")
    hover.first.wait_for()
    hovered = hover.first.text_content()
    _nothing_happened(page, seen, recorder, before)
    assert hovered == names[BRANCH]


def test_names_on_the_branch_view_and_an_outlets_hover_show_as_text(watched, dash_url, hostile, recorder):
    page, seen = watched
    before = len(recorder.hits)
    names = hostile.node_names
    _sign_in(page, dash_url, f"/?node={BRANCH}&date={DAY}&hour=10&layers=hexes,outlines,zones,outlets")

    crumbs = page.locator("#breadcrumb button")
    assert crumbs.all_inner_texts() == [names[REGION], names[BRANCH]]
    page.locator("#map .js-plotly-plot .maplibregl-canvas").wait_for()
    page.locator("#kpis .kpi").first.wait_for()
    traces = page.evaluate(TRACES)
    outlets = traces["outlets"]
    hostile_at = [(i, row[0]) for i, row in enumerate(outlets["customdata"]) if str(row[0]).startswith("o-x")]
    assert len(hostile_at) == len(hostile.outlet_names)  # every hostile outlet is on the map
    # hover over outlets whose names hold tags, handlers, a javascript: link and quotes
    wanted = [n for n in hostile.outlet_names if n.startswith(("<img", "<script", "<a ", "<svg", '"', "'"))]
    middle = hostile_at[len(hostile_at) // 2][0]
    assert page.evaluate(ZOOM_TO, [outlets["lat"][middle], outlets["lon"][middle]])
    shown = []
    for i, outlet_id in hostile_at:
        name = hostile.outlet_names[int(outlet_id[3:])]
        if name not in wanted:
            continue
        point = [outlets["lat"][i], outlets["lon"][i]]
        x, y = page.evaluate(SCREEN_POINT, point)
        page.mouse.move(x + 30, y + 30)
        page.mouse.move(x, y, steps=4)
        # this outlet's label, told from the previous one by its capacity (each differs)
        capacity = re.compile(rf": {outlets['customdata'][i][2]}(?!\d)")
        label = page.locator("#map .hoverlayer .hovertext").filter(has_text=capacity)
        label.wait_for()
        shown.append((name, label.text_content()))
    print("hover labels:", *shown, sep="\n  ")
    _nothing_happened(page, seen, recorder, before)
    # plotly reads tags in hover labels: an unescaped name would lose its markup
    assert [name for name, text in shown if name in text] == wanted
