# ruff: noqa: F811  (the shared ingest fixtures are imported by name and used as arguments)
"""A fix is stored once, however it comes again, while a commit looks for repeats in
``ping_rows`` only among fixes not newer than their device's newest stored one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from data.ingest.validate import check_pings
from data.store.database import Store
from tests.ingest_support import copy_store, template  # noqa: F401

T0 = datetime(2025, 11, 23, 2, 0, tzinfo=UTC)


def fixes(device: str, seconds: range) -> pl.DataFrame:
    """Validated fixes of ``device`` at ``T0 + s`` for each s of ``seconds`` (Shenzhen)."""
    n = len(seconds)
    frame = pl.DataFrame(
        {
            "device_id": [device] * n,
            "ts": [T0 + timedelta(seconds=s) for s in seconds],
            "lat": [22.5431] * n,
            "lng": [114.0579] * n,
        }
    ).with_row_index("_row", offset=1)
    return check_pings(frame)[0]


class _Watched(Store):
    """A real store noting, for each commit of pings, how many of its fixes it looked for."""

    looked_for: list[int | None]

    def _drop_stored(self, con, table, rows, maybe=None):
        self.looked_for.append(None if maybe is None else len(maybe))
        return super()._drop_stored(con, table, rows, maybe)


def test_fixes_newer_than_their_devices_are_not_looked_for_and_repeats_are_caught(template, tmp_path):
    path, _ = template
    with _Watched(copy_store(path, tmp_path / "emap.duckdb")) as store:
        store.looked_for = []
        assert store.ingest_pings(fixes("dev-001", range(0, 10)))[:2] == (10, 0)
        assert store.ingest_pings(fixes("dev-001", range(10, 20)))[:2] == (10, 0)  # all newer
        assert store.ingest_pings(fixes("dev-002", range(0, 5)))[:2] == (5, 0)  # a new device
        # repeats among new fixes, and a fix older than the newest that is not a repeat
        again = pl.concat([fixes("dev-001", range(15, 25)), fixes("dev-001", range(100, 101))])
        late = fixes("dev-002", range(-30, -29))
        assert store.ingest_pings(pl.concat([again, late]).drop("_row").with_row_index("_row", 1))[:2] == (
            7,
            5,
        )
        # the first three commits looked for none of their fixes (each newer than its
        # device's newest, or of a device with none); the fourth for dev-001's 5 repeats
        # and dev-002's late fix only
        assert store.looked_for == [0, 0, 0, 6]
        assert store.scalar("SELECT count(*) FROM pings") == 10 + 10 + 5 + 7


def test_fixes_stored_by_a_file_import_are_repeats_for_the_live_writer(template, tmp_path):
    path, _ = template
    with Store(copy_store(path, tmp_path / "emap.duckdb")) as store:
        assert store.ingest_pings(fixes("dev-003", range(0, 5)))[:2] == (5, 0)  # the writer knows dev-003
        ready, _ = store.prepare_pings(fixes("dev-003", range(5, 15)))
        store.stage("pings", ready)
        assert store.commit_staged("pings") == (10, 0)  # a file import, past the writer
        # the same fixes sent live are repeats, though newer than what the writer stored
        assert store.ingest_pings(fixes("dev-003", range(5, 16)))[:2] == (1, 10)
        assert store.scalar("SELECT count(*) FROM pings") == 16
