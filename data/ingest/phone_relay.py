"""The phone listener in a process of its own, relaying fixes to the writer in bulk.

Why a process: the serving process runs the writer, the ingest API and the dashboard's
store reads under one interpreter lock. Reading and answering 2,000 phone requests a
second (HTTP parsing, the event loop, one answer per request) took a quarter of that
lock while people used the dashboard, and every thread of the process, the writer's
first, waited for it (``docs/operations.md``, "Phones in a process of their own"). In a
process of its own, the listener's HTTP work has an interpreter of its own; the serving
process sees the requests in bulk, a few frames a second.

The parent (:class:`PhoneRelay`, in the serving process) binds the port, starts the phone
process (:mod:`cli.phone_worker`) with the listening socket, and answers what it relays
through the same :class:`data.ingest.phones.PhoneEndpoint` as the main port's ``/osmand``:
token, scope, commit and answer are decided there, so a fix gets the same answer on
either port. The child runs :class:`data.ingest.phone_listener.PhoneListener` on that
socket with a :class:`RelayedEndpoint`, which hands each complete request on and waits
for its answer without holding a thread.

Wire, on a Unix socket pair: frames of a 4-byte big-endian length and a JSON document.

* child -> parent: ``{"r": [[id, method, path, query, mimetype, body, authorization,
  remote], ...], "n": {"200": 17, ...}}`` (requests to answer; answers the child sent,
  by status, for the metrics). The body travels as text, one character per byte.
* parent -> child: ``{"a": [[id, status, text], ...]}``.

If the phone process dies, the serving process starts it again on the same socket (the
kernel queues new connections meanwhile); phones whose fixes were in flight get no answer
and send them again, and a re-sent fix is not stored twice. The phone process exits when
the serving process closes its end or dies.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import struct
import subprocess
import sys
import threading
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import orjson

from data.ingest.phone_answers import not_committed, submitted

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
#: Largest frame either side accepts: far above any honest frame (bodies are size-checked
#: before they are relayed), so a broken peer is noticed instead of filling the memory.
MAX_FRAME = 256 * 1024 * 1024
#: Seconds between two starts of the phone process.
RESTART_PAUSE = 1.0
_HEAD = struct.Struct(">I")


def frame(doc: dict) -> bytes:
    """One frame of the wire: length, then the JSON document."""
    data = orjson.dumps(doc)
    return _HEAD.pack(len(data)) + data


class FrameReader:
    """Frames out of a byte stream, whatever the chunks it arrives in.

    Examples
    --------
    >>> r = FrameReader()
    >>> data = frame({"a": [[1, 200, "OK\\n"]]})
    >>> r.feed(data[:3]), r.feed(data[3:])
    ([], [{'a': [[1, 200, 'OK\\n']]}])
    """

    def __init__(self):
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict]:
        buf = self._buf
        buf += data
        out = []
        while len(buf) >= 4:
            (n,) = _HEAD.unpack_from(buf)
            if n > MAX_FRAME:
                raise ValueError(f"frame of {n} bytes: larger than {MAX_FRAME}")
            if len(buf) < 4 + n:
                break
            out.append(orjson.loads(bytes(buf[4 : 4 + n])))
            del buf[: 4 + n]
        return out


# -- the phone process's side ------------------------------------------------------------
class _Relayed:
    """One request the phone process hands on (what :meth:`RelayedEndpoint.prepare` makes)."""

    __slots__ = ("args",)

    def __init__(self, args: tuple):
        self.args = args


class RelayedEndpoint:
    """The endpoint of the phone process's listener: every complete request goes to the
    serving process, whose answer comes back as ``(status, text)``.

    It has the interface of :class:`data.ingest.phones.PhoneEndpoint` that
    :class:`data.ingest.phone_listener.PhoneListener` uses. All its methods run on the
    listener's event loop; :meth:`attach` gives it the channel.

    Parameters
    ----------
    limits : dict
        ``limit``, ``too_large`` and ``method_not_allowed`` of the serving process's
        endpoint (answers the listener gives before anything is relayed).
    """

    def __init__(self, limits: dict):
        self.limit = int(limits["limit"])
        self.too_large = tuple(limits["too_large"])
        self.method_not_allowed = tuple(limits["method_not_allowed"])
        self.waiting: dict[int, Future] = {}
        self._ids = itertools.count(1)
        self._out: list[list] = []
        self._counts: Counter = Counter()
        self._flush_soon = False
        self.transport = None

    def attach(self, transport) -> None:
        self.transport = transport
        self.flush()  # what phones sent before the channel was there

    @staticmethod
    def uses_store(query: str, authorization: str) -> bool:
        return False  # nothing here touches the store: the serving process does

    def prepare(self, method, path, query, mimetype, body, authorization, remote) -> _Relayed:
        return _Relayed((method, path, query, mimetype, body.decode("latin-1"), authorization, remote))

    def submit(self, relayed: _Relayed) -> Future:
        if self.transport is not None and self.transport.is_closing():
            raise ConnectionError("the serving process is not reachable")
        fut: Future = Future()
        rid = next(self._ids)
        self.waiting[rid] = fut
        self._out.append([rid, *relayed.args])
        self._schedule()
        return fut

    #: The serving process's answer when a commit does not come; here only for a fix not
    #: answered in time or a serving process that is gone (the same texts).
    failure = staticmethod(not_committed)

    @staticmethod
    def answer_of(answer) -> tuple[int, str]:
        status, text = answer
        return int(status), str(text)

    def count(self, status: int) -> None:
        self._counts[status] += 1
        self._schedule()

    def _schedule(self) -> None:
        # once per pass of the event loop: the requests read in one pass travel in one frame
        if not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self.flush)  # every call is on the listener's loop

    def flush(self) -> None:
        self._flush_soon = False
        if (not self._out and not self._counts) or self.transport is None:
            return  # nothing to send, or sent once the channel is attached
        doc = {"r": self._out, "n": {str(k): v for k, v in self._counts.items()}}
        self._out, self._counts = [], Counter()
        if not self.transport.is_closing():
            self.transport.write(frame(doc))

    def answered(self, doc: dict) -> None:
        """A frame of answers from the serving process."""
        for rid, status, text in doc.get("a", ()):
            fut = self.waiting.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_result((status, text))

    def lost(self) -> None:
        """The serving process is gone: nothing waiting will be answered."""
        waiting, self.waiting = self.waiting, {}
        for fut in waiting.values():
            if not fut.done():
                fut.set_exception(ConnectionError("the serving process stopped"))


# -- the serving process's side ------------------------------------------------------------
class PhoneRelay:
    """The phone listener's port, served by a process of its own (:mod:`cli.phone_worker`)
    whose requests are answered here by ``endpoint``.

    It starts, stops and reports a port as :class:`data.ingest.phone_listener.PhoneListener`
    does, and takes its options (time-outs, limits), passed on to the listener there.

    Parameters
    ----------
    endpoint : data.ingest.phones.PhoneEndpoint
        Answers the requests.
    host, port : str, int
        Where to listen; port 0 takes a free port (see :attr:`port` once started).
    **listener_options
        Keyword arguments of :class:`~data.ingest.phone_listener.PhoneListener`.
    """

    def __init__(self, endpoint, host: str = "127.0.0.1", port: int = 5055, **listener_options):
        self.endpoint = endpoint
        self.host, self.port = host, port
        self.listener_options = listener_options
        self.executor = ThreadPoolExecutor(4, thread_name_prefix="emap-phone-token")
        self.starts = 0  # times the phone process was started
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen | None = None
        self._chan: socket.socket | None = None
        self._done: deque = deque()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> PhoneRelay:
        """Bind, start the phone process and the relay's threads; returns once the process
        has started (the socket queues phones until it serves them).

        Raises
        ------
        OSError
            When the port cannot be bound (e.g. in use).
        """
        info = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(info[4])
            sock.listen(self.listener_options.get("backlog", 2048))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._spawn()
        metrics = getattr(self.endpoint, "metrics", None)
        if metrics is not None:
            metrics.watch_phone_process(self.alive, lambda: self.starts)
        for target, name in (
            (self._relay_loop, "emap-phone-relay"),
            (self._answer_loop, "emap-phone-answers"),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def alive(self) -> bool:
        """Whether the phone process runs."""
        return self._proc is not None and self._proc.poll() is None

    def close(self, timeout: float = 10.0) -> None:
        """Stop the phone process (it closes every phone connection) and the relay."""
        self._closing.set()
        self._wake.set()
        chan, proc = self._chan, self._proc
        if chan is not None:
            try:
                chan.shutdown(socket.SHUT_RDWR)  # the phone process exits when its channel closes
            except OSError:
                pass
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for t in self._threads:
            t.join(timeout)
        if chan is not None:
            chan.close()
        if self._sock is not None:
            self._sock.close()
        self.executor.shutdown(wait=False)

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ep = self.endpoint
        config = {
            "endpoint": {
                "limit": ep.limit,
                "too_large": list(ep.too_large),
                "method_not_allowed": list(ep.method_not_allowed),
            },
            "listener": self.listener_options,
        }
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "cli.phone_worker",
                    json.dumps(config),
                    str(self._sock.fileno()),
                    str(theirs.fileno()),
                ],
                cwd=ROOT,
                pass_fds=(self._sock.fileno(), theirs.fileno()),
                start_new_session=True,  # a terminal's Ctrl-C is for the serving process: it stops this one
            )
        finally:
            theirs.close()
        self._chan = ours
        self.starts += 1
        log.info("phone process started (pid %d) for port %s", self._proc.pid, self.port)

    # -- relaying ----------------------------------------------------------------------------
    def _relay_loop(self) -> None:
        """Reads the phone process's frames; starts it again when it ends."""
        while not self._closing.is_set():
            chan, reader = self._chan, FrameReader()
            try:
                while True:
                    data = chan.recv(1 << 20)
                    if not data:
                        break
                    for doc in reader.feed(data):
                        try:
                            self._relayed(chan, doc)
                        except Exception:  # a frame this side cannot read costs its own requests only
                            log.exception("a frame from the phone process could not be relayed")
            except (OSError, ValueError) as exc:
                if not self._closing.is_set():
                    log.error("phone process channel failed: %s", exc)
            if self._closing.is_set():
                return
            code = _ended(self._proc)
            log.error("the phone process ended (exit status %s); starting it again", code)
            chan.close()
            if self._closing.wait(RESTART_PAUSE):
                return
            try:
                self._spawn()
            except OSError:
                log.exception("the phone process cannot be started; trying again")

    def _relayed(self, chan: socket.socket, doc: dict) -> None:
        ep = self.endpoint
        for status, n in doc.get("n", {}).items():
            ep.count(int(status), int(n))
        for rid, method, path, query, mimetype, body, authorization, remote in doc.get("r", ()):
            args = (method, path, query, mimetype, body.encode("latin-1"), authorization, remote)
            if ep.uses_store(query, authorization):
                # a token: its lookup (and an audited refusal) touch the store, off this thread
                self.executor.submit(self._answer, chan, rid, args)
            else:
                self._answer(chan, rid, args)

    def _answer(self, chan: socket.socket, rid: int, args: tuple) -> None:
        ep = self.endpoint
        try:
            prepared = ep.prepare(*args)
        except Exception:
            log.exception("phone request from %s failed", args[-1])
            prepared = (500, "internal error\n")
        answer = submitted(ep, prepared)
        if isinstance(answer, tuple):
            self._queue(chan, rid, answer)
        else:
            answer.add_done_callback(partial(self._queue, chan, rid))

    def _queue(self, chan: socket.socket, rid: int, answer) -> None:
        """An answer (or a commit's future, whose answer is worked out on the answering
        thread, not the writer's) to send; wakes the sender once for many."""
        self._done.append((chan, rid, answer))
        self._wake.set()

    def _answer_loop(self) -> None:
        ep = self.endpoint
        while not self._closing.is_set():
            self._wake.wait()
            self._wake.clear()
            out: dict[socket.socket, list] = {}
            done = self._done
            while done:
                chan, rid, answer = done.popleft()
                if isinstance(answer, Future):
                    exc = answer.exception()
                    try:
                        answer = ep.failure(exc) if exc is not None else ep.answer_of(answer.result())
                    except Exception:
                        log.exception("phone answer failed")
                        answer = (500, "internal error\n")
                out.setdefault(chan, []).append([rid, *answer])
            for chan, answers in out.items():
                if chan is not self._chan:
                    continue  # a phone process that ended: its phones send again
                try:
                    chan.sendall(frame({"a": answers}))
                except OSError as exc:
                    log.warning("answers to the phone process not sent: %s", exc)


def _ended(proc: subprocess.Popen | None) -> int | None:
    """The exit status of a phone process whose channel closed (killed if it lingers)."""
    if proc is None:
        return None
    try:
        return proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
