"""The OsmAnd protocol decoder against requests as real phones send them.

The query strings are captured OsmAnd-app / Traccar Client requests (as published with
the protocol); the JSON body is the Traccar Client 9 format. Each decoded record then
goes through the same validator as file import.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl, urlsplit

import polars as pl
import pytest

from data.ingest.protocols import osmand
from data.ingest.records import canonical, columns
from data.ingest.validate import check_pings

TZ = "Asia/Shanghai"


def query(url: str) -> dict:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def validated(records: list[dict]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decoded records read as the ingest writer reads them (one canonical parse), then validated."""
    rows = []
    for r in records:
        row, why = canonical("pings", r)
        assert why is None, why
        rows.append(row)
    cols = columns("pings", rows)
    frame = pl.DataFrame(cols, schema={k: pl.String for k in cols}).with_row_index("_row", offset=1)
    return check_pings(frame, TZ)


# (request as captured, device, lat, lng, UTC time or None for "time received", speed m/s)
CAPTURED = [
    (
        "/?id=902064&lat=42.06288&lon=-88.23412&timestamp=2016-01-27T18%3A55%3A47Z&hdop=6.0&altitude=224.0&speed=0.0",
        "902064",
        42.06288,
        -88.23412,
        datetime(2016, 1, 27, 18, 55, 47),
        0.0,
    ),
    (
        "/?id=902064&lat=42.06288&lon=-88.23412&timestamp=1442068686579&hdop=6.0&altitude=224.0&speed=0.0",
        "902064",
        42.06288,
        -88.23412,
        datetime(2015, 9, 12, 14, 38, 6, 579000),
        0.0,
    ),
    # 'YYYY-MM-DD HH:MM:SS' is local time (Asia/Shanghai here, UTC+8)
    (
        "/?lat=49.60688&lon=6.15788&timestamp=2014-06-04+09%3A10%3A11&altitude=384.7&speed=0.0&id=353861053849681",
        "353861053849681",
        49.60688,
        6.15788,
        datetime(2014, 6, 4, 1, 10, 11),
        0.0,
    ),
    (
        "/?id=123456&timestamp=1377177267&lat=60.0&lon=30.0&speed=0.0&bearing=0.0&altitude=0&hdop=0.0",
        "123456",
        60.0,
        30.0,
        datetime(2013, 8, 22, 13, 14, 27),
        0.0,
    ),
    (
        "/?id=123456&timestamp=1377177267&lat=60.0&lon=30.0",
        "123456",
        60.0,
        30.0,
        datetime(2013, 8, 22, 13, 14, 27),
        None,
    ),
    (
        "/?lat=60.0&lon=30.0&speed=0.0&heading=0.0&vacc=0&hacc=0&altitude=0&deviceid=123456",
        "123456",
        60.0,
        30.0,
        None,
        0.0,
    ),
    (
        "/?id=861001000719969&lat=41.666667&lon=-0.883333&altitude=350.059479&speed=0.000000&batt=87",
        "861001000719969",
        41.666667,
        -0.883333,
        None,
        0.0,
    ),
    (
        "/?id=123456&timestamp=1377177267&location=60.0,30.0",
        "123456",
        60.0,
        30.0,
        datetime(2013, 8, 22, 13, 14, 27),
        None,
    ),
    (
        "/?id=123456789012345&timestamp=1504763810&lat=40.7232948571&lon=-74.0061408571&bearing=7.19889788244&speed=40&ignition=true&rpm=933&fuel=24",
        "123456789012345",
        40.7232948571,
        -74.0061408571,
        datetime(2017, 9, 7, 5, 56, 50),
        40 * 0.514444,
    ),
    # Traccar Client (Android) with accuracy and charge flag
    (
        "/?id=48241179&timestamp=1700000000&lat=22.5431&lon=114.0579&speed=10.5&bearing=90.0&altitude=12.0&accuracy=4.8&batt=76.0&charge=true",
        "48241179",
        22.5431,
        114.0579,
        datetime(2023, 11, 14, 22, 13, 20),
        10.5 * 0.514444,
    ),
]


@pytest.mark.parametrize("url, device, lat, lng, ts, speed", CAPTURED)
def test_query_form_decodes_and_validates(url, device, lat, lng, ts, speed):
    rec = osmand.decode_query(query(url), now="2026-01-01T00:00:00Z")
    good, bad = validated([rec])
    assert bad.is_empty(), bad["reason"].to_list()
    row = good.row(0, named=True)
    assert row["device_id"] == device
    assert row["lat"] == pytest.approx(lat) and row["lng"] == pytest.approx(lng)
    assert row["ts"] == (ts or datetime(2026, 1, 1))
    if speed is None:
        assert row["speed"] is None
    else:
        assert row["speed"] == pytest.approx(speed, rel=1e-4)


