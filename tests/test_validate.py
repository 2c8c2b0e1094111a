from datetime import datetime

import numpy as np
import polars as pl
import pytest

from data.ingest.validate import check_couriers, check_events, check_outlets, check_pings, local_to_utc


def _ts(values, tz="Asia/Shanghai"):
    good, bad = check_pings(
        pl.DataFrame(
            {
                "device_id": ["d"] * len(values),
                "ts": values,
                "lat": [22.5] * len(values),
                "lng": [114.0] * len(values),
            }
        ),
        tz,
    )
    return good, bad


@pytest.mark.parametrize(
    "raw,want",
    [
        ("2026-11-20T08:00:00Z", datetime(2026, 11, 20, 8)),
        ("2026-11-20T16:00:00+08:00", datetime(2026, 11, 20, 8)),
        ("2026-11-20T16:00:00.250+08:00", datetime(2026, 11, 20, 8, 0, 0, 250000)),
        ("2026-11-20 16:00:00", datetime(2026, 11, 20, 8)),  # naive = network local time
        ("2026-11-20T16:00", datetime(2026, 11, 20, 8)),
        ("1763625600", datetime(2025, 11, 20, 8)),  # Unix seconds
        ("1763625600000", datetime(2025, 11, 20, 8)),  # Unix milliseconds
    ],
)
def test_timestamp_forms(raw, want):
    good, bad = _ts([raw])
    assert bad.is_empty(), bad
    assert good["ts"][0] == want


def test_naive_times_follow_the_configured_zone():
    good, _ = _ts(["2026-11-20 16:00:00"], tz="UTC")
    assert good["ts"][0] == datetime(2026, 11, 20, 16)


def test_datetime_columns_with_and_without_zone():
    aware = pl.Series([datetime(2026, 11, 20, 16)]).dt.replace_time_zone("Asia/Shanghai")
    frame = pl.DataFrame(
        {"device_id": ["d", "d"], "ts": pl.concat([aware, aware]), "lat": [1.0, 2.0], "lng": [3.0, 4.0]}
    )
    good, _ = check_pings(frame)
    assert good["ts"].to_list() == [datetime(2026, 11, 20, 8)] * 2
    good, _ = check_pings(frame.with_columns(pl.col("ts").dt.replace_time_zone(None)))
    assert good["ts"][0] == datetime(2026, 11, 20, 8)


def test_each_bad_row_gets_its_own_reason_and_good_rows_are_kept():
    frame = pl.DataFrame(
        {
            "deviceid": ["a", "", "c", "d", "e", "f", "g", "h"],
            "timestamp": [
                "2026-11-20T08:00:00Z",
                "2026-11-20T08:00:00Z",
                "yesterday",
                "2026-11-20T08:00:00Z",
                "2026-11-20T08:00:00Z",
                "2026-11-20T08:00:00Z",
                "2026-11-20T08:00:00Z",
                None,
            ],
            "lat": ["22.5", "22.5", "22.5", "95", "22.5", "0", "north", "22.5"],
            "lon": ["114", "114", "114", "114", "114", "0", "114", "114"],
            "speed": ["1", "1", "1", "1", "-3", "1", "1", "1"],
        }
    )
    good, bad = check_pings(frame)
    assert good["device_id"].to_list() == ["a"]
    reasons = dict(zip(bad["_row"].to_list(), bad["reason"].to_list()))
    assert reasons == {
        2: "device_id is required",
        3: "ts could not be read as a timestamp",
        4: "lat out of range [-90, 90]",
        5: "speed is negative",
        6: "position 0,0 (no GPS fix)",
        7: "lat could not be read as a number",
        8: "ts is required",
    }
    assert '"lat":"north"' in bad.filter(pl.col("_row") == 7)["raw"][0]


def test_missing_required_column_is_named():
    good, bad = check_pings(pl.DataFrame({"device_id": ["a"], "lat": [1.0], "lng": [2.0]}))
    assert good.is_empty() and bad["reason"][0] == "missing column 'ts'"


def test_events_kinds_and_derived_ids():
    frame = pl.DataFrame(
        {
            "parcel_id": ["p1", "p2"],
            "kind": ["delivered", "lost"],
            "ts": ["2026-11-20T08:00:00Z"] * 2,
            "lat": [22.5, 22.5],
            "lng": [114.0, 114.0],
            "promised_at": ["2026-11-20T09:00:00Z", None],
        }
    )
    good, bad = check_events(frame)
    assert good["event_id"][0] == "p1:delivered:20261120T080000.000000"
    assert good["promised_at"][0] == datetime(2026, 11, 20, 9)
    assert bad["reason"][0].startswith("kind must be one of pickup_request")


