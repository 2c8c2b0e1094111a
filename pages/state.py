"""The view state (node, date, hour, metric, layers, language, basemap, zone) and its
URL query string, so a view can be shared, bookmarked and reloaded. Pure functions."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode

from layers.hexes import METRICS
from layers.registry import BY_KEY, default_keys

LANGUAGES = ("zh", "en")
BASEMAPS = ("none", "osm", "amap")
KEYS = ("node", "date", "hour", "metric", "layers", "lang", "basemap", "zone")


def default(node: str = "hq", day: str | None = None, hour: int = 10) -> dict:
    return {
        "node": node,
        "date": day,
        "hour": hour,
        "metric": "scans",
        "layers": default_keys(),
        "lang": "zh",
        "basemap": "none",
        "zone": None,
    }


def parse(search: str | None, base: dict, valid_nodes, dates) -> dict:
    """State from a query string (``?node=r-440300&hour=9``); invalid parts fall back to ``base``.

    Examples
    --------
    >>> parse("?node=x&hour=25&metric=pickups", default(day="2026-01-02"), {"hq"}, ["2026-01-02"])["metric"]
    'pickups'
    """
    q = {k: v[-1] for k, v in parse_qs((search or "").lstrip("?")).items()}
    s = dict(base)
    if q.get("node") in valid_nodes:
        s["node"] = q["node"]
    if q.get("date") in dates:
        s["date"] = q["date"]
    if q.get("hour", "").isdigit() and 0 <= int(q["hour"]) <= 23:
        s["hour"] = int(q["hour"])
    if q.get("metric") in METRICS:
        s["metric"] = q["metric"]
    if "layers" in q:
        s["layers"] = [k for k in q["layers"].split(",") if k in BY_KEY]
    if q.get("lang") in LANGUAGES:
        s["lang"] = q["lang"]
    if q.get("basemap") in BASEMAPS:
        s["basemap"] = q["basemap"]
    s["zone"] = int(q["zone"]) if q.get("zone", "").isdigit() else None
    return s


def encode(state: dict) -> str:
    """Query string of a state (``?node=...&date=...``)."""
    q = {k: state[k] for k in KEYS if state.get(k) is not None and k != "layers"}
    q["layers"] = ",".join(state.get("layers") or [])
    return "?" + urlencode({k: q[k] for k in KEYS if k in q})
