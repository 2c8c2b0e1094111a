"""Decoder of the OsmAnd protocol, as sent by the OsmAnd app and the Traccar Client apps.

Two forms reach the same endpoint:

* **query / form**: ``?id=123456&lat=22.54&lon=114.05&timestamp=1377177267&speed=0.0
  &bearing=0.0&altitude=0&accuracy=5&hdop=0.8&batt=87`` as query parameters (GET) or a
  form body (POST). ``deviceid`` may replace ``id``, ``location=lat,lon`` may replace
  ``lat``/``lon``, ``heading`` may replace ``bearing``. ``timestamp`` is Unix seconds,
  Unix milliseconds, ISO 8601 or ``YYYY-MM-DD HH:MM:SS``; without it the fix is stamped
  with the time it was received. ``speed`` is in knots unless configured otherwise.
* **JSON** (Traccar Client 9 and later): ``{"device_id": "...", "location": {"timestamp":
  "...", "coords": {"latitude", "longitude", "speed" (m/s), "heading", "accuracy",
  "altitude"}, "battery": {"level", "is_charging"}}}``; ``location`` may also be a list.

The decoder is pure: it maps a request's fields onto raw ping records (values as
received, names as in :data:`data.ingest.validate.PING_COLUMNS`) and leaves every value check
to :func:`data.ingest.validate.check_pings`, so phones obey the same rules as file import.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import orjson

from data.ingest.protocols.contract import ProtocolError

#: Source name of the records of this protocol.
NAME = "osmand"
#: Paths served on the main port.
PATHS = ("/osmand",)

#: Factor from each accepted speed unit to metres per second.
SPEED_UNITS = {"kn": 0.514444, "mps": 1.0, "kmh": 1 / 3.6, "mph": 0.44704}

# Fields of the query form we keep beside the ping columns (not stored in the pings
# table, kept in quarantine's raw record when a fix is rejected).
_EXTRA = ("altitude", "hdop", "batt", "charge", "valid")


class OsmAndError(ProtocolError):
    """The request is not an OsmAnd position (no device id, or an unreadable body)."""


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _scale_speed(value, factor: float):
    """Speed in m/s when it reads as a number; otherwise the raw value (the validator rejects it)."""
    if value is None or value == "":
        return None
    try:
        speed = float(value)
    except (TypeError, ValueError):
        return value
    if speed < 0:  # iOS reports -1 for "unknown"
        return None
    return round(speed * factor, 4)


def _unknown_as_null(value):
    """Phones report -1 for an unknown heading or accuracy."""
    try:
        return None if value is not None and float(value) < 0 else value
    except (TypeError, ValueError):
        return value


def _one_device(fields: Mapping, names: tuple[str, ...]) -> str | None:
    """The device id of a request, said once or the same way each time it is said.

    Raises
    ------
    OsmAndError
        When two of ``names`` name different devices (which one sent the fix?).
    """
    said = {}
    for name in names:
        value = fields.get(name)
        if isinstance(value, (dict, list)):
            raise OsmAndError(f"'{name}' must be one value")
        if value is not None and str(value).strip():
            said[name] = str(value).strip()
    if len(set(said.values())) > 1:
        raise OsmAndError("conflicting device ids: " + ", ".join(f"{k}={v!r}" for k, v in said.items()))
    return next(iter(said.values()), None)


def decode_query(params: Mapping[str, str], speed_unit: str = "kn", now: str | None = None) -> dict:
    """One ping from the query or form fields of an OsmAnd request.

    Parameters
    ----------
    params : mapping
        The request's fields (query parameters merged with form fields).
    speed_unit : str
        Unit of ``speed`` in this form: ``kn`` (Traccar's default), ``mps``, ``kmh``, ``mph``.
    now : str, optional
        Timestamp used when the request has none (ISO 8601; default: the current time).

    Returns
    -------
    dict
        A raw ping record: ``device_id, ts, lat, lng, speed, heading, accuracy`` plus the
        optional ``altitude, hdop, batt, charge, valid`` that were present.

    Raises
    ------
    OsmAndError
        When there is no ``id`` / ``deviceid``.

    Examples
    --------
    >>> decode_query({"id": "902064", "lat": "42.06", "lon": "-88.23",
    ...               "timestamp": "1442068686579", "speed": "0.0"})["lng"]
    '-88.23'
    """
    device = _one_device(params, ("id", "deviceid"))
    if device is None:
        raise OsmAndError("missing device id: send 'id' or 'deviceid'")
    record = {
        "device_id": device,
        "ts": params.get("timestamp") or now or _now_iso(),
        "lat": params.get("lat"),
        "lng": params.get("lon"),
        "speed": _scale_speed(params.get("speed"), SPEED_UNITS[speed_unit]),
        "heading": _unknown_as_null(params.get("bearing")),
        "accuracy": _unknown_as_null(params.get("accuracy")),
    }
    # Every other way of saying one field goes in under its own alias, so that the one
    # reading of records (data.ingest.records) finds a field said twice two ways and refuses it.
    location = params.get("location")
    if location:
        parts = str(location).split(",")
        if len(parts) >= 2:
            record["latitude"], record["longitude"] = parts[0].strip(), parts[1].strip()
    if "lng" in params:
        record["long"] = params["lng"]
    if "heading" in params:
        record["course"] = _unknown_as_null(params["heading"])
    for name in _EXTRA:
        if name in params:
            record[name] = params[name]
    return record


def decode_json(body, now: str | None = None) -> list[dict]:
    """Pings from the JSON form (one location, or a list of them).

    Parameters
    ----------
    body : dict
        The parsed JSON body.
    now : str, optional
        Timestamp used for a location without one.

    Returns
    -------
    list of dict
        Raw ping records as in :func:`decode_query` (speed converted from m/s, which is
        already the stored unit; battery ``level`` 0..1 kept as ``batt`` in percent).

    Raises
    ------
    OsmAndError
        When the body is not an object with ``device_id`` and ``location``.

    Examples
    --------
    >>> decode_json({"device_id": "48241179", "location": {"timestamp": "2000-01-01T00:00:00Z",
    ...     "coords": {"latitude": 22.5, "longitude": 114.0, "speed": 2}}})[0]["speed"]
    2.0
    """
    if not isinstance(body, dict):
        raise OsmAndError("the JSON body must be an object with 'device_id' and 'location'")
    device = _one_device(body, ("device_id", "id", "deviceid"))
    if device is None:
        raise OsmAndError("missing device id: send 'device_id'")
    locations = body.get("location")
    if locations is None:
        raise OsmAndError("missing 'location'")
    if isinstance(locations, dict):
        locations = [locations]
    if not isinstance(locations, list):
        raise OsmAndError("'location' must be an object or a list of objects")
    out = []
    for loc in locations:
        loc = loc if isinstance(loc, dict) else {}
        coords = loc.get("coords") if isinstance(loc.get("coords"), dict) else {}
        battery = loc.get("battery") if isinstance(loc.get("battery"), dict) else {}
        record = {
            "device_id": device,
            "ts": loc.get("timestamp") or now or _now_iso(),
            "lat": coords.get("latitude"),
            "lng": coords.get("longitude"),
            "speed": _scale_speed(coords.get("speed"), 1.0),
            "heading": _unknown_as_null(coords.get("heading")),
            "accuracy": _unknown_as_null(coords.get("accuracy")),
        }
        if coords.get("altitude") is not None:
            record["altitude"] = coords["altitude"]
        level = battery.get("level")
        if isinstance(level, (int, float)) and not isinstance(level, bool) and level >= 0:
            record["batt"] = round(level * 100, 1)
        if "is_charging" in battery:
            record["charge"] = battery["is_charging"]
        out.append(record)
    return out


def decode(
    method: str, args: Mapping[str, str], mimetype: str, body: bytes, speed_unit: str = "kn"
) -> list[dict]:
    """The raw ping records of one request (the protocol contract's ``decode``).

    A POST whose body is JSON (by type, or starting with ``{`` or ``[``) is the JSON form;
    anything else is the query form, with a form body's fields after the query's.

    Examples
    --------
    >>> [r["lat"] for r in decode("GET", {"id": "d1", "lat": "22.5", "lon": "114.0"}, "", b"")]
    ['22.5']
    >>> decode("POST", {}, "application/json", b"{oops")
    Traceback (most recent call last):
    ...
    data.ingest.protocols.osmand.OsmAndError: malformed JSON at line 1, column 2: unexpected character, expected a string key
    """
    if method == "POST" and (mimetype.endswith("json") or body.lstrip()[:1] in (b"{", b"[")):
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise OsmAndError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
        return [r for o in (obj if isinstance(obj, list) else [obj]) for r in decode_json(o)]
    params = dict(args)
    if body and method == "POST":
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    params.pop("token", None)
    return [decode_query(params, speed_unit)]
