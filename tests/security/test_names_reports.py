"""Names with markup, imported through the real importer (outlets from a CSV, node names
as the access tests set them), in every export of a report: the HTML opened in Chromium
(no dialog, no console message, no request but the file itself, the names shown as text),
PNG and PDF (no local file read, nobody called, no hang on an alert), and CSV cells that
a spreadsheet never reads as formulas."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess

import orjson
import pytest

from reports import build as rb
from reports import html as html_report
from reports import render, write
from reports.html import HEX_CLASS
from tests.security.names_support import *  # noqa: F403 (the fixtures)
from tests.security.names_support import (
    BRANCH,
    DAY,
    FORMULA_BRANCHES,
    ICON_TEXTS,
    REGION,
    SHOW_TOOLTIPS,
    drawn,
    open_watched,
)

pytestmark = pytest.mark.browser

#: What a spreadsheet reads as the start of a formula (or of a new cell).
CSV_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: Time limit of a render in these tests (the setting, read from the environment).
LIMIT_SECONDS = "40"


@pytest.fixture(scope="module")
def reports(hostile, hostile_model, settings):
    """The branch's and the region's day reports on the hostile store."""
    return {
        node: rb.build(hostile.store, settings, node, rb.Period(DAY), "scans", model=hostile_model)
        for node in (BRANCH, REGION)
    }


@pytest.fixture
def limit(monkeypatch):
    monkeypatch.setenv("EMAP_RENDER_TIMEOUT_SECONDS", LIMIT_SECONDS)


def test_the_names_reach_the_reports(reports, hostile):
    # the premise of every test below: the hostile names are in what the exports draw
    outlets = reports[BRANCH].outlets["name"].to_list()
    assert all(n in outlets for n in hostile.outlet_names)
    assert reports[BRANCH].node["name"] == hostile.node_names[BRANCH]
    assert hostile.node_names[BRANCH] in reports[REGION].children["name"].to_list()
    assert set(FORMULA_BRANCHES) <= set(reports[REGION].outlines["node_id"])


@pytest.mark.parametrize("node", [BRANCH, REGION])
def test_html_report_runs_nothing_loads_nothing_and_shows_names_as_text(
    browser, reports, hostile, recorder, tmp_path, node
):
    report = reports[node]
    path = write(report, "html", tmp_path / "report.html")
    url = path.as_uri()
    before = len(recorder.hits)
    context, page, seen = open_watched(browser, url)
    try:
        map_drawn = drawn(page, f"path.{HEX_CLASS}")
        tips = page.evaluate(SHOW_TOOLTIPS)
        icons = page.evaluate(ICON_TEXTS)
        # let an image error handler or a frame that a tooltip's HTML made fire
        page.wait_for_timeout(300)
        assert seen.dialogs == []
        assert seen.requests == [] and seen.refused == []
        assert seen.errors == []
        assert seen.console == []  # a CSP violation would be reported here
        assert recorder.hits[before:] == []
        assert page.locator("iframe, object, embed, svg[onload], img:not([src^='data:'])").count() == 0
        assert map_drawn
        title = page.locator("#emap-title").inner_text()
        assert report.node["name"] in title
        assert page.title() == f"EMAP · {report.title}"
        if node == BRANCH:
            assert hostile.node_names[REGION] in title  # the breadcrumb
            for name in hostile.outlet_names:
                assert any(name in t for t in tips), name
        else:
            for child in (BRANCH, *FORMULA_BRANCHES):
                assert hostile.node_names[child] in icons  # territory labels
                assert any(hostile.node_names[child] in t for t in tips)  # outline tooltips
    finally:
        context.close()


def _csp(text: str) -> dict[str, list[str]]:
    m = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', text)
    assert m, "no Content-Security-Policy meta element"
    policy = m.group(1).replace("&#x27;", "'")
    return {d.split()[0]: d.split()[1:] for d in policy.split("; ")}


def test_html_report_policy_names_its_scripts_by_hash_and_nothing_remote(reports):
    text = render(reports[BRANCH], "html").decode("utf-8")
    head = text[: text.index("<script")]
    assert "Content-Security-Policy" in head  # before any script, so it governs them all
    csp = _csp(text)
    assert csp["default-src"] == ["'none'"]
    scripts = csp["script-src"]
    assert scripts and all(s.startswith("'sha256-") for s in scripts)
    assert len(scripts) == text.count("<script>")  # Leaflet, folium's switches, the layers
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    assert all(s.startswith("'sha256-") for s in csp["style-src-elem"])
    assert not any(s.startswith(("http", "*")) for d in ("script-src", "style-src-elem") for s in csp[d])
    # the page Chromium renders for PNG and PDF allows no remote image either
    assert _csp(html_report.render(reports[BRANCH], static=True))["img-src"] == ["data:"]


def test_html_report_policy_refuses_markup_that_escaped_escaping(browser, reports, recorder, tmp_path):
    # the second line of defence on its own: markup put into the page after rendering
    text = render(reports[BRANCH], "html").decode("utf-8")
    injected = (
        f'<script>alert("inline")</script><img src="{recorder.url}/csp-img" onerror="alert(1)">'
        f'<iframe src="{recorder.url}/csp-frame"></iframe><style>body {{ background: red }}</style>'
    )
    text = text.replace("<body>", "<body>" + injected, 1)
    path = tmp_path / "tampered.html"
    path.write_text(text, encoding="utf-8")
    before = len(recorder.hits)
    context, page, seen = open_watched(browser, path.as_uri())
    try:
        map_drawn = drawn(page, f"path.{HEX_CLASS}")
        page.wait_for_timeout(300)
        assert seen.dialogs == []
        assert seen.requests == []  # refused by the policy before any request was made
        assert f"{recorder.url}/csp-img" in seen.refused
        assert recorder.hits[before:] == []
        assert any("Content Security Policy" in c for c in seen.console)
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") != "rgb(255, 0, 0)"
        assert map_drawn  # and the page's own scripts still ran
    finally:
        context.close()


@pytest.mark.parametrize("node", [BRANCH, REGION])
def test_png_reads_no_local_file_and_calls_nobody(reports, recorder, limit, node):
    before = len(recorder.hits)
    blob = render(reports[node], "png")
    assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 20_000
    assert recorder.hits[before:] == []  # /from-file would mean a local page was opened


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils missing")
def test_pdf_shows_names_as_text_reads_no_file_and_calls_nobody(reports, hostile, recorder, limit, tmp_path):
    before = len(recorder.hits)
    path = write(reports[REGION], "pdf", tmp_path / "region.pdf")
    assert path.read_bytes()[:5] == b"%PDF-"
    assert recorder.hits[before:] == []
    text = subprocess.run(
        ["pdftotext", "-raw", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    for secret in ("EMAP-LOCAL-SECRET", "EMAP-RECORDER", "PRETTY_NAME", "VERSION_ID"):
        assert secret not in text
    flat = re.sub(r"\s+", "", text)
    # the branch's name is printed as the characters it is made of
    assert re.sub(r"\s+", "", hostile.node_names[BRANCH]) in flat
    assert re.sub(r"\s+", "", hostile.node_names[REGION]) in flat


def test_an_alert_in_a_name_holds_neither_png_nor_pdf(reports, hostile, limit):
    # names with alert() in tooltips, script breakouts and handlers are in this report;
    # a render either finishes or stops with a ReportError at the limit, never waits on a dialog
    assert any("alert(" in n for n in hostile.outlet_names)
    png = render(reports[BRANCH], "png")
    pdf = render(reports[BRANCH], "pdf")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf[:5] == b"%PDF-"


def test_csv_cells_are_never_formulas(reports, hostile):
    rows = list(csv.reader(io.StringIO(render(reports[REGION], "csv").decode("utf-8"))))
    cells = [c for row in rows[1:] for c in row]
    assert not [c for c in cells if c.startswith(CSV_FORMULA_START)]
    nodes = {row[rows[0].index("node")] for row in rows[1:]}
    for branch in FORMULA_BRANCHES:
        if hostile.node_names[branch] in reports[REGION].hexes["node"].to_list():
            assert "'" + hostile.node_names[branch] in nodes
    assert any(n.startswith("'") for n in nodes)
    # other formats keep the names exactly: they are data, not sheets
    doc = orjson.loads(render(reports[REGION], "geojson"))
    kept = {f["properties"]["node"] for f in doc["features"]}
    assert kept & {hostile.node_names[b] for b in FORMULA_BRANCHES}
