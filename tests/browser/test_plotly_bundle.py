"""The page's plotly.js is the partial bundle of assets/ (tools/plotly_bundle), never the
full plotly.min.js, and it knows every trace type the dashboard draws."""

from __future__ import annotations

import pytest

from config import PROJECT_ROOT, Settings
from layers import registry
from layers.base import DrawContext
from tests.test_layers import SAMPLES
from views.model import Model

pytestmark = pytest.mark.browser

#: Trace types drawn outside the map layers: the hourly trend's bars.
CHART_TRACES = {"bar"}

DRAWN = """() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  return plots.map(gd => ({graph: gd.parentElement.id, types: gd.data.map(t => t.type || 'scatter')}));
}"""


def _layer_traces() -> set[str]:
    """Trace types the registered map layers build."""
    return {t["type"] for layer in registry.LAYERS for t in layer.build(SAMPLES[layer.key](), DrawContext())}


def test_one_bundle_of_the_plotly_js_version_plotly_py_ships():
    from plotly.offline import get_plotlyjs_version

    bundles = [p.name for p in (PROJECT_ROOT / "assets").glob("plotly-emap-*.js")]
    assert bundles == [f"plotly-emap-{get_plotlyjs_version()}.min.js"]


def test_page_loads_the_partial_bundle_with_every_trace_type_drawn(page, dashboard_url, small_store):
    day = Model(small_store, Settings.from_env()).dates()[-1]
    scripts: list[str] = []
    page.on("request", lambda r: scripts.append(r.url) if r.resource_type == "script" else None)
    every = ",".join(layer.key for layer in registry.LAYERS)
    page.goto(f"{dashboard_url}/?node=b-440304&date={day}&hour=10&layers={every}")
    page.wait_for_function(
        "(() => { const gd = document.querySelector('#map .js-plotly-plot');"
        " return gd && gd._fullLayout && gd._fullLayout.map &&"
        " gd.data.some(t => t.uid === 'hexes' && (t.locations || []).length > 0); })()"
    )
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2")

    assert any("/assets/plotly-emap-" in u for u in scripts), scripts
    assert not [u for u in scripts if "plotly.min.js" in u]

    registered = set(page.evaluate("() => Object.keys(Plotly.PlotSchema.get().traces)"))
    needed = _layer_traces() | CHART_TRACES
    assert needed <= registered, f"the bundle lacks {sorted(needed - registered)}"

    drawn = page.evaluate(DRAWN)
    types = {t for g in drawn for t in g["types"]}
    assert {"choroplethmap", "scattermap", "bar"} <= types, drawn
    assert types <= registered, f"drawn but not in the bundle: {sorted(types - registered)}"
    # the server's store is closed at the session's end: let this page's callbacks finish
    page.wait_for_load_state("networkidle")
