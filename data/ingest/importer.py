"""File import: CSV or Parquet files of pings, parcel events, outlets or couriers.

Files are streamed in batches (memory stays flat with file size); each row is validated,
bad rows go to quarantine with file, row number and reason, good rows are stored next to
them, and re-imported rows are recognised by their record ids and not stored twice.

A CSV file is parsed by pyarrow. When pyarrow cannot parse it (a line with too few or
too many fields, a broken quote, bytes that are not UTF-8), the file is read again line
by line instead (:class:`LinePass`): each such line is quarantined with its line number
and its text, and every other line is imported. Clean files never pay for this. For a
CSV file a row's number is its line in the file (1 is the header); for Parquet, the
1-based row.
"""

from __future__ import annotations

import csv
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from data.ingest import validate
from data.ingest.quarantine import Quarantine
from data.ingest.records import raw_json
from data.store.branches import branch_ids
from data.store.bulk_load import BulkLoad, Clash
from data.store.database import Store
from geo import cells as h3cells

log = logging.getLogger(__name__)

KINDS = ("pings", "parcel_events", "outlets", "couriers")
CSV_SUFFIXES = (".csv", ".txt", ".tsv")
PARQUET_SUFFIXES = (".parquet", ".pq")
#: Bytes of CSV parsed at a time by pyarrow.
_CSV_BLOCK_BYTES = 64 << 20
#: Rejected rows listed in a report (the first of the file).
_SAMPLES = 100
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


class _CsvTrouble(Exception):
    """pyarrow cannot parse a CSV file: it is read again line by line."""

    #: Rows committed before (importing batch by batch); 0 when the pass was rolled back.
    committed = 0


@dataclass(frozen=True)
class NodeScope:
    """What an import may write when its token is bound to a node: records positioned in
    the node's branches only, and no outlet, courier or device that is stored outside
    them overwritten. Rows outside are quarantined with ``refusal`` as their reason."""

    node_id: str
    refusal: str = ""

    def reason(self) -> str:
        return self.refusal or f"outside node '{self.node_id}', which this import may write"


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
    #: ``(row, reason)`` of the first rejected rows (:data:`_SAMPLES`), in file order.
    samples: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def timed(self, stage: str, t0: float) -> None:
        spent = time.perf_counter() - t0
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + spent

    def counts(self) -> dict:
        """Kind and counts, as the imports history records them."""
        return {
            "kind": self.kind,
            "rows": self.rows,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
        }

    def line(self) -> str:
        return (
            f"{self.path}: {self.kind}: {self.rows} rows read = {self.accepted} accepted + "
            f"{self.rejected} rejected + {self.duplicates} duplicates"
        )