def test_query_form_keeps_heading_accuracy_and_extras():
    rec = osmand.decode_query(query(CAPTURED[-1][0]))
    assert rec["heading"] == "90.0" and rec["accuracy"] == "4.8"
    assert rec["batt"] == "76.0" and rec["altitude"] == "12.0" and rec["charge"] == "true"


def test_speed_unit_is_configurable():
    params = {"id": "a", "lat": "1", "lon": "2", "speed": "36"}
    assert osmand.decode_query(params, speed_unit="kmh")["speed"] == pytest.approx(10.0)
    assert osmand.decode_query(params, speed_unit="mps")["speed"] == pytest.approx(36.0)


def test_request_without_device_is_an_error():
    with pytest.raises(osmand.OsmAndError, match="device id"):
        osmand.decode_query(query("/?timestamp=1377177267&lat=60.0&lon=30.0"))


def test_unreadable_values_reach_the_validator():
    rec = osmand.decode_query(
        {"id": "x", "lat": "north", "lon": "30", "speed": "fast", "timestamp": "yesterday"}
    )
    good, bad = validated([rec])
    assert good.is_empty()
    assert bad["reason"][0] == "ts could not be read as a timestamp"


TRACCAR_CLIENT_JSON = {
    "location": {
        "timestamp": "2026-11-23T02:15:30.250Z",
        "coords": {
            "latitude": 22.5431,
            "longitude": 114.0579,
            "accuracy": 6.3,
            "speed": 4.2,
            "heading": 271.5,
            "altitude": 18.0,
        },
        "is_moving": True,
        "odometer": 1520.4,
        "event": "motionchange",
        "battery": {"level": 0.63, "is_charging": False},
        "activity": {"type": "in_vehicle"},
        "extras": {},
    },
    "device_id": "48241179",
}


def test_json_form_decodes_and_validates():
    recs = osmand.decode_json(TRACCAR_CLIENT_JSON)
    assert len(recs) == 1
    assert recs[0]["batt"] == 63.0 and recs[0]["charge"] is False and recs[0]["altitude"] == 18.0
    good, bad = validated(recs)
    assert bad.is_empty()
    row = good.row(0, named=True)
    assert row["device_id"] == "48241179"
    assert row["ts"] == datetime(2026, 11, 23, 2, 15, 30, 250000)
    assert (row["lat"], row["lng"]) == (pytest.approx(22.5431), pytest.approx(114.0579))
    assert row["speed"] == pytest.approx(4.2)  # already m/s in this form
    assert row["heading"] == pytest.approx(271.5) and row["accuracy"] == pytest.approx(6.3)


def test_json_form_with_a_list_of_locations_and_unknown_values():
    body = {
        "device_id": "d",
        "location": [
            {
                "timestamp": "2026-11-23T02:15:30Z",
                "coords": {"latitude": 22.5, "longitude": 114.0, "speed": -1, "heading": -1, "accuracy": 5},
            },
            {"timestamp": "2026-11-23T02:15:40Z", "coords": {"latitude": 22.6, "longitude": 114.1}},
        ],
    }
    recs = osmand.decode_json(body)
    assert [r["lat"] for r in recs] == [22.5, 22.6]
    assert recs[0]["speed"] is None and recs[0]["heading"] is None  # iOS "unknown"
    good, bad = validated(recs)
    assert len(good) == 2 and bad.is_empty()


@pytest.mark.parametrize(
    "body, message",
    [
        ([1, 2], "must be an object"),
        ({"location": {}}, "device id"),
        ({"device_id": "d"}, "location"),
        ({"device_id": "d", "location": "22,114"}, "object or a list"),
    ],
)
def test_json_form_errors(body, message):
    with pytest.raises(osmand.OsmAndError, match=message):
        osmand.decode_json(body)


@pytest.mark.parametrize(
    "params",
    [
        {"id": "dev-026", "deviceid": "dev-027", "lat": "22.5", "lon": "114"},
    ],
)
def test_conflicting_device_ids_are_an_error(params):
    with pytest.raises(osmand.OsmAndError, match="conflicting device ids"):
        osmand.decode_query(params)
    with pytest.raises(osmand.OsmAndError, match="conflicting device ids"):
        osmand.decode_json({"device_id": "dev-026", "id": "dev-027", "location": {}})


def test_a_position_said_two_ways_must_agree():
    rec = osmand.decode_query({"id": "d", "lat": "22.5", "lon": "114.0", "location": "23.13,113.26"})
    row, why = canonical("pings", rec)
    assert row is None and why.startswith("conflicting values for 'lat'")
    same = osmand.decode_query({"id": "d", "lat": "22.5", "lon": "114.0", "location": "22.5,114.0"})
    assert canonical("pings", same)[0]["lat"] == "22.5"
