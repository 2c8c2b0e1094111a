"""One reading of an incoming record: field names, aliases and values, decided once.

Every JSON record that reaches the ingest API or the phone protocol is read here, and
only here, before anything else looks at it: the token checks, the validator and the
store all see the same canonical record, so no two of them can disagree about which
field is the device or the position.

The rules, in order:

* **Names**: a field name is stripped of surrounding white space and lower-cased
  (``"Lat "`` is ``lat``), then mapped through :data:`data.ingest.validate.ALIASES`
  (``id``/``deviceid``/``device`` -> ``device_id``, ``latitude`` -> ``lat``,
  ``lon``/``longitude``/``long`` -> ``lng``, ``timestamp``/``time`` -> ``ts``, ...).
* **Conflicts**: two fields naming one canonical field (``id`` and ``device_id``,
  ``lat`` and ``lat ``) must hold the same value, or the record is refused with a
  reason naming both. There is no "first one wins".
* **Values** of known fields must be one JSON scalar (text, number, true/false, null)
  of at most :data:`MAX_TEXT` characters; a list or an object is refused for that
  record alone. Values are handed on as text, read by the validator exactly as a CSV
  cell is.
* **Unknown fields** (``altitude``, ``battery``, anything else) are ignored: not
  checked, not stored, kept only in the raw copy quarantined with a refused record.

Examples
--------
>>> canonical("pings", {"ID": "d-1", "Lat ": 22.5, "lon": 114, "extra": [1]})
({'device_id': 'd-1', 'lat': '22.5', 'lng': '114'}, None)
>>> canonical("pings", {"id": "d-1", "device_id": "d-2"})[1]
"conflicting values for 'device_id': 'id' is 'd-1', 'device_id' is 'd-2'"
"""

from __future__ import annotations

import functools

import orjson

from data.ingest.validate import ALIASES, EVENT_COLUMNS, PING_COLUMNS

#: Canonical fields of each kind of record.
FIELDS = {"pings": frozenset(PING_COLUMNS), "parcel_events": frozenset(EVENT_COLUMNS)}
_ORDER = {"pings": tuple(PING_COLUMNS), "parcel_events": tuple(EVENT_COLUMNS)}
#: Longest text of a known field (ids, times, numbers): anything longer is not a value.
MAX_TEXT = 256


# Field names repeat from record to record: each is worked out once (bounded, since the
# names come from clients).
@functools.lru_cache(maxsize=4096)
def _field_name(kind: str, key: str) -> str | None:
    low = key.strip().lower()
    low = ALIASES.get(low, low)
    return low if low in FIELDS[kind] else None


def field_name(kind: str, key) -> str | None:
    """The canonical field a received name stands for, or ``None`` for an unknown field.

    Examples
    --------
    >>> field_name("pings", " Longitude"), field_name("pings", "altitude")
    ('lng', None)
    """
    return _field_name(kind, key) if isinstance(key, str) else None


def as_text(value) -> str | None:
    """A scalar as the validator reads it (text, as in a CSV cell).

    Raises
    ------
    TypeError
        For a list or an object (not one value).
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    raise TypeError(type(value).__name__)


def _word(value) -> str:
    return {"list": "a list", "dict": "an object"}.get(type(value).__name__, type(value).__name__)


def canonical(kind: str, record, default_device: str | None = None) -> tuple[dict | None, str | None]:
    """The canonical fields of one record, or the reason it cannot be read.

    Parameters
    ----------
    kind : str
        ``pings`` or ``parcel_events``.
    record : object
        One record as parsed from JSON.
    default_device : str, optional
        The device a device token speaks for: used when a ping names no device.

    Returns
    -------
    (dict, None) or (None, str)
        Canonical name -> value as text (only fields that were present), or the reason
        the record is refused.
    """
    if not isinstance(record, dict):
        return None, "record is not a JSON object"
    row: dict[str, str | None] = {}
    seen: dict[str, object] = {}
    for key, value in record.items():
        name = _field_name(kind, key) if type(key) is str else None
        if name is None:
            continue
        if value is None or type(value) is str:  # the common case, without a call
            text = value
        else:
            try:
                text = as_text(value)
            except TypeError:
                return None, f"'{key}' must be one value, not {_word(value)}"
        if text is not None and len(text) > MAX_TEXT:
            return None, f"'{key}' is longer than {MAX_TEXT} characters"
        if name in row:
            before = row[name]
            if _differ(before, text):
                return None, (
                    f"conflicting values for '{name}': '{seen[name]}' is {_show(before)}, "
                    f"'{key}' is {_show(text)}"
                )
            if before is None or not before.strip():
                row[name] = text
            continue
        row[name] = text
        seen[name] = key
    if default_device is not None and kind == "pings":
        device = row.get("device_id")
        if device is None or not device.strip():
            row["device_id"] = default_device
    return row, None


def _differ(a: str | None, b: str | None) -> bool:
    """Two values of one field disagree (blank and missing agree with anything)."""
    a = a.strip() if a is not None else ""
    b = b.strip() if b is not None else ""
    return bool(a) and bool(b) and a != b


def _show(text: str | None) -> str:
    return "null" if text is None else repr(text[:40])


def columns(kind: str, rows: list[dict]) -> dict[str, list]:
    """Column lists (values as text, ``None`` where missing) of canonical rows.

    Examples
    --------
    >>> columns("pings", [{"lat": "1"}, {"lng": "2"}])
    {'lat': ['1', None], 'lng': [None, '2']}
    """
    if len(rows) == 1:  # a phone's fix: most commits of the phone port hold few records
        row = rows[0]
        return {n: [row[n]] for n in _ORDER[kind] if n in row}
    present = set()
    for row in rows:
        present.update(row)
    return {n: [row.get(n) for row in rows] for n in _ORDER[kind] if n in present}


def raw_json(record, limit: int = 4096) -> str:
    """The record as received, as JSON text of at most about ``limit`` bytes, for
    quarantine. Never raises: values too deep to encode are cut, long text is cut.

    Examples
    --------
    >>> raw_json({"speed": [[[[1]]]]}, limit=4096)
    '{"speed":[[[[1]]]]}'
    >>> len(raw_json({"note": "x" * 10_000}, limit=100)) < 200
    True
    """
    try:
        text = orjson.dumps(record, default=str).decode()
    except (orjson.JSONEncodeError, TypeError, ValueError):
        text = orjson.dumps(_shallow(record, 8), default=str).decode()
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text)} characters, cut)"
    return text


def _shallow(value, depth: int):
    """``value`` with containers below ``depth`` levels replaced by a marker."""
    if isinstance(value, dict):
        if depth <= 0:
            return "{...}"
        return {str(k): _shallow(v, depth - 1) for k, v in list(value.items())[:100]}
    if isinstance(value, list):
        if depth <= 0:
            return "[...]"
        return [_shallow(v, depth - 1) for v in value[:100]]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1 << 63:
        return str(value)
    return value