def guess_kind(path: Path, columns: list[str]) -> str:
    """Record kind from the file name, else from its columns.

    Examples
    --------
    >>> guess_kind(Path("scans-2026-11-20.csv"), ["a", "b"])
    'parcel_events'
    >>> guess_kind(Path("export.csv"), ["device_id", "lat", "lng", "ts"])
    'pings'
    >>> guess_kind(Path("export.csv"), ["a"])
    Traceback (most recent call last):
    ...
    data.ingest.importer.ImportFileError: export.csv: cannot tell what the file holds from its name or columns ['a']; pass --kind (pings, parcel_events, outlets, couriers)
    """
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
        if suffix in PARQUET_SUFFIXES:
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
        if suffix in CSV_SUFFIXES:
            cols = csv_header(path)
            return cols, None, _csv_batches(path, _delimiter(path), cols, batch_rows)
    except ImportFileError:
        raise
    except (OSError, pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise ImportFileError(f"{path}: cannot be read: {exc}") from None
    raise ImportFileError(f"{path}: unsupported file type {suffix!r} (use .csv or .parquet)")


def _delimiter(path: Path) -> str:
    return "\t" if path.suffix.lower() == ".tsv" else ","


def csv_header(path: Path) -> list[str]:
    """The column names of a CSV file's first line; :class:`ImportFileError` if the file
    is not text or its first line is not a header of unique names."""
    with open(path, "rb") as fh:
        head = fh.read(64 << 10)
    if b"\0" in head:
        raise ImportFileError(f"{path}: binary data, not CSV text; nothing was stored")
    try:
        header = head.split(b"\n", 1)[0].decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFileError(f"{path}: the first line is not UTF-8 text; nothing was stored") from None
    cols = [c.strip() for c in header.rstrip("\r\n").split(_delimiter(path))]
    if not header.strip() or len(set(cols)) != len(cols):
        raise ImportFileError(f"{path}: the first line must be a header of unique column names")
    return cols


def _csv_batches(path: Path, delim: str, cols: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The CSV file parsed by pyarrow, text columns; :class:`_CsvTrouble` where it cannot."""
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK_BYTES, encoding="utf8"),
            parse_options=pacsv.ParseOptions(delimiter=delim),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in cols}, strings_can_be_null=True
            ),
        )
        yield from _rebatch(reader, batch_rows)
    except pa.ArrowInvalid as exc:
        raise _CsvTrouble(str(exc)) from None


class LinePass:
    r"""The data lines of a CSV file read one by one, for a file pyarrow cannot parse.

    Iterating gives tables of the good lines (text columns, ``_line``: the line number);
    :attr:`rejected` holds ``(line, reason, raw)`` of the others: a line with too few or
    too many fields, a broken quote, bytes that are not UTF-8. A line is one record (as
    for pyarrow's reader, values may not hold line breaks). Blank lines are skipped.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.csv"
    >>> _ = p.write_bytes(b'a,b\n1,2\n3\n4,"5\n6,\xff\n7,8\n')
    >>> lp = LinePass(p, ["a", "b"], 100)
    >>> [t.to_pydict() for t in lp]
    [{'a': ['1', '7'], 'b': ['2', '8'], '_line': [2, 6]}]
    >>> [(n, why) for n, why, _ in lp.rejected]  # doctest: +NORMALIZE_WHITESPACE
    [(3, '1 field where the header has 2'), (4, 'broken quotes: unexpected end of data'),
     (5, 'not UTF-8 text: byte 0xff at column 3')]
    """

    def __init__(self, path: Path, columns: list[str], batch_rows: int):
        self.path, self.columns, self.batch_rows = Path(path), columns, batch_rows
        self.delim = _delimiter(self.path)
        self.nulls = set(pacsv.ConvertOptions().null_values)  # as pyarrow reads them
        self.rejected: list[tuple[int, str, str]] = []

    def __iter__(self) -> Iterator[pa.Table]:
        self.rejected = []
        width = len(self.columns)
        values: list[list] = [[] for _ in range(width)]
        lines: list[int] = []
        with open(self.path, "rb") as fh:
            fh.readline()  # the header, line 1
            for number, raw in enumerate(fh, start=2):
                line = raw.rstrip(b"\r\n")
                if not line.strip():
                    continue
                fields = self._fields(number, line, width)
                if fields is None:
                    continue
                for column, value in zip(values, fields, strict=True):
                    column.append(None if value in self.nulls else value)
                lines.append(number)
                if len(lines) >= self.batch_rows:
                    yield self._table(values, lines)
                    values, lines = [[] for _ in range(width)], []
        if lines:
            yield self._table(values, lines)

    def _fields(self, number: int, line: bytes, width: int) -> list[str] | None:
        """The line's fields, or None once it is rejected."""
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            why = f"not UTF-8 text: byte 0x{line[exc.start]:02x} at column {exc.start + 1}"
            self.rejected.append((number, why, line.decode("utf-8", "backslashreplace")))
            return None
        if '"' in text:
            try:
                fields = next(csv.reader([text], delimiter=self.delim, strict=True))
            except csv.Error as exc:
                self.rejected.append((number, f"broken quotes: {exc}", text))
                return None
        else:
            fields = text.split(self.delim)
        if len(fields) != width:
            n = len(fields)
            why = f"{n} field{'s' if n != 1 else ''} where the header has {width}"
            self.rejected.append((number, why, text))
            return None
        return fields

    def _table(self, values: list[list], lines: list[int]) -> pa.Table:
        arrays = [pa.array(v, pa.string()) for v in values]
        return pa.table([*arrays, pa.array(lines, pa.uint32())], names=[*self.columns, "_line"])

    def quarantined(self, raw_bytes: int) -> pl.DataFrame:
        """The rejected lines in the quarantine's shape (``_row, reason, raw``)."""
        return pl.DataFrame(
            {
                "_row": [n for n, _, _ in self.rejected],
                "reason": [why for _, why, _ in self.rejected],
                "raw": [raw_json(text, raw_bytes) for _, _, text in self.rejected],
            },
            schema={"_row": pl.UInt32, "reason": pl.String, "raw": pl.String},
        )


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
    source: str | None = None,
    scope: NodeScope | None = None,
    each_batch: bool = False,
) -> ImportReport:
    """Import one file into the store. See the module docstring.

    ``limits`` (plausible times, speeds, accuracies) and ``quarantine`` (its caps) are
    those of the ``EMAP_*`` settings unless given. ``source`` names the file in the
    quarantine and the report (default: its path); a file imported again under the same
    source adds none of its rejected rows to the quarantine a second time. ``scope``
    limits what the file may write (a token bound to a node).

    Pings and parcel events are first stored optimistically (:mod:`data.store.bulk_load`):
    straight into their table in one transaction, as if no record id were already
    stored or repeated. If one is, that attempt is rolled back and the file is read
    again on the path that deduplicates every row. Either way the result is the same.
    With ``each_batch`` every batch is committed on its own instead (deduplicated, with
    its cube), so that other writers of the store get their turn between batches (an
    import inside the server); a file that breaks half-way then keeps its first batches,
    and importing it again adds the rest.

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
    job = _Job(store, path, kind, source or str(path), local_tz, progress, limits, quarantine, scope)
    try:
        return job.passes(total, batches, lambda: open_batches(path, batch_rows)[2], each_batch)
    except _CsvTrouble as exc:
        why = str(exc).splitlines()[0] if str(exc) else "unreadable"
        log.info("%s: read line by line (%s)", job.source, why)
        committed = exc.committed
    if progress:
        progress(0, total)  # read again from the top of the file
    report = job.passes(
        total, LinePass(path, columns, batch_rows), lambda: LinePass(path, columns, batch_rows), each_batch
    )
    if committed:  # batches committed before pyarrow stopped: found again, they are not duplicates
        report.accepted += committed
        report.duplicates -= committed
    return report


@dataclass
class _Job:
    """What stays the same over the passes of one import."""

    store: Store
    path: Path
    kind: str
    source: str
    local_tz: str
    progress: Callable[[int, int | None], None] | None
    limits: validate.Limits
    quarantine: Quarantine
    scope: NodeScope | None

    def passes(self, total, batches, reopen: Callable[[], Iterable], each_batch: bool) -> ImportReport:
        """The file stored: optimistically (pings and events), again deduplicated if that
        clashes; in one upsert pass (outlets, couriers); or batch by batch."""
        if each_batch or self.kind not in ("pings", "parcel_events"):
            mode = "upsert" if self.kind not in ("pings", "parcel_events") else "batches"
            return self.one_pass(total, batches, mode)
        t0 = time.perf_counter()
        try:
            return self.one_pass(total, batches, "bulk")
        except Clash:
            abandoned = time.perf_counter() - t0
        if self.progress:
            self.progress(0, total)  # the second pass starts from the top of the file
        report = self.one_pass(total, reopen(), "stage")
        report.seconds["first pass, abandoned (records already stored or repeated)"] = abandoned
        return report

    def one_pass(self, total: int | None, batches: Iterable, mode: str) -> ImportReport:
        """One pass over the file. ``mode``: ``bulk`` (optimistic, raises :class:`Clash`),
        ``stage`` (every row deduplicated), ``batches`` (each committed on its own) or
        ``upsert`` (outlets, couriers)."""
        report = ImportReport(self.source, self.kind)
        first_row = 2 if self.path.suffix.lower() in CSV_SUFFIXES else 1
        one = _Pass(self.store, self.kind, mode, self.local_tz, self.limits, report, first_row, self.scope)
        held = _Held(self.quarantine.per_source)
        # Pings and parcel events are stored in one transaction for the whole file (but
        # in mode "batches"): a file that breaks half-way stores nothing.
        try:
            with ThreadPoolExecutor(max_workers=_PREPARE_AHEAD) as pool:
                for n, ready, bad, parts in _prepared_in_order(pool, one.prepare, batches, self.path, report):
                    report.rows += n
                    bad = one.save(ready, bad, parts)
                    if not bad.is_empty():
                        report.rejected += len(bad)
                        held.add(bad)
                    if self.progress:
                        self.progress(report.rows, total)
                    if mode == "batches":
                        time.sleep(0)  # let waiting threads (live ingest, the dashboard) run
            one.finish()
        except _CsvTrouble as exc:
            one.abort()
            if mode == "batches":
                exc.committed = report.accepted
            raise
        except ImportFileError as exc:
            one.abort()
            if mode == "batches":  # its batches so far are committed
                raise ImportFileError(
                    str(exc).replace(
                        "nothing from this file was stored",
                        "the rows before it were stored: import the repaired file again for the rest",
                    )
                ) from None
            raise
        except BaseException:
            one.abort()
            raise
        if isinstance(batches, LinePass) and batches.rejected:
            report.rows += len(batches.rejected)
            report.rejected += len(batches.rejected)
            held.add(batches.quarantined(self.quarantine.raw_bytes))
        if held.frames:
            bad = pl.concat([f.cast({"_row": pl.Int64}) for f in held.frames]).sort("_row")
            report.samples = list(
                zip(bad["_row"].head(_SAMPLES).to_list(), bad["reason"].head(_SAMPLES).to_list(), strict=True)
            )
            self.quarantine.keep(bad, self.source, self.kind, once=True)
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
        self,
        store: Store,
        kind: str,
        mode: str,
        local_tz: str,
        limits: validate.Limits,
        report: ImportReport,
        first_row: int = 1,
        scope: NodeScope | None = None,
    ):
        self.store, self.kind, self.mode = store, kind, mode
        self.local_tz, self.limits, self.report = local_tz, limits, report
        self.first_row = first_row
        self.bulk = BulkLoad(store, kind) if mode in ("bulk", "batches") else None
        self.scope = _Territory(store, scope) if scope is not None else None

    def prepare(self, batch: pa.RecordBatch, offset: int):
        """Read, validate, index and locate one batch (no writes to the operations
        tables): (rows, ready rows, rejected rows, the bulk load's parts or None)."""
        report = self.report
        t0 = time.perf_counter()
        frame = _frame_of(batch)
        if "_line" in frame.columns:  # read line by line: the rows' own line numbers
            frame = frame.rename({"_line": "_row"}).select("_row", pl.exclude("_row"))
        else:
            frame = frame.with_row_index("_row", offset=offset + self.first_row)
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
        if self.scope is not None and self.kind in ("pings", "parcel_events"):
            ready, outside = self.scope.split(ready)
            bad = _with_refused(bad, outside)
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
        if self.mode == "batches":
            stored, dup = self._commit_batch(ready, parts)
            report.accepted += stored
            report.duplicates += dup
            report.timed("store, cube and commit", t0)
        elif self.bulk is not None:
            self.bulk.add(ready, parts)
            report.timed("store", t0)
        elif self.mode == "stage":
            self.store.stage(self.kind, ready)
            report.timed("stage", t0)
        else:
            store_rows = _store_outlets if self.kind == "outlets" else _store_couriers
            stored, dup, refused = store_rows(self.store, ready, self.scope)
            report.accepted += stored
            report.duplicates += dup
            bad = _with_refused(bad, refused)
        return bad

    def _commit_batch(self, ready: pl.DataFrame, parts) -> tuple[int, int]:
        """One batch committed on its own: ``(stored, duplicates)``. Optimistically, as a
        bulk load of its own (the write lock is held for this batch only); if one of its
        record ids is stored already or repeated, deduplicated row by row instead."""
        if parts is None:
            return 0, 0
        load = BulkLoad(self.store, self.kind)
        try:
            load.add(ready, parts)
            return load.finish(), 0
        except Clash:
            load.abort()
        except BaseException:
            load.abort()
            raise
        return self.store.commit(self.kind, ready)

    def finish(self) -> None:
        """Commit what the pass stored (pings and parcel events: with their cube)."""
        report = self.report
        t0 = time.perf_counter()
        if self.bulk is not None and self.mode == "bulk":
            report.accepted = self.bulk.finish()
            report.timed("cube and commit", t0)
        elif self.mode == "stage":
            report.accepted, report.duplicates = self.store.commit_staged(self.kind)
            report.timed("dedupe, store and cube", t0)

    def abort(self) -> None:
        """Undo what the pass stored so far (in mode ``batches``: the batch being stored)."""
        if self.bulk is not None and self.mode == "bulk":
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


class _Territory:
    """The branches a node-bound import may write in (the node's, from ``node_branches``,
    as live ingest scopes a node-bound token), and the rows it refuses."""

    def __init__(self, store: Store, scope: NodeScope):
        self.store, self.reason = store, scope.reason()
        self.branches = branch_ids(store, scope.node_id).to_list()

    def inside(self, branch: pl.Expr) -> pl.Expr:
        return branch.is_in(self.branches).fill_null(False)

    def split(self, ready: pl.DataFrame, column: str = "branch_id") -> tuple[pl.DataFrame, pl.DataFrame]:
        """``(rows inside, rows outside refused)`` by the branch in ``column``."""
        inside = self.inside(pl.col(column))
        return ready.filter(inside), _refuse(ready.filter(~inside), self.reason)

    def foreign(self, table: str, key: str, ids: pl.Series) -> list[str]:
        """Of ``ids``, those already stored in ``table`` with a branch outside (or none)."""
        if table == "devices":
            sql = (
                "SELECT d.device_id AS id, coalesce(c.branch_id, v.branch_id) AS branch_id FROM devices d "
                "LEFT JOIN couriers c USING (courier_id) LEFT JOIN vehicles v USING (vehicle_id) "
                "WHERE list_contains($ids, d.device_id)"
            )
        else:
            sql = f"SELECT {key} AS id, branch_id FROM {table} WHERE list_contains($ids, {key})"
        stored = self.store.cursor().sql(sql, params={"ids": ids.drop_nulls().unique().to_list()}).pl()
        return stored.filter(~self.inside(pl.col("branch_id")))["id"].to_list()

    def keep_own(
        self, rows: pl.DataFrame, checks: list[tuple[str, str]]
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """``rows`` inside the branches whose ids (``(table, column)`` of ``checks``)
        name nothing stored outside them; and the others, refused."""
        rows, outside = self.split(rows)
        refused = [outside]
        for table, key in checks:
            taken = self.foreign(table, key, rows[key])
            if taken:
                hit = pl.col(key).is_in(taken).fill_null(False)
                refused.append(
                    _refuse(rows.filter(hit), f"{self.reason}: {key} '{{}}' is stored outside it", key)
                )
                rows = rows.filter(~hit)
        return rows, pl.concat(refused)


def _store_outlets(store: Store, good: pl.DataFrame, territory: _Territory | None = None):
    good = good.with_columns(h3cells.cells_of(good["lat"], good["lng"]))
    good = good.with_columns(store.branches_of_cells(good["cell"].to_numpy()).alias("branch_id"))
    outside = good.filter(pl.col("branch_id").is_null())
    ok = good.filter(pl.col("branch_id").is_not_null()).unique("outlet_id", keep="last")
    refused = _refuse(outside, "position outside every branch territory")
    if territory is not None:
        ok, foreign = territory.keep_own(ok, [("outlets", "outlet_id")])
        refused = pl.concat([refused, foreign])
    dup = len(good) - len(refused) - len(ok)
    store.upsert("outlets", ok.drop("_row"), "outlet_id")
    return len(ok), dup, refused


def _store_couriers(store: Store, good: pl.DataFrame, territory: _Territory | None = None):
    outlets = store.sql("SELECT outlet_id, branch_id FROM outlets")
    good = good.join(outlets, on="outlet_id", how="left")
    unknown = good.filter(pl.col("branch_id").is_null())
    ok = good.filter(pl.col("branch_id").is_not_null()).unique("courier_id", keep="last")
    foreign = None
    if territory is not None:
        ok, foreign = territory.keep_own(ok, [("couriers", "courier_id"), ("devices", "device_id")])
    dup = len(good) - len(unknown) - len(ok) - (len(foreign) if foreign is not None else 0)
    store.upsert("couriers", ok.drop("_row", "device_id"), "courier_id")
    store.upsert(
        "devices",
        ok.select("device_id", "courier_id", pl.lit(None, dtype=pl.String).alias("vehicle_id")),
        "device_id",
    )
    refused = _refuse(unknown, "unknown outlet '{}'", "outlet_id")
    if foreign is not None:
        refused = pl.concat([refused, foreign])
    return len(ok), dup, refused


def _refuse(frame: pl.DataFrame, reason: str, column: str | None = None) -> pl.DataFrame:
    """``frame``'s rows refused for ``reason`` (``{}`` in it: the row's ``column``)."""
    why = pl.format(reason, pl.col(column)) if column else pl.lit(reason)
    return _refuse_with_reason(frame.with_columns(why.alias("reason")))


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
