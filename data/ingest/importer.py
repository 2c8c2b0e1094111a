"""File import: CSV or Parquet files of pings, parcel events, outlets or couriers.

Files are streamed in batches (memory stays flat with file size); each row is validated,
bad rows go to quarantine with file, row number and reason, good rows are stored next to
them, and re-imported rows are recognised by their record ids and not stored twice.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from data.ingest import validate
from data.ingest.quarantine import Quarantine
from data.store.bulk_load import BulkLoad, Clash
from data.store.database import Store
from geo import cells as h3cells

KINDS = ("pings", "parcel_events", "outlets", "couriers")
#: Batches prepared at once, ahead of the one being stored (one per core here).
_PREPARE_AHEAD = 2
_KIND_WORDS = {
    "ping": "pings",
    "event": "parcel_events",
    "scan": "parcel_events",
    "outlet": "outlets",
    "courier": "couriers",
}


class ImportFileError(Exception):
    """The file cannot be read at all; nothing was stored."""


@dataclass
class ImportReport:
    path: str
    kind: str
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    #: Seconds spent per stage, summed over threads (prepare runs in workers, overlapping
    #: each other and the store).
    seconds: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def timed(self, stage: str, t0: float) -> None:
        spent = time.perf_counter() - t0
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + spent

    def line(self) -> str:
        return (
            f"{self.path}: {self.kind}: {self.rows} rows read, {self.accepted} accepted, "
            f"{self.rejected} rejected, {self.duplicates} duplicates"
        )


def guess_kind(path: Path, columns: list[str]) -> str:
    """Record kind from the file name, else from its columns."""
    name = path.name.lower()
    for word, kind in _KIND_WORDS.items():
        if word in name:
            return kind
    cols = set(validate.normalise_names(pl.DataFrame(schema={c: pl.String for c in columns})).columns)
    if {"parcel_id", "kind"} <= cols:
        return "parcel_events"
    if "device_id" in cols and "lat" in cols:
        return "pings"
    if "capacity_couriers" in cols:
        return "outlets"
    if "courier_id" in cols and "outlet_id" in cols:
        return "couriers"
    raise ImportFileError(
        f"{path}: cannot tell what the file holds from its name or columns {columns}; "
        f"pass --kind ({', '.join(KINDS)})"
    )


def open_batches(
    path: Path, batch_rows: int
) -> tuple[list[str], int | None, Iterator[pa.RecordBatch | pa.Table]]:
    """Open a file for streaming: (columns, total rows if known, batch iterator).

    Raises :class:`ImportFileError` if the file cannot be opened or parsed at all.
    CSV columns are read as text so that one bad value rejects one row, not the file.
    """
    if not path.exists():
        raise ImportFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            # No pre-buffering: it keeps every column chunk read so far until the file
            # is closed (about 1 GB over 30 M rows), and gains nothing on local disks.
            pf = pq.ParquetFile(path, pre_buffer=False)
            cols = pf.schema_arrow.names
            text = [
                f.name
                for f in pf.schema_arrow
                if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
            ]
            if text:
                # Text read as dictionaries: Parquet writers store repeated ids (devices,
                # couriers) dictionary-encoded, and keeping the encoding costs about half
                # as much as decoding every value (_frame_of decodes them in polars).
                pf = pq.ParquetFile(path, pre_buffer=False, read_dictionary=text)
            return cols, pf.metadata.num_rows, _coalesce(pf.iter_batches(batch_size=batch_rows), batch_rows)
        if suffix in (".csv", ".txt", ".tsv"):
            with open(path, encoding="utf-8-sig") as fh:
                header = fh.readline()
            delim = "\t" if suffix == ".tsv" else ","
            cols = [c.strip() for c in header.rstrip("\r\n").split(delim)]
            if not header.strip() or len(set(cols)) != len(cols):
                raise ImportFileError(f"{path}: the first line must be a header of unique column names")
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=64 << 20, encoding="utf8"),
                parse_options=pacsv.ParseOptions(delimiter=delim),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: pa.string() for c in cols}, strings_can_be_null=True
                ),
            )
            return cols, None, _rebatch(reader, batch_rows)
    except ImportFileError:
        raise
    except (OSError, pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise ImportFileError(f"{path}: cannot be read: {exc}") from None
    raise ImportFileError(f"{path}: unsupported file type {suffix!r} (use .csv or .parquet)")


def _coalesce(batches: Iterator[pa.RecordBatch], batch_rows: int) -> Iterator[pa.Table]:
    """Batches of at least ``batch_rows`` rows (but the last), as tables of the pieces
    read. Text read as dictionaries comes in pieces that end at every row group (each
    has its own dictionary), and small batches cost their fixed overhead more often."""
    pieces, rows = [], 0
    for batch in batches:
        pieces.append(batch)
        rows += batch.num_rows
        if rows >= batch_rows:
            yield pa.Table.from_batches(pieces)
            pieces, rows = [], 0
    if pieces:
        yield pa.Table.from_batches(pieces)


def _quick_start(batches: Iterator[pa.RecordBatch], parts: int = 4) -> Iterator[pa.RecordBatch]:
    """The first batch in ``parts`` slices, then the others as they are: the store
    starts on the first rows while the workers prepare the rest, instead of waiting
    for a whole batch to be prepared."""
    first = next(batches, None)
    if first is None:
        return
    step = max(1, -(-first.num_rows // parts))
    for start in range(0, max(first.num_rows, 1), step):
        yield first.slice(start, step)
    yield from batches


def _rebatch(reader, batch_rows: int) -> Iterator[pa.RecordBatch]:
    for batch in reader:
        for start in range(0, batch.num_rows, batch_rows):
            yield batch.slice(start, batch_rows)


def import_file(
    store: Store,
    path: str | Path,
    kind: str | None = None,
    batch_rows: int = 1_000_000,
    local_tz: str = "Asia/Shanghai",
    progress: Callable[[int, int | None], None] | None = None,
    limits: validate.Limits | None = None,
    quarantine: Quarantine | None = None,
) -> ImportReport:
    """Import one file into the store. See the module docstring.

    ``limits`` (plausible times, speeds, accuracies) and ``quarantine`` (its caps) are
    those of the ``EMAP_*`` settings unless given.

    Pings and parcel events are first stored optimistically (:mod:`data.store.bulk_load`):
    straight into their table in one transaction, as if no record id were already
    stored or repeated. If one is, that attempt is rolled back and the file is read
    again on the path that deduplicates every row. Either way the result is the same.

    Examples
    --------
    >>> report = import_file(store, "pings.parquet")  # doctest: +SKIP
    >>> report.accepted + report.rejected + report.duplicates == report.rows  # doctest: +SKIP
    True
    """
    path = Path(path)
    if limits is None or quarantine is None:
        from config import Settings

        settings = Settings.from_env()
        limits = limits or validate.Limits.from_settings(settings)
        quarantine = quarantine or Quarantine.from_settings(store, settings)
    columns, total, batches = open_batches(path, batch_rows)
    kind = kind or guess_kind(path, columns)
    if kind not in KINDS:
        raise ImportFileError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind not in ("pings", "parcel_events"):
        return _import(store, path, kind, total, batches, local_tz, progress, "upsert", limits, quarantine)
    t0 = time.perf_counter()
    try:
        return _import(store, path, kind, total, batches, local_tz, progress, "bulk", limits, quarantine)
    except Clash:
        abandoned = time.perf_counter() - t0
    if progress:
        progress(0, total)  # the second pass starts from the top of the file
    _, total, batches = open_batches(path, batch_rows)
    report = _import(store, path, kind, total, batches, local_tz, progress, "stage", limits, quarantine)
    report.seconds["first pass, abandoned (records already stored or repeated)"] = abandoned
    return report


def _import(
    store: Store,
    path: Path,
    kind: str,
    total: int | None,
    batches: Iterator[pa.RecordBatch],
    local_tz: str,
    progress,
    mode: str,
    limits: validate.Limits,
    quarantine: Quarantine,
) -> ImportReport:
    """One pass over the file. ``mode``: ``bulk`` (optimistic, raises :class:`Clash`),
    ``stage`` (every row deduplicated) or ``upsert`` (outlets, couriers)."""
    report = ImportReport(str(path), kind)
    one = _Pass(store, kind, mode, local_tz, limits, report)
    held = _Held(quarantine.per_source)
    # Pings and parcel events are stored in one transaction for the whole file: a file
    # that breaks half-way stores nothing.
    try:
        with ThreadPoolExecutor(max_workers=_PREPARE_AHEAD) as pool:
            for n, ready, bad, parts in _prepared_in_order(pool, one.prepare, batches, path, report):
                report.rows += n
                bad = one.save(ready, bad, parts)
                if not bad.is_empty():
                    report.rejected += len(bad)
                    held.add(bad)
                if progress:
                    progress(report.rows, total)
        one.finish()
    except BaseException:
        one.abort()
        raise
    if held.frames:
        quarantine.keep(pl.concat(held.frames), str(path), kind)
    return report


def _prepared_in_order(
    pool: ThreadPoolExecutor,
    prepare: Callable[[pa.RecordBatch, int], tuple],
    batches: Iterator[pa.RecordBatch],
    path: Path,
    report: ImportReport,
) -> Iterator[tuple]:
    """``prepare(batch, offset)`` of each batch, in file order, while the next ones are
    prepared ahead.

    Batches are prepared ahead by worker threads while the store takes the current one
    (polars, h3ronpy and DuckDB all release the GIL): two workers, because preparing a
    batch costs more than storing it and would otherwise leave a core idle.
    """
    iterator = _quick_start(iter(batches))
    pending: deque = deque()
    next_offset = 0  # data rows handed to the workers so far

    def prepare_next() -> None:
        nonlocal next_offset
        try:
            batch = next(iterator, None)
        except (pa.ArrowInvalid, OSError) as exc:
            # The file is refused as a whole: what it added so far is rolled back.
            raise ImportFileError(
                f"{path}: unreadable after data row {next_offset}: {exc}; nothing from this file was stored"
            ) from None
        if batch is not None:
            pending.append(pool.submit(prepare, batch, next_offset))
            next_offset += batch.num_rows

    for _ in range(_PREPARE_AHEAD):
        prepare_next()
    while pending:
        t0 = time.perf_counter()
        prepared = pending.popleft().result()
        report.timed("wait for prepare", t0)
        prepare_next()
        yield prepared


class _Pass:
    """What one pass over a file does to a batch, by ``mode`` (see :func:`_import`)."""

    def __init__(
        self, store: Store, kind: str, mode: str, local_tz: str, limits: validate.Limits, report: ImportReport
    ):
        self.store, self.kind, self.mode = store, kind, mode
        self.local_tz, self.limits, self.report = local_tz, limits, report
        self.bulk = BulkLoad(store, kind) if mode == "bulk" else None

    def prepare(self, batch: pa.RecordBatch, offset: int):
        """Read, validate, index and locate one batch (no writes to the operations
        tables): (rows, ready rows, rejected rows, the bulk load's parts or None)."""
        report = self.report
        t0 = time.perf_counter()
        frame = _frame_of(batch).with_row_index("_row", offset=offset + 1)
        good, bad = validate.CHECKS[self.kind](frame, self.local_tz, self.limits)
        report.timed("validate", t0)
        t0 = time.perf_counter()
        if self.kind == "pings":
            ready, refused = self.store.prepare_pings(good)
        elif self.kind == "parcel_events":
            ready, refused = self.store.prepare_events(good)
        else:
            ready, refused = good, bad.clear()
        bad = _with_refused(bad, refused)
        report.timed("index and locate", t0)
        parts = None
        if self.bulk is not None:
            t0 = time.perf_counter()
            parts = self.bulk.prepare(ready)
            report.timed("check ids, cube share", t0)
        return len(frame), ready, bad, parts

    def save(self, ready: pl.DataFrame, bad: pl.DataFrame, parts) -> pl.DataFrame:
        """Store one prepared batch; returns its rejected rows, with those the store refused."""
        report = self.report
        t0 = time.perf_counter()
        if self.bulk is not None:
            self.bulk.add(ready, parts)
            report.timed("store", t0)
        elif self.mode == "stage":
            self.store.stage(self.kind, ready)
            report.timed("stage", t0)
        else:
            store_rows = _store_outlets if self.kind == "outlets" else _store_couriers
            stored, dup, refused = store_rows(self.store, ready)
            report.accepted += stored
            report.duplicates += dup
            bad = _with_refused(bad, refused)
        return bad

    def finish(self) -> None:
        """Commit what the pass stored (pings and parcel events: with their cube)."""
        report = self.report
        t0 = time.perf_counter()
        if self.bulk is not None:
            report.accepted = self.bulk.finish()
            report.timed("cube and commit", t0)
        elif self.mode == "stage":
            report.accepted, report.duplicates = self.store.commit_staged(self.kind)
            report.timed("dedupe, store and cube", t0)

    def abort(self) -> None:
        """Undo what the pass stored so far."""
        if self.bulk is not None:
            self.bulk.abort()
        elif self.mode == "stage":
            self.store.discard_staged(self.kind)


def _with_refused(bad: pl.DataFrame, refused: pl.DataFrame) -> pl.DataFrame:
    """Rejected rows and the rows the store refused, in one frame."""
    if refused.is_empty():
        return bad
    return pl.concat([bad, refused.cast(bad.schema)])


@dataclass
class _Held:
    """Rejected rows held for quarantine: no more than it keeps of one source."""

    per_source: int
    frames: list[pl.DataFrame] = field(default_factory=list)
    rows: int = 0

    def add(self, bad: pl.DataFrame) -> None:
        if self.rows < self.per_source:
            # a copy: the rejected rows alone, not the batch's string buffers that
            # polars' filtered strings would keep alive to the end
            bad = bad.head(self.per_source - self.rows)
            self.frames.append(pl.from_arrow(bad.to_arrow()))
            self.rows += len(bad)


def _frame_of(batch: pa.RecordBatch | pa.Table) -> pl.DataFrame:
    """A batch as a polars frame in one chunk, dictionary-encoded text decoded to plain
    text."""
    frame = pl.from_arrow(batch)
    if isinstance(frame, pl.Series):
        frame = frame.to_frame()
    return frame.with_columns(pl.col(pl.Categorical).cast(pl.String)).rechunk()


def _store_outlets(store: Store, good: pl.DataFrame):
    good = good.with_columns(h3cells.cells_of(good["lat"], good["lng"]))
    good = good.with_columns(store.branches_of_cells(good["cell"].to_numpy()).alias("branch_id"))
    outside = good.filter(pl.col("branch_id").is_null())
    ok = good.filter(pl.col("branch_id").is_not_null()).unique("outlet_id", keep="last")
    dup = len(good) - len(outside) - len(ok)
    store.upsert("outlets", ok.drop("_row"), "outlet_id")
    return len(ok), dup, _refuse(outside, "position outside every branch territory")


def _store_couriers(store: Store, good: pl.DataFrame):
    outlets = store.sql("SELECT outlet_id, branch_id FROM outlets")
    good = good.join(outlets, on="outlet_id", how="left")
    unknown = good.filter(pl.col("branch_id").is_null())
    ok = good.filter(pl.col("branch_id").is_not_null()).unique("courier_id", keep="last")
    dup = len(good) - len(unknown) - len(ok)
    store.upsert("couriers", ok.drop("_row", "device_id"), "courier_id")
    store.upsert(
        "devices",
        ok.select("device_id", "courier_id", pl.lit(None, dtype=pl.String).alias("vehicle_id")),
        "device_id",
    )
    refused = unknown.with_columns(
        pl.concat_str(pl.lit("unknown outlet '"), pl.col("outlet_id"), pl.lit("'")).alias("reason")
    )
    return len(ok), dup, _refuse_with_reason(refused)


def _refuse(frame: pl.DataFrame, reason: str) -> pl.DataFrame:
    return _refuse_with_reason(frame.with_columns(pl.lit(reason).alias("reason")))


def _refuse_with_reason(frame: pl.DataFrame) -> pl.DataFrame:
    raw_cols = [c for c in frame.columns if c not in ("_row", "reason", "cell", "branch_id")]
    return frame.select(
        pl.col("_row"), pl.col("reason"), pl.struct(raw_cols).struct.json_encode().alias("raw")
    )


def print_progress(done: int, total: int | None) -> None:
    """Progress on stderr for the command line."""
    if total:
        sys.stderr.write(f"\r  {done:,} / {total:,} rows ({100 * done / total:.0f}%)")
    else:
        sys.stderr.write(f"\r  {done:,} rows")
    sys.stderr.flush()
