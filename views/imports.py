"""Import rules: who may import a file from the dashboard, and whose imports they see.

The ``imports`` row of the administration rights (``docs/admin.md``): an admin imports
anywhere and sees every import; a manager imports only inside their subtree (the rows
outside it are quarantined with the reason, and no outlet, courier or device stored
outside it is overwritten: :mod:`data.ingest.uploads` holds the file to their node) and
sees the imports held to a node of their subtree; a viewer has neither. Every function
takes the :class:`~auth.viewer.Viewer` of the request and checks the right first; a
right not held raises :class:`~auth.viewer.OutsideScope` (403 and an audit line).
"""

from __future__ import annotations

import polars as pl

from auth import users
from auth.viewer import OutsideScope, Viewer
from data.ingest.importer import KINDS, ImportFileError
from data.ingest.uploads import ImportBusy, TooLarge, UploadResult, Uploads
from data.store import imports as history
from layers.escape import csv_frame
from views.admin import AdminError, is_admin, require_page

#: ``ImportBusy`` and ``TooLarge`` (raised by :func:`import_file`, answered by the page)
#: and ``Uploads`` are re-exported for the page, which reaches ingest only through here.
__all__ = ["ImportBusy", "TooLarge", "Uploads", "get", "import_file", "quarantine_csv", "rejected", "visible"]

PAGE = "imports"
#: Imports listed on the page at most.
HISTORY_ROWS = 500


def refusal(viewer: Viewer) -> str:
    """The quarantine reason of a manager's row outside their subtree."""
    return f"outside node '{viewer.root}': {viewer.label} imports only inside it"


def file_name(name) -> str:
    """The file's name as sent by the browser, kept as text (never used as a path; a
    Windows path some browsers put before it is dropped, a ``/`` is part of the name).

    Examples
    --------
    >>> file_name("C:\\\\fakepath\\\\pings.csv"), file_name("<b>a</b>.csv"), file_name(None)
    ('pings.csv', '<b>a</b>.csv', 'upload')
    """
    text = name if isinstance(name, str) else ""
    text = text.rsplit("\\", 1)[-1].strip()
    return text[:200] or "upload"


def import_file(
    store, uploads: Uploads, viewer: Viewer, stream, name, kind=None, progress=None
) -> UploadResult:
    """Import an uploaded file for ``viewer``: anywhere for an admin, inside their subtree
    for a manager. The import is recorded in the history and audited.

    Raises
    ------
    OutsideScope
        The viewer may not import (a viewer role).
    AdminError
        An unknown kind.
    data.ingest.uploads.ImportBusy, data.ingest.uploads.TooLarge, ImportFileError
        As :meth:`data.ingest.uploads.Uploads.import_upload` (nothing was stored).
    """
    require_page(viewer, PAGE)
    kind = kind if isinstance(kind, str) and kind else None
    if kind is not None and kind not in KINDS:
        raise AdminError(f"the kind is one of {', '.join(KINDS)}")
    name = file_name(name)
    node = None if is_admin(viewer) else viewer.root
    try:
        result = uploads.import_upload(
            stream,
            name,
            kind,
            scope_node=node,
            progress=progress,
            # the same file from the same person keeps one source, so that importing it
            # again quarantines none of its rejected rows twice
            source=f"page /admin/imports {name} ({viewer.label})",
            refusal=refusal(viewer),
            who=viewer.label,
            channel="page",
        )
    except ImportFileError as exc:
        raise ImportFileError(str(exc).replace(str(uploads.spool_dir), "upload")) from None
    users.audit(
        store,
        viewer.label,
        "import",
        f"{name} ({result.kind}, node={node or 'any'}): {result.rows} rows = {result.accepted} accepted "
        f"+ {result.rejected} rejected + {result.duplicates} duplicates [{result.import_id}]",
    )
    return result


def _visible(viewer: Viewer, row: dict) -> bool:
    return is_admin(viewer) or viewer.holds(row.get("scope_node"))


def visible(store, viewer: Viewer, limit: int = HISTORY_ROWS) -> pl.DataFrame:
    """The imports the viewer may see, newest first: every one for an admin; for a
    manager those held to a node of their subtree (an import held to no node wrote
    anywhere: admins only)."""
    require_page(viewer, PAGE)
    frame = history.list_imports(store, limit if is_admin(viewer) else 100_000)
    if not is_admin(viewer):
        frame = frame.filter(pl.col("scope_node").is_in(sorted(viewer.nodes))).head(limit)
    return frame


def get(store, viewer: Viewer, import_id) -> dict:
    """One import the viewer may see (:class:`OutsideScope` for any other id, so that the
    answer says nothing of imports outside the subtree)."""
    require_page(viewer, PAGE)
    row = history.get_import(store, import_id) if isinstance(import_id, str) else None
    if row is None or not _visible(viewer, row):
        raise OutsideScope(f"import {str(import_id)[:20]!r} is not one of {viewer.root}")
    return row


def rejected(store, viewer: Viewer, import_id, limit: int = 20) -> tuple[dict, pl.DataFrame]:
    """One import the viewer may see (:func:`get`) and the first ``limit`` of its rejected
    rows (``row_number, reason, raw``), to show on the page."""
    row = get(store, viewer, import_id)
    return row, history.quarantined(store, row["quarantine_source"], limit)


def quarantine_csv(store, viewer: Viewer, import_id) -> tuple[str, str]:
    """``(file name, CSV text)`` of the rejected rows of one import the viewer may see:
    ``row_number, reason, raw``, every cell safe from spreadsheet formulas. Audited as
    an export."""
    row = get(store, viewer, import_id)
    frame = csv_frame(history.quarantined(store, row["quarantine_source"]))
    users.audit(
        store,
        viewer.label,
        "export",
        f"quarantine report of import {row['import_id']} ({row['file_name'][:100]}): {len(frame)} rows",
    )
    return f"emap-import-{row['import_id']}-rejected.csv", frame.write_csv()
