"""Every layer of the registry fed names and ids with markup: its plotly traces show them
escaped (hover templates, hover text, the custom data they show) while the ids a click
hands on stay as they are, and its folium layer, drawn in Chromium without any
Content-Security-Policy to help, runs nothing, loads nothing and shows the names as text."""

from __future__ import annotations

import html
import re
from datetime import datetime

import h3
import polars as pl
import pytest
import shapely

from layers import registry
from layers.base import DrawContext
from tests.security.names_support import *  # noqa: F403 (the fixtures)
from tests.security.names_support import ICON_TEXTS, SHOW_TOOLTIPS, drawn, hostile_names, open_watched

pytestmark = pytest.mark.browser

CENTRE = h3.latlng_to_cell(22.54, 114.05, 9)
RING = list(h3.grid_ring(CENTRE, 1))


@pytest.fixture(scope="module")
def names(recorder, probe_file):
    return hostile_names(recorder, probe_file)


def frames(names: list[str]) -> dict:
    """A frame per layer whose names and ids are ``names`` (one row each)."""
    n = len(names)
    lat = [22.50 + 0.01 * i for i in range(n)]
    lng = [114.0 + 0.01 * i for i in range(n)]
    cells = [CENTRE, *RING, *h3.grid_ring(CENTRE, 2)][:n]
    return {
        "hexes": pl.DataFrame(
            {
                "cell": pl.Series([h3.str_to_int(c) for c in cells], dtype=pl.UInt64),
                "value": [float(i) for i in range(n)],
                "load_ratio": [0.1 * i for i in range(n)],
                "node": names,
            }
        ),
        "outlines": pl.DataFrame(
            {"node_id": [f"b-{i}" for i in range(n)], "name": names, "label_lat": lat, "label_lng": lng}
        ).with_columns(
            pl.Series(
                "geometry",
                [
                    shapely.box(x - 0.004, y - 0.004, x + 0.004, y + 0.004)
                    for x, y in zip(lng, lat, strict=True)
                ],
                dtype=pl.Object,
            )
        ),
        "zones": pl.DataFrame(
            {
                "zone_id": [1],
                "cells": [[h3.str_to_int(CENTRE)]],
                "n_cells": [1],
                "workload": [40.0],
                "peak_ratio": [2.0],
            }
        ),
        "outlets": pl.DataFrame(
            {
                "outlet_id": names,
                "name": names,
                "lat": lat,
                "lng": lng,
                "capacity_couriers": [4] * n,
                "load": [0.5] * n,
            }
        ),
        "couriers": pl.DataFrame(
            {
                "courier_id": names,
                "lat": lat,
                "lng": lng,
                "state": ["moving"] * n,
                "ts": [datetime(2026, 11, 20, 2, 30)] * n,
            }
        ),
        "vehicles": pl.DataFrame(
            {"vehicle_id": names, "lat": lat, "lng": lng, "heading": [90.0] * n, "state": ["moving"] * n}
        ),
        "dispatch_arrows": pl.DataFrame(
            {
                "zone_id": [1] * n,
                "couriers": [2] * n,
                "src_lat": lat,
                "src_lng": lng,
                "dst_lat": [22.54] * n,
                "dst_lng": [114.05] * n,
                "source_kind": ["outlet"] * n,
                "source_outlet": names,
            }
        ),
    }


def test_every_layer_is_fed_names():
    assert set(frames(["x"])) == set(registry.BY_KEY)


def _shown(trace: dict) -> list[str]:
    """Every text of a trace that plotly reads as HTML: the hover template, hover text
    and the custom data fields the template shows."""
    template = trace.get("hovertemplate") or ""
    used = {int(i) for i in re.findall(r"%\{customdata\[(\d+)\]\}", template)}
    out = [template]
    for row in trace.get("customdata") or []:
        out += [str(row[i]) for i in used if i < len(row)]
    hover = trace.get("hovertext") or []
    out += [hover] if isinstance(hover, str) else list(hover)
    return out


@pytest.mark.parametrize("key", sorted(registry.BY_KEY))
def test_plotly_hover_shows_names_escaped(key, names):
    frame = frames(names)[key]
    traces = registry.get(key).build(frame, DrawContext())
    shown = [s for t in traces for s in _shown(t)]
    for text in shown:
        # plotly's own line breaks and <extra> are the only tags left
        assert "<" not in re.sub(r"<br>|</?extra>", "", text), text
    if key != "zones":  # zones show no names
        joined = "\n".join(html.unescape(s) for s in shown)
        assert all(n in joined for n in names), key
    for t in traces:
        ids = [row[0] for row in t.get("customdata") or []]
        if key in ("outlets", "couriers", "vehicles") and ids:
            assert ids == names  # the id a click hands on is the id


def test_escape_helpers_give_text_back_in_their_context():
    from layers import escape

    name = "a<b>&\"'`${x}\\"
    assert html.unescape(escape.html(name)) == name
    assert html.unescape(escape.plotly(name)) == name
    assert html.unescape(escape.tooltip(name)) == name
    assert not set("<>`$\\") & set(escape.tooltip(name))
    assert "<" not in escape.script_json({"k": "</script><!--"})


def _folium_page(names: list[str]) -> str:
    """A folium map holding every layer's folium builder, Leaflet inlined, no CSP."""
    import folium
    from branca.element import Element

    from reports.html import leaflet_assets

    m = folium.Map(location=[22.54, 114.05], zoom_start=12, tiles=None)
    m.default_js = []
    m.default_css = []
    js, css = leaflet_assets()
    root = m.get_root()
    root.header.add_child(Element(f"<style>{css}</style>"), name="leaflet_css")
    root.header.add_child(Element(f"<script>{js}</script>"), name="leaflet_js")
    for key, frame in frames(names).items():
        registry.get(key).build_folium(frame, DrawContext()).add_to(m)
    return root.render()


def test_folium_layers_run_nothing_and_show_names_as_text(browser, names, recorder, tmp_path):
    path = tmp_path / "layers.html"
    path.write_text(_folium_page(names), encoding="utf-8")
    before = len(recorder.hits)
    context, page, seen = open_watched(browser, path.as_uri())
    try:
        map_drawn = drawn(page, "path.leaflet-interactive")
        tips = page.evaluate(SHOW_TOOLTIPS)
        icons = page.evaluate(ICON_TEXTS)
        page.wait_for_timeout(300)
        assert seen.dialogs == []
        assert seen.requests == [] and recorder.hits[before:] == []
        assert seen.errors == [] and seen.console == []
        assert page.locator("iframe, object, embed, script:not(:empty) ~ img").count() == 0
        assert map_drawn
        text = "\n".join(tips)
        for name in names:
            # outlets, couriers, vehicles, dispatch sources and outline tooltips
            assert text.count(name) >= 5, name
            assert name in icons  # the territory's label
    finally:
        context.close()
