"""The store's own bookkeeping: ids as keys in ping_rows, and stores of older versions."""

from datetime import datetime

import duckdb
import polars as pl
from polars.testing import assert_frame_equal

from data.store.database import PING_FIELDS, Store

OLD_PINGS = """
    device_id VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, lat DOUBLE NOT NULL, lng DOUBLE NOT NULL,
    speed REAL, heading REAL, accuracy REAL, courier_id VARCHAR, vehicle_id VARCHAR,
    cell UBIGINT NOT NULL, branch_id VARCHAR NOT NULL"""


def _old_rows() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "device_id": ["dev-1", "dev-1", "dev-2", "dev-3"],
            "ts": [datetime(2026, 11, 20, 1, m) for m in (0, 1, 0, 5)],
            "lat": [22.53, 22.531, 31.2, 31.21],
            "lng": [113.93, 113.931, 121.4, 121.41],
            "speed": [1.0, None, 3.5, 0.0],
            "heading": [90.0, None, 180.0, None],
            "accuracy": [5.0, 6.0, None, 3.0],
            "courier_id": ["c-1", "c-1", None, "c-3"],
            "vehicle_id": [None, None, "v-2", None],
            "cell": [1, 1, 2, 3],
            "branch_id": ["b-440305", "b-440305", "b-310101", "b-310101"],
        },
        schema_overrides={
            "speed": pl.Float32,
            "heading": pl.Float32,
            "accuracy": pl.Float32,
            "cell": pl.UInt64,
        },
    )


def test_pings_of_an_older_store_move_to_ping_rows_unchanged(tmp_path):
    path = tmp_path / "old.duckdb"
    Store(path).close()
    # a store of the previous version: pings as a table with text ids in every row
    con = duckdb.connect(str(path))
    con.execute("DROP VIEW pings")
    con.execute(f"CREATE TABLE pings ({OLD_PINGS})")
    old = _old_rows()
    con.execute("INSERT INTO pings SELECT * FROM old")
    con.close()

    for _ in range(2):  # opening again changes nothing
        with Store(path) as store:
            assert store.scalar("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'pings'") == 0
            assert store.scalar("SELECT count(*) FROM duckdb_views() WHERE view_name = 'pings'") == 1
            assert store.scalar("SELECT count(*) FROM ping_rows") == old.height
            got = store.sql(f"SELECT {', '.join(PING_FIELDS)} FROM pings ORDER BY device_id, ts")
            assert_frame_equal(got, old.sort("device_id", "ts"), check_dtypes=False)
            # one key per id, however many rows and columns name it
            assert store.scalar("SELECT count(*) - count(DISTINCT id) FROM id_keys") == 0
            assert store.scalar("SELECT count(*) - count(DISTINCT key) FROM id_keys") == 0
            assert store.scalar("SELECT count(*) FROM id_keys WHERE id = 'b-310101'") == 1


def test_reference_ids_get_keys_when_stored(tmp_path):
    with Store(tmp_path / "s.duckdb") as store:
        store.upsert(
            "devices",
            pl.DataFrame(
                {
                    "device_id": ["d-9"],
                    "courier_id": ["c-9"],
                    "vehicle_id": pl.Series([None], dtype=pl.String),
                }
            ),
            "device_id",
        )
        store.upsert(
            "devices",
            pl.DataFrame(
                {
                    "device_id": ["d-9"],
                    "courier_id": ["c-10"],
                    "vehicle_id": pl.Series([None], dtype=pl.String),
                }
            ),
            "device_id",
        )
        owners = store.device_owners()
        keys = dict(store.sql("SELECT id, key FROM id_keys").rows())
        assert set(keys) == {"d-9", "c-9", "c-10"} and len(set(keys.values())) == 3
        assert owners.row(0, named=True) == {
            "device_id": "d-9",
            "courier_id": "c-10",
            "vehicle_id": None,
            "device_key": keys["d-9"],
            "courier_key": keys["c-10"],
            "vehicle_key": None,
        }


def test_owners_of_rows_equal_a_join_of_every_row(tmp_path):
    # Runs of one device are joined once: the result must be what a join of every row
    # gives, in row order, whether the rows come in long runs, shuffled, or unknown.
    import numpy as np

    with Store(tmp_path / "s.duckdb") as store:
        store.upsert(
            "devices",
            pl.DataFrame(
                {
                    "device_id": ["d-1", "d-2", "d-3"],
                    "courier_id": ["c-1", None, "c-3"],
                    "vehicle_id": [None, "v-2", None],
                }
            ),
            "device_id",
        )
        rng = np.random.default_rng(3)
        ids = np.array(["d-1", "d-2", "d-3", "d-unknown"])
        runs = pl.Series("device_id", np.repeat(ids, rng.integers(50, 200, 4)))
        shuffled = pl.Series("device_id", ids[rng.integers(0, 4, 2_000)])
        for devices in (runs, shuffled, runs.head(1), runs.clear()):
            want = (
                devices.to_frame()
                .join(store.device_owners(), on="device_id", how="left", maintain_order="left")
                .drop("device_id")
            )
            assert_frame_equal(store._owners_of(devices), want)
        assert store._owners_of(runs)["vehicle_key"].drop_nulls().n_unique() == 1
