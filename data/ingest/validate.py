"""Validation and normalisation of incoming records, shared by file import and HTTP ingest.

Each ``check_*`` function takes a polars frame of raw records (any column types) with a
``_row`` column (1-based row number in the source) and returns ``(good, bad)``:
``good`` has the normalised schema (WGS-84 degrees, naive UTC timestamps), ``bad`` has
``_row``, ``reason`` and ``raw`` (the record as JSON). The first failing rule of a row
is its reason. Nothing here touches the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from data.store.schema import EVENT_KINDS

# Names that real feeds use for our columns (OsmAnd, Traccar exports, ops systems).
ALIASES = {
    "deviceid": "device_id",
    "device": "device_id",
    "id": "device_id",
    "timestamp": "ts",
    "time": "ts",
    "fix_time": "ts",
    "fixtime": "ts",
    "latitude": "lat",
    "lon": "lng",
    "longitude": "lng",
    "long": "lng",
    "bearing": "heading",
    "course": "heading",
    "event_time": "ts",
    "scan_time": "ts",
    "type": "kind",
    "event_kind": "kind",
}

PING_COLUMNS = {
    "device_id": pl.String,
    "ts": pl.Datetime("us"),
    "lat": pl.Float64,
    "lng": pl.Float64,
    "speed": pl.Float32,
    "heading": pl.Float32,
    "accuracy": pl.Float32,
}
EVENT_COLUMNS = {
    "event_id": pl.String,
    "parcel_id": pl.String,
    "kind": pl.String,
    "ts": pl.Datetime("us"),
    "lat": pl.Float64,
    "lng": pl.Float64,
    "outlet_id": pl.String,
    "courier_id": pl.String,
    "promised_at": pl.Datetime("us"),
    "dest_branch_id": pl.String,
    "expected_at": pl.Datetime("us"),
}
OUTLET_COLUMNS = {
    "outlet_id": pl.String,
    "name": pl.String,
    "kind": pl.String,
    "lat": pl.Float64,
    "lng": pl.Float64,
    "capacity_couriers": pl.Int32,
    "capacity_parcels_per_hour": pl.Int32,
}
COURIER_COLUMNS = {
    "courier_id": pl.String,
    "name": pl.String,
    "outlet_id": pl.String,
    "mode": pl.String,
    "device_id": pl.String,
}
REQUIRED = {
    "pings": ("device_id", "ts", "lat", "lng"),
    "parcel_events": ("parcel_id", "kind", "ts", "lat", "lng"),
    "outlets": ("outlet_id", "lat", "lng", "capacity_couriers"),
    "couriers": ("courier_id", "outlet_id"),
}
COURIER_MODES = ("walk", "ebike")

_NAIVE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M")
_AWARE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%.f%z")


def normalise_names(frame: pl.DataFrame) -> pl.DataFrame:
    """Strip and lower-case column names and map known aliases onto ours.

    The first column naming a field takes its name; any other column naming the same
    field (``id`` beside ``device_id``, ``lat`` beside ``Lat``) is kept as
    ``__also_<field>_<n>`` and a row where the two disagree is refused (see
    :func:`_conflict_rules`), as :func:`data.ingest.records.canonical` refuses such a record.
    """
    rename = {}
    taken: dict[str, int] = {}
    for c in frame.columns:
        if c == "_row":
            continue
        low = c.strip().lower()
        target = ALIASES.get(low, low)
        n = taken.get(target, 0)
        taken[target] = n + 1
        rename[c] = target if n == 0 else f"{_ALSO}{target}_{n}"
    return frame.rename(rename)


_ALSO = "__also_"


def _text(name: str) -> pl.Expr:
    """A column as stripped text, blank as null."""
    t = pl.col(name).cast(pl.String).str.strip_chars()
    return pl.when(t == "").then(None).otherwise(t)


def _conflict_rules(frame: pl.DataFrame) -> list[tuple[pl.Expr, str]]:
    """Rows where a second column naming a field disagrees with the first."""
    rules = []
    for c in frame.columns:
        if not c.startswith(_ALSO):
            continue
        target = c[len(_ALSO) :].rsplit("_", 1)[0]
        if target not in frame.columns:
            continue
        rules.append(
            (
                _text(c).is_not_null() & _text(target).is_not_null() & (_text(c) != _text(target)),
                f"conflicting values for '{target}' (two columns name it)",
            )
        )
    return rules


@dataclass(frozen=True)
class Limits:
    """What a plausible record is: the window of times and the largest speed and accuracy.

    ``now`` is the server's clock when the check runs unless given.

    Examples
    --------
    >>> Limits().earliest
    datetime.datetime(2000, 1, 1, 0, 0)
    """

    earliest: datetime = datetime(2000, 1, 1)
    max_ahead: timedelta = timedelta(days=1)
    max_speed: float = 300.0
    max_accuracy: float = 100_000.0
    now: datetime | None = None

    @classmethod
    def from_settings(cls, settings) -> Limits:
        """The limits of ``ingest_earliest_ts``, ``ingest_max_ahead_hours``,
        ``ingest_max_speed_mps`` and ``ingest_max_accuracy_m``."""
        return cls(
            earliest=datetime.fromisoformat(settings.ingest_earliest_ts).replace(tzinfo=None),
            max_ahead=timedelta(hours=settings.ingest_max_ahead_hours),
            max_speed=settings.ingest_max_speed_mps,
            max_accuracy=settings.ingest_max_accuracy_m,
        )

    def latest(self) -> datetime:
        now = self.now or datetime.now(UTC).replace(tzinfo=None)
        return now + self.max_ahead

    def outside(self, col: str, ahead: timedelta | None = None) -> pl.Expr:
        """True where ``col`` is outside the window (what :meth:`time_rules` refuse)."""
        latest = self.latest() if ahead is None else self.latest() - self.max_ahead + ahead
        return ~pl.col(col).is_between(_instant(self.earliest), _instant(latest))

    def time_rules(self, col: str, ahead: timedelta | None = None) -> list[tuple[pl.Expr, str]]:
        """Rules refusing times in ``col`` outside the window (reason "implausible time")."""
        latest = self.latest() if ahead is None else self.latest() - self.max_ahead + ahead
        hours = (self.max_ahead if ahead is None else ahead).total_seconds() / 3600
        return [
            (
                pl.col(col) < _instant(self.earliest),
                f"implausible time: {col} before {self.earliest:%Y-%m-%d}",
            ),
            (
                pl.col(col) > _instant(latest),
                f"implausible time: {col} more than {hours:g} h after the server's clock",
            ),
        ]


_EPOCH = datetime(1970, 1, 1)


def _instant(when: datetime) -> pl.Expr:
    """A naive UTC time as a literal of microseconds (a ``datetime`` literal costs polars
    a query of its own to convert, and a group commit validates many small frames)."""
    return pl.lit((when - _EPOCH) // timedelta(microseconds=1), dtype=pl.Int64).cast(pl.Datetime("us"))


def _as_local(expr: pl.Expr, local_tz: str) -> pl.Expr:
    """Naive times read as ``local_tz``: a repeated hour takes its first meaning, a
    skipped one becomes null (then "could not be read")."""
    return expr.dt.replace_time_zone(local_tz, ambiguous="earliest", non_existent="null")


def timestamp_expr(column: str, dtype: pl.DataType, local_tz: str) -> pl.Expr:
    """Expression turning a column of any timestamp form into naive UTC microseconds.

    Accepts datetimes (naive = ``local_tz``), Unix seconds or milliseconds (numbers or
    digit strings; values over 1e11 are milliseconds), ISO 8601 with or without an
    offset or ``Z``, and ``YYYY-MM-DD HH:MM:SS``. Unparseable values become null.
    """
    col = pl.col(column)
    utc = pl.Datetime("us", "UTC")
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            expr = _as_local(col, local_tz)
        else:
            expr = col
        return expr.dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(pl.Datetime("us"))
    if isinstance(dtype, pl.Date):
        return (
            col.cast(pl.Datetime("us"))
            .dt.replace_time_zone(local_tz)
            .dt.convert_time_zone("UTC")
            .dt.replace_time_zone(None)
        )
    if dtype.is_numeric():
        num = col.cast(pl.Float64)
    else:
        num = col.cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    epoch_us = (
        pl.when(num.abs() > 1e11).then(num * 1_000).otherwise(num * 1_000_000).cast(pl.Int64, strict=False)
    )
    from_epoch = pl.from_epoch(epoch_us, time_unit="us").dt.replace_time_zone("UTC")
    if dtype.is_numeric():
        return from_epoch.dt.replace_time_zone(None)
    text = col.cast(pl.String).str.strip_chars().str.replace(r"[Zz]$", "+00:00")
    aware = [text.str.to_datetime(f, time_unit="us", strict=False, time_zone="UTC") for f in _AWARE_FORMATS]
    naive = [
        _as_local(text.str.to_datetime(f, time_unit="us", strict=False), local_tz).dt.convert_time_zone("UTC")
        for f in _NAIVE_FORMATS
    ]
    return pl.coalesce([*aware, *naive, from_epoch]).cast(utc).dt.replace_time_zone(None)


#: Width of the slices of local time converted to UTC as one (see :func:`local_to_utc`).
_SLICE_US = 15 * 60 * 1_000_000


def local_to_utc(ts: pl.Series, local_tz: str) -> pl.Series:
    """Naive local times in ``local_tz`` as naive UTC microseconds, as
    :func:`timestamp_expr` converts them, but converting each quarter hour of the range
    once.

    A time zone lookup per value is the dearest step of validating a clean file. Zone
    offsets change on quarter hours in practice, so each quarter hour's offset is looked
    up at its first and last microsecond and applied to every value inside; a quarter
    hour whose two ends disagree (a change inside it) or that does not exist, and any
    range too wide for a table of quarter hours, is converted value by value.
    """
    exact = _as_local(pl.col("ts"), local_tz).dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    us = ts.cast(pl.Datetime("us"))
    frame = us.to_frame("ts")
    if us.null_count() == len(us):
        return frame.select(exact)["ts"]
    slice_of = us.dt.epoch("us") // _SLICE_US
    first = slice_of.min()
    slices = slice_of.max() - first + 1
    if slices > 1_000_000:  # more than 28 years in one batch: not worth a table
        return frame.select(exact)["ts"]
    starts = pl.DataFrame({"ts": pl.int_range(first, first + slices, eager=True) * _SLICE_US}).select(
        pl.from_epoch("ts", time_unit="us")
    )
    ends = starts.select(pl.col("ts") + pl.duration(microseconds=_SLICE_US - 1))
    start_off = starts.select((exact - pl.col("ts")).dt.total_microseconds())["ts"]
    end_off = ends.select((exact - pl.col("ts")).dt.total_microseconds())["ts"]
    unknown = np.iinfo(np.int64).min
    table = np.where(
        (start_off == end_off).fill_null(False).to_numpy(), start_off.fill_null(0).to_numpy(), unknown
    )
    off = table[(slice_of - first).fill_null(0).to_numpy()]  # nulls stay null below
    odd = off == unknown
    off[odd] = 0
    out = frame.select(pl.col("ts") + pl.Series(off, dtype=pl.Int64).cast(pl.Duration("us")))["ts"]
    if odd.any():
        where = pl.Series(np.flatnonzero(odd))
        out = out.scatter(where, frame[where].select(exact)["ts"])
    return out


def _with_schema(frame: pl.DataFrame, columns: dict, local_tz: str) -> tuple[pl.DataFrame, dict]:
    """Cast every known column (non-strict: failures become null) and add missing ones.

    Returns the cast frame (with ``_unreadable_<col>`` flag columns) and, per column, an
    expression that is true where the raw value was present but could not be converted.
    """
    exprs, unparsable = [], {}
    for name, dtype in columns.items():
        if name not in frame.columns:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
            continue
        raw = pl.col(name)
        source = frame.schema[name]
        if source.is_nested() or source == pl.Object:
            # a list or struct where one value belongs (Parquet): unreadable, row by row
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
            unparsable[name] = pl.col(f"_raw_{name}").is_not_null().alias(f"_unreadable_{name}")
            exprs.append(raw.alias(f"_raw_{name}"))
            continue
        if source.is_numeric() and (source == dtype or dtype.is_float()):
            # Numbers already (Parquet, JSON): nothing can fail to convert.
            conv = raw.cast(dtype)
            if dtype.is_float():
                conv = conv.fill_nan(None)  # NaN means "not reported", like an empty cell
            exprs.append(conv.alias(name))
            continue
        if dtype == pl.String:
            # Text cannot fail to convert: blank is "missing", never "unreadable".
            conv = raw.cast(pl.String).str.strip_chars()
            exprs.append(pl.when(conv == "").then(None).otherwise(conv).alias(name))
            continue
        if dtype == pl.Datetime("us") and isinstance(source, pl.Datetime) and source.time_zone is None:
            conv = pl.lit(local_to_utc(frame[name], local_tz))
        elif dtype == pl.Datetime("us"):
            conv = timestamp_expr(name, frame.schema[name], local_tz)
        else:
            src = raw if frame.schema[name].is_numeric() else raw.cast(pl.String).str.strip_chars()
            conv = src.cast(dtype, strict=False)
            if dtype in (pl.Float32, pl.Float64):
                conv = conv.fill_nan(None)  # NaN means "not reported", like an empty cell
        exprs.append(conv.alias(name))
        # The raw value rides along so that the flag below reads the converted column
        # instead of converting a second time.
        exprs.append(raw.alias(f"_raw_{name}"))
        kept = pl.col(f"_raw_{name}")
        present = kept.is_not_null()
        if frame.schema[name].is_float():
            present = present & kept.is_not_nan()
        if frame.schema[name] == pl.String:
            present = present & (kept.str.strip_chars() != "")
        unparsable[name] = (present & pl.col(name).is_null()).alias(f"_unreadable_{name}")
    cast = frame.select(["_row", *exprs])
    if unparsable:
        cast = cast.with_columns(unparsable.values()).drop([f"_raw_{k}" for k in unparsable])
    return cast, {k: pl.col(f"_unreadable_{k}") for k in unparsable}


def _split(
    frame: pl.DataFrame,
    cast: pl.DataFrame,
    rules: list[tuple[pl.Expr, str]],
    detect: list[pl.Expr] | None = None,
):
    """Apply rules in order: each row's reason is the message of the first rule it fails.

    One pass finds the bad rows; reasons are worked out for those rows only, so clean
    batches cost one boolean scan. ``detect``, when given, finds the same bad rows with
    fewer expressions (one range test for several rules of one column): on the small
    frames of a group commit each expression costs more than the rows it reads.
    """
    checks = detect if detect is not None else [c for c, _ in rules]
    is_bad = cast.select(pl.any_horizontal([c.fill_null(False) for c in checks]).alias("bad"))["bad"]
    good = cast.filter(~is_bad).select(pl.exclude("^_unreadable_.*$", f"^{_ALSO}.*$"))
    if not is_bad.any():
        return good, pl.DataFrame(schema={"_row": pl.UInt32, "reason": pl.String, "raw": pl.String})
    reason = pl.lit(None, dtype=pl.String)
    for bad_when, message in reversed(rules):
        reason = pl.when(bad_when.fill_null(False)).then(pl.lit(message)).otherwise(reason)
    reasons = cast.filter(is_bad).select(reason.alias("reason"))["reason"]
    raw_cols = [c for c in frame.columns if c != "_row"]
    bad_raw = frame.filter(is_bad)
    bad = pl.DataFrame(
        {
            "_row": bad_raw["_row"].cast(pl.UInt32),
            "reason": reasons,
            "raw": bad_raw.select(pl.struct(raw_cols).struct.json_encode().alias("raw"))["raw"]
            if raw_cols
            else pl.Series("raw", [None] * len(bad_raw), dtype=pl.String),
        }
    )
    return good, bad


def _common_rules(frame, cast, flags, kind) -> list[tuple[pl.Expr, str]]:
    rules = []
    for col in REQUIRED[kind]:
        if col not in frame.columns:
            rules.append((pl.lit(True), f"missing column '{col}'"))
    for col in REQUIRED[kind]:
        if col in flags:
            rules.append((flags[col], f"{col} could not be read as {_kind_word(col)}"))
        rules.append((pl.col(col).is_null(), f"{col} is required"))
    for col, flag in flags.items():
        if col not in REQUIRED[kind]:
            rules.append((flag, f"{col} could not be read as {_kind_word(col)}"))
    if "lat" in REQUIRED[kind]:
        rules += [
            (~pl.col("lat").is_between(-90, 90) | pl.col("lat").is_nan(), "lat out of range [-90, 90]"),
            (~pl.col("lng").is_between(-180, 180) | pl.col("lng").is_nan(), "lng out of range [-180, 180]"),
            ((pl.col("lat") == 0) & (pl.col("lng") == 0), "position 0,0 (no GPS fix)"),
        ]
    return rules


def _kind_word(col: str) -> str:
    if col in ("ts", "promised_at", "expected_at"):
        return "a timestamp"
    if col in ("lat", "lng", "speed", "heading", "accuracy"):
        return "a number"
    if col.startswith("capacity"):
        return "an integer"
    return "text"


def _prepare(frame: pl.DataFrame, columns: dict, kind: str, local_tz: str):
    frame = normalise_names(frame)
    if "_row" not in frame.columns:
        frame = frame.with_row_index("_row", offset=1)
    conflicts = _conflict_rules(frame)
    cast, flags = _with_schema(frame, columns, local_tz)
    if conflicts:
        also = [c for c in frame.columns if c.startswith(_ALSO)]
        cast = cast.with_columns(frame.select(also))
    return frame, cast, flags, conflicts


def _finite_rules(col: str, largest: float, unit: str) -> list[tuple[pl.Expr, str]]:
    return [
        (pl.col(col).is_infinite(), f"{col} is not a finite number"),
        (pl.col(col) > largest, f"{col} above {largest:g} {unit} (implausible)"),
    ]


def check_pings(frame: pl.DataFrame, local_tz: str = "Asia/Shanghai", limits: Limits | None = None):
    """Validate GPS fixes. Returns ``(good, bad)``; see the module docstring.

    ``limits`` (default :class:`Limits`) bounds the time, speed and accuracy.
    """
    limits = limits or Limits()
    frame, cast, flags, conflicts = _prepare(frame, PING_COLUMNS, "pings", local_tz)
    common = conflicts + _common_rules(frame, cast, flags, "pings")
    heading = (~pl.col("heading").is_between(0, 360), "heading out of range [0, 360]")
    rules = (
        common
        + limits.time_rules("ts")
        + [
            (pl.col("speed") < 0, "speed is negative"),
            *_finite_rules("speed", limits.max_speed, "m/s"),
            heading,
            (pl.col("accuracy") < 0, "accuracy is negative"),
            *_finite_rules("accuracy", limits.max_accuracy, "m"),
        ]
    )
    # the same rows in fewer expressions: a range test is false for -inf, +inf and
    # anything beyond the limits (NaN is already null: "not reported")
    detect = [c for c, _ in common] + [
        limits.outside("ts"),
        ~pl.col("speed").is_between(0, limits.max_speed),
        heading[0],
        ~pl.col("accuracy").is_between(0, limits.max_accuracy),
    ]
    return _split(frame, cast, rules, detect)


def check_events(frame: pl.DataFrame, local_tz: str = "Asia/Shanghai", limits: Limits | None = None):
    """Validate parcel scans. A missing ``event_id`` is derived from parcel, kind and time.

    Scan times obey ``limits`` (default :class:`Limits`); promised and expected times may
    lie up to a year ahead.
    """
    limits = limits or Limits()
    frame, cast, flags, conflicts = _prepare(frame, EVENT_COLUMNS, "parcel_events", local_tz)
    year = timedelta(days=366)
    rules = (
        conflicts
        + _common_rules(frame, cast, flags, "parcel_events")
        + limits.time_rules("ts")
        + [
            (~pl.col("kind").is_in(EVENT_KINDS), f"kind must be one of {', '.join(EVENT_KINDS)}"),
            *limits.time_rules("promised_at", year),
            *limits.time_rules("expected_at", year),
        ]
    )
    good, bad = _split(frame, cast, rules)
    good = good.with_columns(
        pl.coalesce(
            pl.col("event_id"),
            pl.concat_str(
                [pl.col("parcel_id"), pl.col("kind"), pl.col("ts").dt.strftime("%Y%m%dT%H%M%S%.6f")],
                separator=":",
            ),
        ).alias("event_id")
    )
    return good, bad


def check_outlets(frame: pl.DataFrame, local_tz: str = "Asia/Shanghai", limits: Limits | None = None):
    """Validate outlets (stations with a location and a capacity)."""
    frame, cast, flags, conflicts = _prepare(frame, OUTLET_COLUMNS, "outlets", local_tz)
    rules = (
        conflicts
        + _common_rules(frame, cast, flags, "outlets")
        + [
            (pl.col("capacity_couriers") < 0, "capacity_couriers is negative"),
            (pl.col("capacity_parcels_per_hour") < 0, "capacity_parcels_per_hour is negative"),
        ]
    )
    good, bad = _split(frame, cast, rules)
    return good.with_columns(pl.col("kind").fill_null("outlet")), bad


def check_couriers(frame: pl.DataFrame, local_tz: str = "Asia/Shanghai", limits: Limits | None = None):
    """Validate couriers; each gets a device (its own id unless ``device_id`` is given)."""
    frame, cast, flags, conflicts = _prepare(frame, COURIER_COLUMNS, "couriers", local_tz)
    rules = (
        conflicts
        + _common_rules(frame, cast, flags, "couriers")
        + [
            (
                pl.col("mode").is_not_null() & ~pl.col("mode").is_in(COURIER_MODES),
                f"mode must be one of {', '.join(COURIER_MODES)}",
            ),
        ]
    )
    good, bad = _split(frame, cast, rules)
    return good.with_columns(
        pl.col("mode").fill_null("ebike"), pl.coalesce("device_id", "courier_id").alias("device_id")
    ), bad


CHECKS = {
    "pings": check_pings,
    "parcel_events": check_events,
    "outlets": check_outlets,
    "couriers": check_couriers,
}
