"""The contract every map layer honours.

A layer is data plus two pure builders:

* ``required``: the columns its frame must have (checked with a clear error);
* ``style``: field, colour scale, range and null colour, as data;
* ``traces(frame, ctx) -> list[dict]``: plotly (MapLibre) traces as plain dicts, so
  they serialise with orjson instead of ``fig.to_json``;
* ``folium(frame, ctx) -> folium.FeatureGroup``: the same layer for HTML exports.

Layers never touch the store: callers hand them frames.

Examples
--------
>>> import polars as pl
>>> from geo.cells import latlng_to_cells
>>> from layers import registry
>>> frame = pl.DataFrame({"cell": latlng_to_cells([22.5431], [114.0579]), "value": [12],
...                       "load_ratio": [1.2], "node": ["Futian"]})
>>> [trace["uid"] for trace in registry.get("hexes").build(frame)]
['hexes']
>>> registry.get("hexes").build(frame.drop("node"))
Traceback (most recent call last):
...
ValueError: layer 'hexes' needs columns ['node']; got ['cell', 'value', 'load_ratio']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np

from geo.coords import wgs84_to_gcj02


@dataclass(frozen=True)
class Style:
    """How a layer colours its features.

    ``colorscale`` is a tuple of (stop, colour); ``range`` None means "from the data"
    (0 .. 95th percentile); ``categories`` maps a categorical field's values to colours.
    """

    field: str | None = None
    colorscale: tuple = ()
    range: tuple[float, float] | None = None
    null_colour: str = "#cccccc"
    categories: dict = dc_field(default_factory=dict)
    opacity: float = 0.7


@dataclass(frozen=True)
class DrawContext:
    """What a builder may know beyond its frame.

    ``gcj02``: shift every coordinate to GCJ-02 (Chinese tile providers).
    ``text``: translated strings (hover labels, legend titles) keyed by name.
    ``metric``: the hex layer's metric; ``selected``: a highlighted feature id.

    Examples
    --------
    >>> DrawContext(text={"outlet": "网点"}).t("outlet"), DrawContext().t("outlet")
    ('网点', 'outlet')
    """

    gcj02: bool = False
    text: dict = dc_field(default_factory=dict)
    metric: str = "scans"
    selected: int | str | None = None

    def t(self, key: str) -> str:
        return self.text.get(key, key)

    def shift(self, lat, lng):
        lat = np.asarray(lat, dtype=np.float64)
        lng = np.asarray(lng, dtype=np.float64)
        return wgs84_to_gcj02(lat, lng) if self.gcj02 else (lat, lng)


@dataclass(frozen=True)
class Layer:
    """One map layer of the registry."""

    key: str
    required: tuple[str, ...]
    style: Style
    traces: Callable
    folium: Callable
    #: The name of each trace ``traces`` returns, in that order, with its depth on the
    #: map (higher draws on top). A layer's traces may sit at different depths (the
    #: territory fills under the hexes, their outlines over them); the registry derives
    #: the figure's trace order from these, so Patch updates find a trace by position.
    trace_depths: tuple[tuple[str, int], ...] = ()
    default_on: bool = True

    @property
    def trace_names(self) -> tuple[str, ...]:
        return tuple(name for name, _depth in self.trace_depths)

    def check(self, frame) -> None:
        """Raise ``ValueError`` naming the missing columns."""
        missing = [c for c in self.required if c not in frame.columns]
        if missing:
            raise ValueError(f"layer {self.key!r} needs columns {missing}; got {list(frame.columns)}")

    def build(self, frame, ctx: DrawContext | None = None) -> list[dict]:
        """Check the frame and build the plotly traces."""
        self.check(frame)
        return self.traces(frame, ctx or DrawContext())

    def build_folium(self, frame, ctx: DrawContext | None = None):
        """Check the frame and build the folium layer."""
        self.check(frame)
        return self.folium(frame, ctx or DrawContext())


def colour_at(colorscale: tuple, t: float) -> str:
    """Colour of a scale at ``t`` in [0, 1] (nearest stop at or below; for exports).

    Examples
    --------
    >>> scale = ((0.0, "#1a9850"), (0.5, "#ffffbf"), (1.0, "#d73027"))
    >>> colour_at(scale, 0.7), colour_at(scale, 2.0)
    ('#ffffbf', '#d73027')
    """
    t = min(max(float(t), 0.0), 1.0)
    out = colorscale[0][1]
    for stop, colour in colorscale:
        if t >= stop:
            out = colour
    return out


def value_range(values: np.ndarray, style: Style) -> tuple[float, float]:
    """Colour range: the style's, else 0 .. 95th percentile of the data (at least 1).

    Examples
    --------
    >>> lo, hi = value_range(np.array([1.0, 2.0, np.nan, 40.0]), Style())
    >>> lo, round(hi, 1)
    (0.0, 36.2)
    >>> value_range(np.array([]), Style(range=(0.0, 3.0)))
    (0.0, 3.0)
    """
    if style.range is not None:
        return style.range
    v = values[np.isfinite(values)] if values.size else values
    hi = float(np.percentile(v, 95)) if v.size else 1.0
    return 0.0, max(hi, 1.0)


def lines_from_rings(rings: list, ctx: DrawContext) -> tuple[list, list]:
    """Lat and lng lists of closed rings separated by None (one Scattermap trace).

    Examples
    --------
    >>> lines_from_rings([[(114.0, 22.5), (114.1, 22.5), (114.0, 22.6), (114.0, 22.5)]], DrawContext())
    ([22.5, 22.5, 22.6, 22.5, None], [114.0, 114.1, 114.0, 114.0, None])
    """
    lats: list = []
    lngs: list = []
    for ring in rings:
        arr = np.asarray(ring, dtype=np.float64)
        la, ln = ctx.shift(arr[:, 1], arr[:, 0])
        lats.extend(np.round(la, 5).tolist() + [None])
        lngs.extend(np.round(ln, 5).tolist() + [None])
    return lats, lngs
