"""The view state (node, date, hour, metric, layers, language, basemap, zone) and its
URL query string, so a view can be shared, bookmarked and reloaded. Pure functions."""

from __future__ import annotations

import math
import re
from datetime import date
from urllib.parse import parse_qs, urlencode

from layers.hexes import METRICS
from layers.registry import BY_KEY, default_keys

LANGUAGES = ("zh", "en")
BASEMAPS = ("none", "osm", "amap")
KEYS = ("node", "date", "hour", "metric", "layers", "lang", "basemap", "zone")


def default(node: str = "hq", day: str | None = None, hour: int = 10) -> dict:
    """The view a new visitor of ``node`` sees: every :data:`KEYS` set.

    Examples
    --------
    >>> default(day="2026-01-02")
    {'node': 'hq', 'date': '2026-01-02', 'hour': 10, 'metric': 'scans', 'layers': ['hexes', 'outlines', 'zones', 'outlets'], 'lang': 'zh', 'basemap': 'none', 'zone': None}
    """
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


class BadState(ValueError):
    """A view state (or one of its values) that no page of the dashboard sends."""


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _date(v):
    if v is None:
        return None
    if isinstance(v, str) and _DATE.fullmatch(v):
        try:
            date.fromisoformat(v)
            return v
        except ValueError:
            pass
    raise BadState("date must be YYYY-MM-DD")


def _integer(lo: int, hi: int, optional: bool = False):
    def check(v):
        if v is None and optional:
            return None
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise BadState(f"must be a whole number from {lo} to {hi}")
        return v

    return check


def _one_of(values):
    def check(v):
        if not isinstance(v, str) or v not in values:
            raise BadState(f"must be one of {', '.join(values)}")
        return v

    return check


def _layers(v):
    if not isinstance(v, list) or not all(isinstance(k, str) and k in BY_KEY for k in v):
        raise BadState(f"must be a list of {', '.join(BY_KEY)}")
    return list(dict.fromkeys(v))


def _node(v):
    if not isinstance(v, str) or not 0 < len(v) <= 64:
        raise BadState("must be a node id")
    return v


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _focus(v):
    if v is None:
        return None
    c = v.get("center") if isinstance(v, dict) else None
    if (
        isinstance(c, dict)
        and _number(c.get("lat"))
        and _number(c.get("lon"))
        and _number(v.get("zoom"))
        and -90 <= c["lat"] <= 90
        and -180 <= c["lon"] <= 180
        and 0 <= v["zoom"] <= 24
    ):
        return {"center": {"lat": c["lat"], "lon": c["lon"]}, "zoom": v["zoom"]}
    raise BadState("must be a map view {center: {lat, lon}, zoom}")


#: How each value of a view state is checked; values a page never sends are refused.
CHECKS = {
    "node": _node,
    "date": _date,
    "hour": _integer(0, 23),
    "metric": _one_of(METRICS),
    "layers": _layers,
    "lang": _one_of(LANGUAGES),
    "basemap": _one_of(BASEMAPS),
    "zone": _integer(0, 1_000_000, optional=True),
    "focus": _focus,
    "tick": _integer(0, 2**53, optional=True),
}
REQUIRED = ("node", "date", "hour", "metric", "layers", "lang", "basemap")


def checked(key: str, value):
    """``value`` if it is a valid ``key`` of a view state, else :class:`BadState`.

    Examples
    --------
    >>> checked("hour", 7)
    7
    >>> checked("lang", "fr")
    Traceback (most recent call last):
    ...
    views.state.BadState: lang must be one of zh, en
    """
    try:
        return CHECKS[key](value)
    except BadState as exc:
        raise BadState(f"{key} {exc}") from None


def clicks(value, what: str = "n_clicks") -> int:
    """A click or tick count sent by a client (0 for none); :class:`BadState` otherwise.

    Examples
    --------
    >>> clicks(None), clicks(3)
    (0, 3)
    """
    try:
        return _integer(0, 2**53, optional=True)(value) or 0
    except BadState as exc:
        raise BadState(f"{what} {exc}") from None


def check(state) -> dict:
    """A validated copy of a view state sent by a client; :class:`BadState` otherwise.

    Examples
    --------
    >>> check(default(day="2026-01-02"))["node"]
    'hq'
    >>> check({"node": "hq"})
    Traceback (most recent call last):
    ...
    views.state.BadState: view state lacks date, hour, metric, layers, lang, basemap
    """
    if not isinstance(state, dict):
        raise BadState("view state must be an object")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise BadState(f"view state lacks {', '.join(missing)}")
    return {k: checked(k, state.get(k)) for k in CHECKS}


def parse(search: str | None, base: dict, valid_nodes, dates) -> dict:
    """State from a query string (``?node=r-440300&hour=9``); invalid parts fall back to ``base``.

    Examples
    --------
    >>> parse("?node=x&hour=25&metric=pickups", default(day="2026-01-02"), {"hq"}, ["2026-01-02"])["metric"]
    'pickups'
    """
    q = {k: v[-1] for k, v in parse_qs(search.lstrip("?") if isinstance(search, str) else "").items()}
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
    """Query string of a state (``?node=...&date=...``).

    Examples
    --------
    >>> encode(default(day="2026-01-02", hour=9))
    '?node=hq&date=2026-01-02&hour=9&metric=scans&layers=hexes%2Coutlines%2Czones%2Coutlets&lang=zh&basemap=none'

    :func:`parse` reads it back:

    >>> s = {**default(day="2026-01-02"), "node": "r-440300", "metric": "load_ratio", "zone": 3}
    >>> parse(encode(s), default(day="2026-01-02"), {"hq", "r-440300"}, ["2026-01-02"]) == s
    True
    """
    q = {k: state[k] for k in KEYS if state.get(k) is not None and k != "layers"}
    q["layers"] = ",".join(state.get("layers") or [])
    return "?" + urlencode({k: q[k] for k in KEYS if k in q})
