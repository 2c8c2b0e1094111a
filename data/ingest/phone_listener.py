"""The phone listener: the OsmAnd protocol on a port of its own (like Traccar's 5055).

A phone sends one fix per request and is answered only once the fix is committed (one
or two group commits, 0.1-0.5 s under load). A thread-per-request WSGI server holds a
thread through each of those waits, and its Python connection loop and thread switches
cost more CPU than the fix. This listener is one asyncio event loop on its own thread,
parsing with llhttp (``httptools``): a waiting request is an entry in its connection's
queue, not a thread, and the group-commit writer wakes the loop once per commit, not once
per fix. (uvloop was measured in its place: no gain, the loop is not where the time goes.)
``serve`` runs it in a phone process of its own, relaying to the writer
(:mod:`data.ingest.phone_relay`).

Answers are those of the main port's ``/osmand``: both go through one
:class:`data.ingest.phones.PhoneEndpoint`. Every path is answered, so a phone's server URL
may be ``http://host:5055`` (Traccar Client's form) or ``http://host:5055/osmand``.
HTTP/1.1 keep-alive and pipelining are honoured (answers in request order).

Bad input never stops the listener: a malformed request gets ``400`` with the parser's
reason, a request line and headers over ``max_header_bytes`` get ``414`` / ``431``, a body
over the configured limit ``413``, a request not complete within ``request_timeout``
seconds ``408``; each of these closes the connection. Idle keep-alive connections are
closed after ``idle_timeout`` seconds.

Examples
--------
>>> bp = make_ingest_blueprint(store, settings)                     # doctest: +SKIP
>>> phones = PhoneListener(bp.osmand, "0.0.0.0", 5055).start()     # doctest: +SKIP
>>> phones.close(); bp.committer.close()                            # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import resource
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from email.utils import formatdate
from functools import partial

import httptools

from data.ingest.phone_answers import REASONS, submitted

log = logging.getLogger(__name__)

#: Requests a connection may have waiting for their answers before it is read no further.
_MAX_PIPELINE = 32
#: Seconds a refused connection is still read (and the input dropped) after its answer, so
#: that the client, still sending its body, gets the answer instead of a reset.
_LINGER = 2.0


class _Refuse(Exception):
    """Answer this status and text, then close the connection."""

    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status, self.text = status, text


class _Stop(Exception):
    """The connection is closing: parse nothing more."""


class _Slot:
    """One request's place in its connection's answer order."""

    __slots__ = ("data", "close", "linger", "http10", "head", "since")

    def __init__(self, close: bool = False, http10: bool = False, head: bool = False):
        self.data: bytes | None = None
        self.close = close
        self.linger = False
        self.http10 = http10
        self.head = head  # a HEAD request: the answer has headers only
        self.since = 0.0  # loop time the fix was queued for commit; 0 when not waiting on one


class _Connection(asyncio.Protocol):
    """One phone connection: parses requests, answers them in order."""

    __slots__ = (
        "lst",
        "ep",
        "transport",
        "parser",
        "pending",
        "closing",
        "eof",
        "lingering",
        "write_paused",
        "read_paused",
        "in_head",
        "head_bytes",
        "started",
        "last",
        "remote",
        "url",
        "ctype",
        "auth",
        "length",
        "expect",
        "body",
        "body_len",
        "header_size",
        "wrong_method",
    )

    def __init__(self, listener: PhoneListener):
        self.lst = listener
        self.ep = listener.endpoint
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.pending: deque[_Slot] = deque()
        self.closing = False  # the last request has been read: parse nothing more
        self.eof = False  # the client has half-closed its side
        self.lingering = 0.0  # loop time the refusal was sent (input is dropped until close)
        self.write_paused = False
        self.read_paused = False
        self.in_head = True  # between requests or inside a request line / headers
        self.head_bytes = 0  # bytes received since the current head began (incomplete heads)
        self.started = 0.0  # loop time the current request began; 0 between requests
        self.last = listener.now
        self.remote: str | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.ctype = self.auth = b""
        self.length = -1
        self.expect = False
        self.body: list[bytes] = []
        self.body_len = 0
        self.header_size = 0
        self.wrong_method = False

    # -- asyncio protocol ------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if peer else None
        if len(self.lst.connections) >= self.lst.max_connections:
            self.closing = True
            transport.write(self.lst.response(503, "too many connections; retry\n", True, False))
            transport.close()
            return
        self.lst.connections.add(self)

    def connection_lost(self, exc) -> None:
        self.closing = True
        self.lst.connections.discard(self)

    def eof_received(self):
        self.closing = self.eof = True
        if self.pending and not self.lingering:
            return True  # half-closed: still answer what was asked, then close (see _flush)
        return False

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.last = self.lst.now
        if self.in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            err = exc.__context__
            if isinstance(err, _Stop):
                return
            if isinstance(err, _Refuse):
                self._refuse(err.status, err.text)
            else:
                log.error("phone listener: request from %s failed", self.remote, exc_info=err)
                self._refuse(500, "internal error\n")
            return
        except httptools.HttpParserUpgrade:
            self._refuse(400, "malformed request: protocol upgrades and CONNECT are not supported\n")
            return
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed request: {exc}\n")
            return
        if self.in_head and self.head_bytes > self.lst.max_header_bytes:
            self._refuse(431, f"request line and headers larger than {self.lst.max_header_bytes} bytes\n")
            return
        self._update_reading()

    # -- parser callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.closing:
            raise _Stop
        self._reset()
        self.started = self.lst.now or 1e-9

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.lst.max_header_bytes:
            raise _Refuse(414, f"request line longer than {self.lst.max_header_bytes} bytes\n")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_size += len(name) + len(value) + 4
        n = name.lower()
        if n == b"content-type":
            self.ctype = value
        elif n == b"content-length":
            try:
                self.length = int(value)  # llhttp has checked it already; be sure all the same
            except ValueError:
                raise _Refuse(400, "malformed request: Invalid character in Content-Length\n") from None
        elif n == b"authorization":
            self.auth = value
        elif n == b"expect":
            self.expect = value.strip().lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        if self.header_size + len(self.url) > self.lst.max_header_bytes:
            raise _Refuse(431, f"request line and headers larger than {self.lst.max_header_bytes} bytes\n")
        if self.parser.should_upgrade():  # what follows would not be HTTP: refuse it whole
            raise _Refuse(400, "malformed request: protocol upgrades and CONNECT are not supported\n")
        method = self.parser.get_method()
        if method != b"GET" and method != b"POST":
            self.wrong_method = True  # 405 once the request is read (body dropped), as the main port does
        elif self.length > self.ep.limit:
            raise _Refuse(*self.ep.too_large)
        elif self.expect and not self.pending and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        if self.wrong_method:
            return
        self.body_len += len(chunk)
        if self.body_len > self.ep.limit:
            raise _Refuse(*self.ep.too_large)
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        parser = self.parser
        keep = parser.should_keep_alive()
        slot = _Slot(
            close=not keep, http10=parser.get_http_version() == "1.0", head=parser.get_method() == b"HEAD"
        )
        self.pending.append(slot)
        self.lst.requests += 1
        self.in_head = True
        self.started = 0.0
        if not keep:
            self.closing = True
        if self.wrong_method:
            self._fill(slot, *self.ep.method_not_allowed)
            return
        url = self.url
        q = url.find(b"?")
        path, query = (url[:q], url[q + 1 :]) if q >= 0 else (url, b"")
        h = query.find(b"#")
        if h >= 0:
            query = query[:h]
        args = (
            parser.get_method().decode(),
            path.decode("utf-8", "replace"),
            query.decode("utf-8", "replace"),
            self.ctype.decode("latin-1").split(";", 1)[0].strip().lower(),
            b"".join(self.body) if self.body else b"",
            self.auth.decode("latin-1"),
            self.remote,
        )
        if self.ep.uses_store(args[2], args[5]):
            # a token: its lookup (and an audited refusal) touch the store, off the loop
            done = self.lst.loop.run_in_executor(self.lst.executor, self.ep.prepare, *args)
            done.add_done_callback(partial(self._prepared_later, slot))
            return
        try:
            prepared = self.ep.prepare(*args)
        except Exception:
            log.exception("phone listener: request from %s failed", self.remote)
            prepared = (500, "internal error\n")
        self._dispatch(slot, prepared)

    # -- answering -------------------------------------------------------------------------
    def _prepared_later(self, slot: _Slot, done: asyncio.Future) -> None:
        exc = done.exception()
        if exc is not None:
            log.error("phone listener: request from %s failed", self.remote, exc_info=exc)
            self._fill(slot, 500, "internal error\n")
            return
        self._dispatch(slot, done.result())

    def _dispatch(self, slot: _Slot, prepared) -> None:
        fut = submitted(self.ep, prepared)
        if isinstance(fut, tuple):
            self._fill(slot, *fut)
            return
        slot.since = self.lst.now or 1e-9
        fut.add_done_callback(partial(self.lst.committed, self, slot))

    def _fill(self, slot: _Slot, status: int, text: str) -> None:
        if slot.data is not None:
            return  # answered already (timed out)
        self.ep.count(status)  # every answer of this port passes here once
        slot.since = 0.0
        slot.data = self.lst.response(status, text, slot.close, slot.http10, slot.head)
        self._flush()

    def _flush(self) -> None:
        pending = self.pending
        out = []
        close = linger = False
        while pending and pending[0].data is not None:
            slot = pending.popleft()
            out.append(slot.data)
            if slot.close:
                close, linger = True, slot.linger
                pending.clear()
                break
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))
            self.last = self.lst.now  # idle from the last answer on, not from the last request
        if close:
            if linger and transport.can_write_eof():
                # the client may still be sending (a body too large): read and drop its
                # input for a moment so that it sees this answer rather than a reset
                transport.write_eof()
                self.lingering = self.lst.now or 1e-9
                self._set_reading(True)
            else:
                transport.close()
        elif self.eof and not pending:
            transport.close()  # the client half-closed and has all its answers
        else:
            self._update_reading()

    def _refuse(self, status: int, text: str) -> None:
        """Answer after what is already queued, then close (a request that cannot be read on)."""
        self.closing = True
        slot = _Slot(close=True)
        slot.linger = True
        self.pending.append(slot)
        self._fill(slot, status, text)

    def _update_reading(self) -> None:
        self._set_reading(self.lingering > 0 or (not self.write_paused and len(self.pending) < _MAX_PIPELINE))

    def _set_reading(self, on: bool) -> None:
        paused = not on
        if self.transport is None or self.transport.is_closing() or paused == self.read_paused:
            return
        self.read_paused = paused
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def check(self, now: float) -> None:
        """Periodic: time-outs of slow requests, idle connections and commits."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.lingering:
            if now - self.lingering > _LINGER:
                transport.close()
            return
        for slot in list(self.pending):  # a copy: answering takes slots off the queue
            if slot.since and now - slot.since > self.lst.commit_timeout:
                self._fill(slot, *self.ep.failure(FutureTimeout()))
        if transport.is_closing():
            return
        if self.started and now - self.started > self.lst.request_timeout:
            self._refuse(408, f"request not received within {self.lst.request_timeout:g} s\n")
        elif not self.started and not self.pending and now - self.last > self.lst.idle_timeout:
            transport.close()


