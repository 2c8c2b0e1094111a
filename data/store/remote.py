"""The store of another process: cursors whose statements run in the process that owns it.

DuckDB lets one process open a database file. When the dashboard's callbacks run in web
worker processes (``python app.py serve --web-processes N``), the serving process keeps
the store, its ingest and its writer, and each worker reads (and, for the few writes a
callback makes: audit lines, sessions) through :class:`RemoteStore`, whose cursors send
every statement to a :class:`QueryServer` of the owner and get the results back: frames as
Arrow (no copy of values through Python), rows as Python values.

Each remote cursor holds one connection and one real DuckDB cursor in the owner for its
whole life, so a transaction (``BEGIN`` ... ``COMMIT``) and a registered frame stay on
the cursor that made them, as they do with a local cursor. The owner runs the statement
on a thread of its own: DuckDB works without the interpreter lock, so a worker's query
costs the owner's Python only the framing, and the owner's ingest is not held up.

Both ends are processes of one account: the socket lives in a directory only that
account can enter, and the owner checks every connection's peer with ``SO_PEERCRED``.
Messages are pickled (values of any DuckDB type, exceptions with their class); they only
ever travel between the owner and the workers it started itself.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import socket
import struct
import threading
import warnings
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from data.store import tracking
from data.store.database import Store, _CellBranchCache

log = logging.getLogger(__name__)

_LENGTH = struct.Struct(">Q")
#: Results larger than this are refused with a clear error rather than filling memory.
MAX_MESSAGE = 1 << 31
# A remote cursor fetches Arrow from a DB-API result (it cannot know at ``execute`` what
# will be fetched): DuckDB warns of the copy each time. The copy is the price of the
# cursor's interface; the warning would only fill the log.
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)

#: Connections a worker keeps open for reuse (more are opened when its threads need them).
POOL_SIZE = 32


class RemoteError(RuntimeError):
    """The owner of the store cannot be reached or broke the conversation."""


def _send(sock: socket.socket, message) -> None:
    data = pickle.dumps(message, protocol=5)
    sock.sendall(_LENGTH.pack(len(data)) + data)


def _receive(sock: socket.socket):
    head = _read_exact(sock, _LENGTH.size)
    (n,) = _LENGTH.unpack(head)
    if n > MAX_MESSAGE:
        raise RemoteError(f"message of {n} bytes is over the limit of {MAX_MESSAGE}")
    return pickle.loads(_read_exact(sock, n))


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise RemoteError("the store's owner closed the connection")
        got += k
    return bytes(buf)


# -- the owner's side --------------------------------------------------------------------------
class QueryServer:
    """Runs the statements of remote cursors on ``store``, one thread per connection.

    Parameters
    ----------
    store : Store
        The store this process owns.
    path : str or Path
        The Unix socket to listen on (its directory should be private to this account).
    nice : int
        How much lower than the rest of this process the threads answering remote
        cursors are scheduled (Linux schedules threads one by one): a statement of a web
        worker runs on them, and this process's own work (ingest) goes first.
    """

    def __init__(self, store: Store, path: str | Path, nice: int = 0):
        self.store, self.path, self.nice = store, Path(path), nice
        self._sock: socket.socket | None = None
        self._closing = False
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> QueryServer:
        self.path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # 0600 from the start: no moment where others could connect
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        sock.listen(256)
        self._sock = sock
        threading.Thread(target=self._accept, name="emap-query-accept", daemon=True).start()
        return self

    def close(self) -> None:
        self._closing = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
        with self._lock:
            for conn in list(self._conns):
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.path.unlink(missing_ok=True)

    def _accept(self) -> None:
        while not self._closing:
            try:
                conn, _ = self._sock.accept()  # type: ignore[union-attr]
            except OSError:
                return
            if not _same_account(conn):
                log.warning("a process of another account tried the store's query socket")
                conn.close()
                continue
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="emap-query", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        if self.nice > 0:
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)  # this thread only
            except OSError:
                pass
        cursor = None
        try:
            while True:
                try:
                    request = _receive(conn)
                except (RemoteError, OSError, EOFError):
                    return
                op = request[0]
                if op == "fresh":  # the first operation of a new remote cursor: a fresh DuckDB cursor
                    if cursor is not None:
                        cursor.close()
                    cursor = self.store.cursor()
                    request = request[1]
                if cursor is None:
                    _send(conn, ("error", "RemoteError", "no cursor open"))
                    continue
                try:
                    _send(conn, ("ok", _run(cursor, request)))
                except duckdb.Error as exc:
                    _send(conn, ("error", type(exc).__name__, str(exc)))
                except Exception as exc:  # noqa: BLE001  (said to the worker, which raises it)
                    _send(conn, ("error", "InvalidInputException", f"{type(exc).__name__}: {exc}"))
        finally:
            if cursor is not None:
                try:
                    cursor.close()
                except duckdb.Error:
                    pass
            with self._lock:
                self._conns.discard(conn)
            conn.close()


def _run(cursor, request):
    """One operation of a remote cursor on the real one; returns what travels back."""
    op = request[0]
    if op == "execute":
        _, sql, params = request
        cursor.execute(sql, params) if params is not None else cursor.execute(sql)
        return _description(cursor)
    if op == "executemany":
        cursor.executemany(request[1], request[2])
        return _description(cursor)
    if op == "fetchall":
        return cursor.fetchall()
    if op == "fetchone":
        return cursor.fetchone()
    if op == "arrow":
        return cursor.to_arrow_table()
    if op == "register":
        cursor.register(request[1], request[2])
        return None
    if op == "unregister":
        cursor.unregister(request[1])
        return None
    if op == "insert_arrow":  # bulk loads: ``from_arrow(table).insert_into(name)``
        cursor.from_arrow(request[1]).insert_into(request[2])
        return None
    raise ValueError(f"unknown operation {op!r}")


def _description(cursor):
    """The DB-API description, with the types as their names (DuckDB's type objects do
    not travel)."""
    try:
        described = cursor.description
    except duckdb.Error:
        return None
    if described is None:
        return None
    return [(d[0], str(d[1]), *d[2:]) for d in described]


def _same_account(conn: socket.socket) -> bool:
    """The peer is a process of this account (or root), as the kernel says."""
    try:
        _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    except OSError:
        return False
    return uid in (os.getuid(), 0)


# -- a worker's side ---------------------------------------------------------------------------
class _Pool:
    """Open connections to the owner, reused by one cursor after another."""

    def __init__(self, path: str | Path, size: int = POOL_SIZE):
        self.path, self.size = str(path), size
        self._idle: queue.LifoQueue[socket.socket] = queue.LifoQueue()

    def take(self) -> socket.socket:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                raise duckdb.ConnectionException(
                    f"cannot reach the store's owner at {self.path}: {exc}"
                ) from exc
            return sock

    def give(self, sock: socket.socket) -> None:
        if self._idle.qsize() < self.size:
            self._idle.put(sock)
        else:
            sock.close()


class RemoteCursor:
    """A DuckDB cursor of the owner, used from this process.

    The subset of :class:`duckdb.DuckDBPyConnection` the store's code uses: ``execute``,
    ``executemany``, ``sql`` (returning this cursor, which answers ``pl()``, ``fetchall()``
    and the rest as a relation would), ``fetchone``, ``fetchall``, ``fetchdf``, ``df``,
    ``arrow``, ``pl``, ``description``, ``register``, ``unregister``, ``from_arrow(...)
    .insert_into(...)`` and ``close``. DuckDB's errors arrive as the same exception classes.
    """

    def __init__(self, pool: _Pool):
        self._pool = pool
        self._sock: socket.socket | None = pool.take()
        self._lock = threading.Lock()
        self.description = None
        # The owner opens the DuckDB cursor with the first operation: one round trip less.
        self._fresh = True

    # -- the conversation
    def _call(self, request):
        with self._lock:
            if self._sock is None:
                raise duckdb.ConnectionException("Connection already closed!")
            if self._fresh:
                request, self._fresh = ("fresh", request), False
            try:
                _send(self._sock, request)
                status, *rest = _receive(self._sock)
            except (OSError, RemoteError, EOFError, pickle.UnpicklingError) as exc:
                self._sock.close()
                self._sock = None
                raise duckdb.ConnectionException(f"the store's owner is not answering: {exc}") from exc
        if status == "ok":
            return rest[0]
        name, message = rest
        error = getattr(duckdb, name, None)
        if not (isinstance(error, type) and issubclass(error, duckdb.Error)):
            error = duckdb.Error
        raise error(message)

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    # -- what callers use
    def execute(self, sql: str, params=None) -> RemoteCursor:
        self.description = self._call(("execute", sql, _plain(params)))
        return self

    def sql(self, query: str, params=None) -> RemoteCursor:
        return self.execute(query, params)

    def executemany(self, sql: str, params) -> RemoteCursor:
        self.description = self._call(("executemany", sql, [_plain(p) for p in params]))
        return self

    def fetchall(self) -> list[tuple]:
        return self._call(("fetchall",))

    def fetchone(self):
        return self._call(("fetchone",))

    def arrow(self) -> pa.Table:
        return self._call(("arrow",))

    fetch_arrow_table = arrow

    def pl(self) -> pl.DataFrame:
        return pl.from_arrow(self.arrow())  # type: ignore[return-value]

    def df(self):
        return self.arrow().to_pandas()

    fetchdf = df

    def register(self, name: str, frame) -> RemoteCursor:
        self._call(("register", name, _arrow_of(frame)))
        return self

    def unregister(self, name: str) -> RemoteCursor:
        self._call(("unregister", name))
        return self

    def from_arrow(self, table) -> _Insertable:
        return _Insertable(self, _arrow_of(table))

    def cursor(self) -> RemoteCursor:
        return RemoteCursor(self._pool)

    def close(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            self._pool.give(sock)  # the owner's cursor is replaced at the next cursor's first operation

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # cursors are mostly used once and dropped: the connection goes back
        try:
            self.close()
        except Exception:  # noqa: BLE001  (interpreter shutting down)
            pass


class _Insertable:
    def __init__(self, cursor: RemoteCursor, table: pa.Table):
        self._cursor, self._table = cursor, table

    def insert_into(self, name: str) -> None:
        self._cursor._call(("insert_arrow", self._table, name))


def _arrow_of(frame) -> pa.Table:
    if isinstance(frame, pa.Table):
        return frame
    if isinstance(frame, pl.DataFrame):
        return frame.to_arrow()
    return pa.Table.from_pandas(frame, preserve_index=False)


def _plain(params):
    """Parameters as they travel: numpy scalars and arrays become Python values."""
    if params is None:
        return None
    if isinstance(params, dict):
        return {k: _value(v) for k, v in params.items()}
    return [_value(v) for v in params]


def _value(v):
    tolist = getattr(v, "tolist", None)
    return tolist() if callable(tolist) and not isinstance(v, (str, bytes)) else v


class _SharedCursor(RemoteCursor):
    """The store's own connection (``Store._con``), shared by its threads: one request at a
    time, as with DuckDB's connection object."""


class RemoteStore(Store):
    """A :class:`Store` whose statements run in the process that owns the file.

    Everything :class:`Store` computes in Python (the branch locator, the cell cache, the
    node keys) is computed here, from what the owner answers; only the statements travel.

    Parameters
    ----------
    socket_path : str or Path
        The owner's :class:`QueryServer` socket.
    path : str or Path
        The store file's path (shown in messages; never opened here).
    """

    def __init__(self, socket_path: str | Path, path: str | Path):  # noqa: D107 (no DuckDB here)
        self.path = Path(path)
        self.read_only = False
        self._pool = _Pool(socket_path)
        self._con = _SharedCursor(self._pool)
        self._write_lock = threading.Lock()
        self._locator = None
        self._cells = _CellBranchCache()
        self._devices = None
        self._node_ids = None
        self._node_keys = None

    def cursor(self) -> RemoteCursor:  # type: ignore[override]
        tracking.store_read()  # as Store.cursor
        return RemoteCursor(self._pool)

    def close(self, patience: float = 15.0) -> None:
        self._con.close()
