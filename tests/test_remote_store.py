"""The store of another process (data/store/remote.py): a real DuckDB file owned by a
QueryServer, read and written through RemoteStore as a web worker does, and compared with
the same statements run locally."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from data.store.database import Store
from data.store.remote import QueryServer, RemoteStore


@pytest.fixture
def pair(tmp_path):
    """(owner's store, a remote store of it)."""
    store = Store(tmp_path / "owned.duckdb")
    con = store.cursor()
    con.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, name VARCHAR, seen TIMESTAMP, amount DECIMAL(9, 2))")
    con.execute(
        "INSERT INTO t VALUES (1, 'a', TIMESTAMP '2026-12-04 08:00:00', 1.50), "
        "(2, '<b>x</b>', TIMESTAMP '2026-12-04 09:30:00', 2.25)"
    )
    server = QueryServer(store, tmp_path / "q.sock").start()
    remote = RemoteStore(server.path, store.path)
    yield store, remote
    remote.close()
    server.close()
    store.close()


def test_the_socket_is_for_this_account_only(pair, tmp_path):
    assert oct((tmp_path / "q.sock").stat().st_mode & 0o777) == "0o600"


def test_rows_and_frames_are_what_a_local_cursor_gives(pair):
    store, remote = pair
    query = "SELECT k, name, seen, amount, sum(k) OVER () AS total, k / 2 AS half FROM t ORDER BY k"
    assert remote.cursor().execute(query).fetchall() == store.cursor().execute(query).fetchall()
    assert remote.cursor().execute(query).fetchone() == (
        1,
        "a",
        datetime(2026, 12, 4, 8, 0),
        Decimal("1.50"),
        3,
        0.5,
    )
    assert remote.sql(query).equals(store.sql(query))
    assert remote.scalar("SELECT count(*) FROM t WHERE name = ?", ["<b>x</b>"]) == 1
    cur = remote.cursor().execute("SELECT k AS key_of_row, name FROM t")
    assert [d[0] for d in cur.description] == ["key_of_row", "name"]


def test_duckdb_errors_arrive_as_their_own_classes(pair):
    _, remote = pair
    with pytest.raises(duckdb.ConstraintException, match="Duplicate key"):
        remote.cursor().execute("INSERT INTO t VALUES (1, 'again', NULL, NULL)")
    with pytest.raises(duckdb.CatalogException):
        remote.cursor().execute("SELECT * FROM no_such_table")
    # the connection is still good after an error
    assert remote.scalar("SELECT count(*) FROM t") == 2


def test_a_transaction_and_a_registered_frame_stay_on_their_cursor(pair):
    store, remote = pair
    con = remote.cursor()
    con.execute("BEGIN")
    con.execute("INSERT INTO t VALUES (3, 'c', NULL, NULL)")
    assert con.execute("SELECT count(*) FROM t").fetchone() == (3,)
    assert store.scalar("SELECT count(*) FROM t") == 2  # not committed: unseen elsewhere
    con.execute("ROLLBACK")
    assert store.scalar("SELECT count(*) FROM t") == 2

    frame = pl.DataFrame({"k": [1, 2, 9], "extra": ["one", "two", "nine"]})
    con.register("incoming", frame)
    joined = con.execute("SELECT t.k, extra FROM t JOIN incoming USING (k) ORDER BY k").fetchall()
    assert joined == [(1, "one"), (2, "two")]
    con.unregister("incoming")
    with pytest.raises(duckdb.CatalogException):
        con.execute("SELECT * FROM incoming")


def test_writes_reach_the_owners_file(pair):
    store, remote = pair
    remote.cursor().executemany("INSERT INTO t (k, name) VALUES (?, ?)", [[10, "ten"], [11, "eleven"]])
    row = pl.DataFrame({"k": [12], "name": ["twelve"], "seen": [None], "amount": [None]})
    remote._con.from_arrow(row.to_arrow()).insert_into("t")  # how bulk loads append
    remote.set_meta("remote-test", "yes")
    assert store.scalar("SELECT count(*) FROM t WHERE k >= 10") == 3
    assert store.meta("remote-test") == "yes"
    at = datetime(2026, 12, 4, 10, tzinfo=UTC).replace(tzinfo=None)
    remote.cursor().execute("UPDATE t SET seen = ? WHERE k = 10", [at])
    assert store.scalar("SELECT seen FROM t WHERE k = 10") == at


def test_threads_each_get_their_own_cursor(pair):
    store, remote = pair
    errors: list[BaseException] = []

    def reader(n: int) -> None:
        try:
            for _ in range(20):
                assert remote.scalar("SELECT count(*) + ? FROM t", [n]) == 2 + n
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_a_gone_owner_is_a_clear_error(pair, tmp_path):
    store, _ = pair
    server = QueryServer(store, tmp_path / "other.sock").start()
    remote = RemoteStore(server.path, store.path)
    server.close()
    with pytest.raises(duckdb.ConnectionException, match="owner"):
        remote.scalar("SELECT 1")


def test_the_threads_answering_workers_can_be_scheduled_lower(pair, tmp_path):
    store, _ = pair
    server = QueryServer(store, tmp_path / "nice.sock", nice=7).start()
    remote = RemoteStore(server.path, store.path)
    try:
        assert remote.scalar("SELECT 41 + 1") == 42
        nice = {
            int(task.name): int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])
            for task in Path("/proc/self/task").iterdir()
        }
        assert 7 in nice.values(), nice  # the thread that answered
        assert nice[threading.get_native_id()] == 0  # this process's other threads are not lowered
    finally:
        remote.close()
        server.close()