class PhoneListener:
    """The OsmAnd protocol on its own port, served by an event loop on its own thread.

    Parameters
    ----------
    endpoint : data.ingest.phones.PhoneEndpoint
        Answers the requests (``bp.osmand`` of :func:`data.ingest.http_api.make_ingest_blueprint`).
    host, port : str, int
        Where to listen; port 0 takes a free port (see :attr:`port` once started).
    max_connections : int, optional
        Open connections at most; more are answered 503 and closed. Default: 10,000, or
        fewer when the process may open fewer files.
    idle_timeout : float
        Seconds a keep-alive connection may wait for its next request.
    request_timeout : float
        Seconds a request may take to arrive, from its first byte to its last (slow
        senders get 408).
    commit_timeout : float
        Seconds a fix may wait for its commit before 503 (nothing acknowledged: the phone
        sends it again).
    max_header_bytes : int
        Largest request line plus headers.
    sock : socket.socket, optional
        A socket bound and listening already, served instead of ``host`` and ``port`` (the
        phone process of :mod:`data.ingest.phone_relay` serves the one its parent bound).

    Examples
    --------
    >>> phones = PhoneListener(bp.osmand, "127.0.0.1", 0).start()    # doctest: +SKIP
    >>> phones.port                                                   # doctest: +SKIP
    40311
    """

    def __init__(
        self,
        endpoint,
        host: str = "127.0.0.1",
        port: int = 5055,
        *,
        max_connections: int | None = None,
        idle_timeout: float = 60.0,
        request_timeout: float = 30.0,
        commit_timeout: float = 60.0,
        max_header_bytes: int = 16_384,
        backlog: int = 2048,
        sock=None,
    ):
        self.endpoint = endpoint
        self.host, self.port = host, port
        self.sock = sock  # a listening socket bound already (host and port are then its own)
        if max_connections is None:
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            max_connections = 10_000 if soft == resource.RLIM_INFINITY else max(16, min(10_000, soft - 200))
        self.max_connections = max_connections
        self.idle_timeout, self.request_timeout = idle_timeout, request_timeout
        self.commit_timeout = commit_timeout
        self.max_header_bytes = max_header_bytes
        self.requests = 0  # requests read in full since start (answered or being answered)
        self.backlog = backlog
        self.connections: set[_Connection] = set()
        self.now = 0.0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.executor = ThreadPoolExecutor(4, thread_name_prefix="emap-phone-token")
        self._date = b""
        self._done: deque = deque()
        self._wake_pending = False
        self._thread: threading.Thread | None = None
        self._server = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> PhoneListener:
        """Bind and serve on a new thread; returns once listening.

        Raises
        ------
        OSError
            When the port cannot be bound (e.g. in use).
        """
        self._thread = threading.Thread(target=self._run, name="emap-phone-listener", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop listening and close every connection (fixes already queued are still
        committed by the writer; their phones, unanswered, send them again)."""
        if self.loop is not None and self._thread is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._shutdown)
            self._thread.join(timeout)
        self.executor.shutdown(wait=False)

    def _run(self) -> None:
        loop = self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._tick()
        try:
            if self.sock is not None:
                where: dict = {"sock": self.sock}
            else:
                where = {"host": self.host, "port": self.port, "reuse_address": True}
            self._server = loop.run_until_complete(
                loop.create_server(lambda: _Connection(self), backlog=self.backlog, **where)
            )
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _shutdown(self) -> None:
        self._server.close()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        self.loop.stop()

    def _tick(self) -> None:
        """Once a second: the clock and Date header requests use, and the time-outs."""
        loop = self.loop
        loop.call_later(1.0, self._tick)  # first: whatever happens below, the clock goes on
        self.now = loop.time()
        self._date = formatdate(usegmt=True).encode()
        for conn in list(self.connections):
            try:
                conn.check(self.now)
            except Exception:
                log.exception("phone listener: time-out check of %s failed", conn.remote)

    # -- answers -----------------------------------------------------------------------------
    def response(self, status: int, text: str, close: bool, http10: bool, head: bool = False) -> bytes:
        """The bytes of one answer (the headers the main port's ``/osmand`` sends)."""
        body = text.encode()
        extra = b""
        if status == 503:
            extra += b"Retry-After: 1\r\n"
        elif status == 405:
            extra += b"Allow: GET, POST\r\n"
        if close:
            extra += b"Connection: close\r\n"
        elif http10:
            extra += b"Connection: keep-alive\r\n"
        return (
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n"
            b"X-Content-Type-Options: nosniff\r\nDate: %s\r\n%s\r\n%s"
            % (status, REASONS.get(status, "").encode(), len(body), self._date, extra, b"" if head else body)
        )

    def committed(self, conn: _Connection, slot: _Slot, fut: Future) -> None:
        """Done-callback of a fix's commit future, on the writer's thread: queue the answer and
        wake the loop once for all the fixes of a commit."""
        self._done.append((conn, slot, fut))
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self.loop.call_soon_threadsafe(self._answer_committed)
            except RuntimeError:  # the loop is closed: the listener has stopped
                pass

    def _answer_committed(self) -> None:
        self._wake_pending = False  # before draining: a fix queued from now on wakes again
        done = self._done
        ep = self.endpoint
        while done:
            conn, slot, fut = done.popleft()
            exc = fut.exception()
            try:
                conn._fill(slot, *(ep.failure(exc) if exc is not None else ep.answer_of(fut.result())))
            except Exception:  # one connection's trouble must not hold the others' answers
                log.exception("phone listener: answer to %s failed", conn.remote)
