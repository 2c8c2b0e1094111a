"""The dashboard over a lake: a store whose operations data are views of Parquet partitions.

The lake may have been written by the Spark job on a cluster or by another EMAP's export;
this process only reads it. Its own DuckDB file holds the reference tables (copied from
the lake at start) and what belongs to this installation (users, sessions, decisions).
Views read the partitions at query time, so days added to a dataset appear without a
restart (but for the names of child nodes under new cells); a dataset that had no file
at start appears after :meth:`LakeStore.refresh`.
"""

from __future__ import annotations

from pathlib import Path

from data.store.database import Store
from lake import layout

#: Store names answered by lake datasets.
VIEWS = {
    "pings": "clean_pings",
    "parcel_events": "clean_parcel_events",
    "cube_hourly": "fine_hourly",
    "cube_presence": "fine_presence",
    "cube_hourly_coarse": "coarse_hourly",
    "cube_presence_coarse": "coarse_presence",
}


class LakeError(RuntimeError):
    """The lake cannot be served (no tree, or not a lake)."""


class LakeStore(Store):
    """A :class:`~data.store.database.Store` reading operations data from ``lake``.

    Headquarters and division views (resolution up to ``layout.COARSE_RES``, and figures
    per node) read only the coarse tier; region and branch views read the fine tier.
    Writing operations records is refused: the lake is written by its own pipeline.
    """

    def __init__(self, path: str | Path, lake: str | Path, memory_limit: str = "1GB"):
        self.lake = Path(lake)
        if not (self.lake / "reference" / "nodes.parquet").is_file():
            raise LakeError(
                f"{self.lake} is not an EMAP lake: reference/nodes.parquet is missing "
                "(write one with 'python app.py lake export' or the Spark job)"
            )
        super().__init__(path, memory_limit=memory_limit)
        self._coarse = False
        self.refresh()

    def refresh(self) -> None:
        """Reload the reference tables and point every view at the lake's datasets."""
        with self._write_lock:
            con = self._con
            con.execute("BEGIN")
            try:
                for table in layout.REFERENCE_TABLES:
                    path = self.lake / "reference" / f"{table}.parquet"
                    con.execute(f"DELETE FROM {table}")
                    if path.is_file():
                        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet('{path}')")
                for name, dataset in VIEWS.items():
                    self._drop(name)
                    if layout.has_files(self.lake, dataset):
                        con.execute(f"CREATE VIEW {name} AS {layout.read_sql(self.lake, dataset)}")
                    else:
                        cols = ", ".join(
                            f"{c} {t}" for c, t in layout.table_columns(layout.DATASETS[dataset].table)
                        )
                        con.execute(f"CREATE TABLE {name} ({cols})")
                # Cell -> branch, for naming the child node under a hex: the fine tier's
                # cells, else the coarse tier's (res 6, enough for HQ and division views).
                con.execute("DELETE FROM cell_branch")
                for table in ("cube_hourly", "cube_hourly_coarse"):
                    con.execute(f"INSERT INTO cell_branch SELECT DISTINCT cell, branch_id FROM {table}")
                    if con.execute("SELECT count(*) FROM cell_branch").fetchall()[0][0]:
                        break
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            self._coarse = layout.has_files(self.lake, "coarse_hourly")
            self._locator = None
            self._node_ids = None  # the lake's tree may have changed

    def _drop(self, name: str) -> None:
        kind = self._con.execute(
            "SELECT 'VIEW' FROM duckdb_views() WHERE view_name = $n AND NOT internal "
            "UNION ALL SELECT 'TABLE' FROM duckdb_tables() WHERE table_name = $n",
            {"n": name},
        ).fetchone()
        if kind:
            self._con.execute(f"DROP {kind[0]} {name}")

    def cube_sources(self, res: int | None) -> tuple[str, str]:
        if self._coarse and (res is None or res <= layout.COARSE_RES):
            return "cube_hourly_coarse", "cube_presence_coarse"
        return "cube_hourly", "cube_presence"

    def commit(self, table: str, ready) -> tuple[int, int]:
        raise LakeError(
            "this store reads its records from a lake; load them into the lake "
            "('python app.py lake spark') instead"
        )

    stage = commit