def test_outlets_and_couriers_rules():
    good, bad = check_outlets(
        pl.DataFrame(
            {
                "outlet_id": ["o1", "o2"],
                "lat": [22.5, 22.5],
                "lng": [114.0, 114.0],
                "capacity_couriers": ["10", "-1"],
            }
        )
    )
    assert good["kind"].to_list() == ["outlet"] and bad["reason"][0] == "capacity_couriers is negative"
    good, bad = check_couriers(
        pl.DataFrame({"courier_id": ["c1", "c2"], "outlet_id": ["o1", "o1"], "mode": ["walk", "rocket"]})
    )
    assert good["device_id"].to_list() == ["c1"]
    assert bad["reason"][0] == "mode must be one of walk, ebike"


@pytest.mark.parametrize(
    "zone",
    [
        "Asia/Shanghai",  # DST 1986-1991
        "America/New_York",  # DST both ways
        "Australia/Lord_Howe",  # half-hour DST
        "Asia/Kathmandu",  # +05:45, and +05:30 before 1986
        "Europe/Dublin",  # negative DST in the tz database
        "UTC",
    ],
)
def test_local_times_convert_as_one_lookup_per_value_would(zone):
    # Random times over 1985-2027, and every minute (at :00 and :59.999999) within two
    # hours of each of this zone's offset changes: the quarter-hour table must give what
    # a lookup per value gives, gaps (null) and repeated hours included.
    exact = (
        pl.col("ts")
        .dt.replace_time_zone(zone, ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
        .dt.replace_time_zone(None)
    )
    hours = pl.datetime_range(datetime(1985, 1, 1), datetime(2027, 1, 1), "1h", eager=True).to_frame("ts")
    offsets = hours.select(pl.col("ts"), (exact - pl.col("ts")).alias("off"))
    changes = offsets.filter(pl.col("off").fill_null(pl.duration(days=1)).diff() != pl.duration())["ts"]
    around = (changes.dt.epoch("us").to_numpy()[:, None] + np.arange(-120, 121)[None, :] * 60_000_000).ravel()
    rng = np.random.default_rng(3)
    spread = rng.integers(
        int(datetime(1985, 1, 1).timestamp() * 1e6), int(datetime(2027, 1, 1).timestamp() * 1e6), 20_000
    )
    raw = np.concatenate([spread, around, around + 59_999_999])
    ts = pl.from_epoch(pl.Series(raw), time_unit="us").append(pl.Series([None], dtype=pl.Datetime("us")))
    want = ts.to_frame("ts").select(exact)["ts"]
    got = local_to_utc(ts, zone)
    assert got.dtype == pl.Datetime("us")
    assert got.to_list() == want.to_list()
    if zone != "UTC":
        assert len(changes) > 0 and want.null_count() > 1  # the gaps were really there


def test_implausible_times_speeds_and_accuracies_are_refused_with_their_reasons():
    from datetime import timedelta

    from data.ingest.validate import Limits

    now = datetime(2026, 12, 1)
    frame = pl.DataFrame(
        {
            "device_id": ["a"] * 6,
            "ts": [
                "2026-11-30 08:00:00",
                "1999-12-31T23:00:00Z",
                "2026-12-02T01:00:00Z",
                "2026-11-30 08:00:00",
                "2026-11-30 08:00:00",
                "2026-11-30 08:00:00",
            ],
            "lat": ["22.5"] * 6,
            "lng": ["114.0"] * 6,
            "speed": ["3", "3", "3", "1e308", "301", "3"],
            "accuracy": ["5", "5", "5", "5", "5", "2e5"],
        }
    )
    good, bad = check_pings(frame, limits=Limits(now=now, max_ahead=timedelta(hours=24)))
    assert good["_row"].to_list() == [1]
    assert bad["reason"].to_list() == [
        "implausible time: ts before 2000-01-01",
        "implausible time: ts more than 24 h after the server's clock",
        "speed is not a finite number",
        "speed above 300 m/s (implausible)",
        "accuracy above 100000 m (implausible)",
    ]


def test_two_columns_naming_one_field_must_agree():
    frame = pl.DataFrame(
        {
            "device_id": ["a", "b", "c"],
            "id": ["a", "x", None],
            "ts": ["2026-11-20 08:00:00"] * 3,
            "lat": [22.5] * 3,
            "lng": [114.0] * 3,
        }
    )
    good, bad = check_pings(frame)
    assert good["device_id"].to_list() == ["a", "c"] and "id" not in good.columns
    assert bad["reason"].to_list() == ["conflicting values for 'device_id' (two columns name it)"]


def test_a_list_where_one_value_belongs_is_unreadable_row_by_row():
    frame = pl.DataFrame(
        {
            "device_id": ["a", "b"],
            "ts": ["2026-11-20 08:00:00"] * 2,
            "lat": [22.5] * 2,
            "lng": [114.0] * 2,
            "speed": [[1.0], None],
        }
    )
    good, bad = check_pings(frame)
    assert good["device_id"].to_list() == ["b"]
    assert bad["reason"].to_list() == ["speed could not be read as a number"]
