"""Files sent to the server: ``POST /api/v1/import`` and the dashboard's import page.

An uploaded file is copied to a spool file under ``data_dir/uploads`` in chunks (memory
stays flat however large it is, up to ``import_max_bytes``), then imported as the import
command imports a file (:func:`data.ingest.importer.import_file`), with two differences:

* every batch is committed on its own (deduplicated, with its cube), with a pause
  between batches, so that live ingest and the dashboard keep writing and reading the
  store while a large file goes in; importing the file again stores nothing twice and
  quarantines none of its rejected rows twice;
* a token bound to a node imports only records inside that node's branches, and never
  overwrites an outlet, courier or device stored outside them (those rows are
  quarantined with the reason).

One import runs at a time per server: :class:`Uploads` holds the lock, and a second
import asked for meanwhile gets :class:`ImportBusy` at once (the API answers 409).
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from config import Settings
from data.ingest import validate
from data.ingest.importer import (
    CSV_SUFFIXES,
    KINDS,
    PARQUET_SUFFIXES,
    ImportFileError,
    NodeScope,
    import_file,
)
from data.ingest.quarantine import Quarantine
from data.store import imports as history
from data.store.database import Store

log = logging.getLogger(__name__)

#: Bytes read from the request at a time.
CHUNK_BYTES = 1 << 20
#: Rows per batch, each committed on its own: live commits wait for the import's batch
#: under way. Measured on 10 M rows (bench_import.py --via-server, 2 cores, loaded): 500 k
#: rows kept 107 % of the command line's rate with live acks at p99 9.2 s, 100 k rows 61 %
#: and 5.2 s, 250 k rows 72 % and 4.1 s (0.13 s idle).
BATCH_ROWS = 250_000


class ImportBusy(RuntimeError):
    """Another import is running on this server; try again once it is done."""


class TooLarge(ValueError):
    """The upload is larger than ``import_max_bytes``; nothing was stored."""


#: The counts of an import, in the order its answer gives them (``ImportReport.counts``).
COUNTS = ("kind", "rows", "accepted", "rejected", "duplicates")


@dataclass
class UploadResult:
    """What became of an uploaded file: ``rows = accepted + rejected + duplicates``."""

    kind: str
    rows: int
    accepted: int
    rejected: int
    duplicates: int
    #: ``source`` of its rejected rows in the ``quarantine`` table.
    quarantine_source: str
    #: ``(line, reason)`` of its first rejected rows (a CSV file's line, 1 = the header;
    #: a Parquet file's row).
    rejected_lines: list[tuple[int, str]] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    #: Its row in the ``imports`` table (None: not recorded, no ``who`` was given).
    import_id: str | None = None

    def as_json(self) -> dict:
        """The answer of ``POST /api/v1/import``."""
        return {
            **{k: getattr(self, k) for k in COUNTS},
            "quarantine_source": self.quarantine_source,
            "import_id": self.import_id,
            "rejected_lines": [{"line": n, "reason": why} for n, why in self.rejected_lines],
        }


class Uploads:
    """Imports of uploaded files into the store of this process, one at a time.

    Parameters
    ----------
    store : Store
        The store of the serving process.
    settings : Settings
        ``data_dir`` (the spool folder is ``data_dir/uploads``), ``import_max_bytes``,
        ``local_tz``, the ingest limits and the quarantine caps.
    quarantine : Quarantine, optional
        Share the quarantine (and its counts) of live ingest.

    Examples
    --------
    >>> uploads = Uploads(store, settings)                                # doctest: +SKIP
    >>> with open("pings-monday.csv", "rb") as fh:                        # doctest: +SKIP
    ...     result = uploads.import_upload(fh, "pings-monday.csv", progress=print)
    >>> result.accepted + result.rejected + result.duplicates == result.rows  # doctest: +SKIP
    True
    """

    def __init__(self, store: Store, settings: Settings, quarantine: Quarantine | None = None):
        self.store, self.settings = store, settings
        self.quarantine = quarantine or Quarantine.from_settings(store, settings)
        self.limits = validate.Limits.from_settings(settings)
        self.max_bytes = settings.import_max_bytes
        self.spool_dir = Path(settings.data_dir) / "uploads"
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        """An import is running."""
        return self._lock.locked()

    def import_upload(
        self,
        stream: BinaryIO,
        name: str,
        kind: str | None = None,
        scope_node: str | None = None,
        progress: Callable[[int, int | None], None] | None = None,
        source: str | None = None,
        refusal: str = "",
        who: str | None = None,
        channel: str = "api",
    ) -> UploadResult:
        """Spool ``stream`` (anything with ``read(n)``) and import it.

        Parameters
        ----------
        stream : binary file-like
            The file's bytes; read in chunks of :data:`CHUNK_BYTES` up to ``import_max_bytes``.
        name : str
            The file's original name: its type (``.csv``, ``.tsv``, ``.parquet``; else
            told from its first bytes) and, unless ``kind`` is given, its kind (a name
            holding ``ping``, ``event``/``scan``, ``outlet`` or ``courier``; else its columns).
        kind : str, optional
            ``pings``, ``parcel_events``, ``outlets`` or ``couriers``.
        scope_node : str, optional
            Only records inside this node's branches are imported, and no outlet,
            courier or device stored outside them is overwritten (a token bound to a node).
        progress : callable, optional
            ``progress(rows done, total rows or None)`` after every batch.
        source : str, optional
            The quarantine's ``source`` for its rejected rows (default ``upload <name>``);
            keep it the same for the same file so that a re-import quarantines nothing twice.
        refusal : str, optional
            The reason given to rows outside ``scope_node``.
        who : str, optional
            Who imports (a user, a token's name): the import is written to the
            ``imports`` table (:mod:`data.store.imports`) with ``channel``.
        channel : str
            ``api`` or ``page``: where the file came from.

        Raises
        ------
        ImportBusy
            Another import is running (nothing was read).
        TooLarge
            The file is over ``import_max_bytes`` (nothing was stored).
        ImportFileError
            The file cannot be read at all, or ``kind`` is unknown (nothing was stored).
        """
        if kind is not None and kind not in KINDS:
            raise ImportFileError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
        if not self._lock.acquire(blocking=False):
            raise ImportBusy("another import is running on this server; try again when it is done")
        spool = None
        try:
            t0 = time.perf_counter()
            spool, size = self._spool(stream, name)
            source = source or f"upload {name}"
            scope = NodeScope(scope_node, refusal) if scope_node else None
            report = import_file(
                self.store,
                spool,
                kind=kind,
                batch_rows=BATCH_ROWS,
                local_tz=self.settings.local_tz,
                progress=progress,
                limits=self.limits,
                quarantine=self.quarantine,
                source=source,
                scope=scope,
                each_batch=True,
            )
        except ImportFileError as exc:
            raise ImportFileError(str(exc).replace(str(spool), name) if spool else str(exc)) from None
        else:
            seconds = time.perf_counter() - t0
            log.info("import of %s: %s (%.1f s)", source, report.line(), seconds)
            result = UploadResult(
                **report.counts(),
                quarantine_source=source,
                rejected_lines=report.samples,
                bytes=size,
                seconds=seconds,
            )
            if who is not None:
                result.import_id = history.record(
                    self.store,
                    user_id=who,
                    channel=channel,
                    file_name=name,
                    scope_node=scope_node,
                    **report.counts(),
                    quarantine_source=source,
                    bytes=size,
                    seconds=seconds,
                )
            return result
        finally:
            if spool is not None:
                spool.unlink(missing_ok=True)
            self._lock.release()

    def _spool(self, stream: BinaryIO, name: str) -> tuple[Path, int]:
        """Copy ``stream`` to a new spool file: ``(its path, its size)``."""
        self.spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.spool_dir / f"{uuid.uuid4().hex[:12]}-{spool_name(name)}"
        size = 0
        try:
            with open(path, "xb") as out:
                while chunk := stream.read(CHUNK_BYTES):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise TooLarge(f"file larger than {self.max_bytes} bytes (EMAP_IMPORT_MAX_BYTES)")
                    out.write(chunk)
            if path.suffix.lower() not in CSV_SUFFIXES + PARQUET_SUFFIXES:
                with open(path, "rb") as fh:
                    magic = fh.read(4)
                path = path.rename(path.with_name(path.name + (".parquet" if magic == b"PAR1" else ".csv")))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path, size


def spool_name(name: str) -> str:
    """A file name safe on disk that keeps the words and type of ``name``.

    Examples
    --------
    >>> spool_name("../../etc/深圳 pings 11-20.CSV")
    'pings_11-20.CSV'
    >>> spool_name("")
    'upload'
    """
    base = re.split(r"[\\/]", name)[-1]
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._")[-100:]
    return safe or "upload"
