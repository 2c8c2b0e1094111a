"""Reports in a real headless Chromium: the HTML map with no network and no JavaScript
error, the PNG and the PDF (pages, text with pdftotext, a map image that is not blank)."""

from __future__ import annotations

import shutil
import struct
import subprocess

import numpy as np
import pytest

from reports import build as rb
from reports import html as html_report
from reports import png as png_report
from reports import write
from views.text import strings

pytestmark = pytest.mark.browser


DAY = "2026-11-20"
REGION = "r-440300"
BRANCH = "b-440304"
MB = 1024 * 1024


@pytest.fixture(scope="module")
def model(small_model):
    return small_model


@pytest.fixture(scope="module")
def region_day(small_store, settings, model):
    return rb.build(small_store, settings, REGION, rb.Period(DAY), "scans", model=model)


@pytest.fixture(scope="module")
def branch_day(small_store, settings, model):
    return rb.build(small_store, settings, BRANCH, rb.Period(DAY), "load_ratio", model=model)


def _open(browser, path):
    """Open a file with every network request refused; returns (page, errors, requests)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors, requested = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    def route(r):
        url = r.request.url
        if url.startswith(("file:", "data:")):
            r.continue_()
        else:
            requested.append(url)
            r.abort()

    page.route("**/*", route)
    page.goto(path.as_uri())
    page.wait_for_selector(f"path.{html_report.HEX_CLASS}", state="attached")
    return context, page, errors, requested


@pytest.mark.parametrize("which, limit", [("region_day", 5 * MB), ("branch_day", 1 * MB)])
def test_html_is_self_contained_and_draws_every_hex(request, browser, tmp_path, which, limit):
    report = request.getfixturevalue(which)
    path = write(report, "html", tmp_path / f"{which}.html")
    assert path.stat().st_size <= limit
    text = path.read_text(encoding="utf-8")
    assert "<script src=" not in text and 'rel="stylesheet"' not in text
    context, page, errors, requested = _open(browser, path)
    try:
        assert errors == [] and requested == []
        assert page.evaluate("typeof L") == "object"
        n = page.locator(f"path.{html_report.HEX_CLASS}").count()
        assert n == len(report.hexes) > 0
        t = strings("zh")
        assert page.locator("#emap-legend").inner_text().startswith(t["metric_" + report.metric])
        assert report.node["name"] in page.locator("#emap-title").inner_text()
        control = page.locator(".leaflet-control-layers").inner_text()
        for key in ("layer_hexes", "layer_outlines", "layer_zones", "layer_outlets"):
            assert t[key] in control
        # zones and outlets are drawn too
        assert page.locator("path.leaflet-interactive").count() > n
        # a tooltip with the cell id appears on hover
        # (through the DOM: the page's CSP refuses an added style sheet)
        page.evaluate(
            """cls => document.querySelectorAll('path:not(.' + cls + '), .leaflet-marker-icon')
                .forEach(e => e.style.setProperty('pointer-events', 'none', 'important'))""",
            html_report.HEX_CLASS,
        )
        # once the map has stopped moving (a zoom animation would carry the hex away
        # from under the pointer), the centre of the first hex not covered by the title
        # or the legend
        page.wait_for_function(
            """cls => {
            const r = JSON.stringify(document.querySelector('path.' + cls).getBoundingClientRect());
            const still = window.__emapLastRect === r;
            window.__emapLastRect = r;
            return still; }""",
            arg=html_report.HEX_CLASS,
            polling=100,
        )
        xy = page.evaluate(
            """cls => {
            for (const p of document.querySelectorAll('path.' + cls)) {
                const b = p.getBoundingClientRect(), x = b.x + b.width / 2, y = b.y + b.height / 2;
                if (document.elementFromPoint(x, y) === p) return [x, y];
            }
            return null; }""",
            html_report.HEX_CLASS,
        )
        assert xy is not None
        page.mouse.move(*xy)
        tip = page.locator(".foliumtooltip").first.inner_text()
        assert any(c in tip for c in rb.hex_ids(report))
    finally:
        context.close()


def _ppm(blob: bytes) -> np.ndarray:
    """Pixels of a binary PPM (P6) image as (h, w, 3)."""
    parts = blob.split(maxsplit=4)
    assert parts[0] == b"P6"
    w, h = int(parts[1]), int(parts[2])
    return np.frombuffer(parts[4][: w * h * 3], dtype=np.uint8).reshape(h, w, 3)


def test_png_is_the_map(region_day):
    blob = png_report.render(region_day, width=900, height=700)
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", blob[16:24])
    assert (w, h) == (900, 700)
    assert len(blob) > 20_000  # a blank 900x700 PNG is a few kB


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils missing")
def test_pdf_pages_text_and_map_image(region_day, tmp_path):
    r = region_day
    path = write(r, "pdf", tmp_path / "region.pdf")
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    assert pages == 3

    def page_text(n):
        return subprocess.run(
            ["pdftotext", "-layout", "-f", str(n), "-l", str(n), str(path), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    t = strings("zh")
    first, second, third = page_text(1), page_text(2), page_text(3)
    assert r.node["name"] in first and r.period.label() in first and t["report"] in first
    for k in r.kpis:
        assert t["kpi_" + k["key"]] in second
    pickups = next(k["value"] for k in r.kpis if k["key"] == "pickups")
    assert f"{pickups:,}" in second
    assert t["top_zones"] in second and "#1 " in second
    assert t["ranking"] in third
    for name, volume in zip(r.children["name"].to_list(), r.children["volume"].to_list(), strict=True):
        assert name in third and f"{volume:,}" in third
    # the map image on page 1 is a heatmap, not a blank page
    subprocess.run(["pdfimages", "-f", "1", "-l", "1", str(path), str(tmp_path / "img")], check=True)
    images = sorted(tmp_path.glob("img-*.ppm"))
    assert images, "no image on page 1"
    px = _ppm(images[0].read_bytes())
    assert px.shape[0] > 500 and px.shape[1] > 800
    not_background = (np.abs(px.astype(int) - px[5, 5].astype(int)).sum(axis=2) > 30).mean()
    colours = len(np.unique(px.reshape(-1, 3)[::7], axis=0))
    assert not_background > 0.02 and colours > 20
