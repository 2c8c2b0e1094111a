"""The owner channel: the one way into a store that a serving process holds.

DuckDB lets one process open a database file. The serving process (``python app.py
serve``) owns the store; every other process reaches it through a Unix socket beside the
store file (``<store>.owner``), created with mode 0600 so that only the account that owns
the store can connect, and checked again on every connection with the kernel's peer
credentials (``SO_PEERCRED``: the same user as the server, or root). A Unix socket is
never reachable through a TCP proxy. Later web or ingest workers can use the same
channel.

A request runs a subcommand of ``app.py`` inside the serving process, on the store it
owns (:mod:`cli.context`): its stdout and stderr stream back as it runs (import
progress, results), files to import stream to the server, and files it writes (an
export) stream back. Changes are audited as ``cli:<os user>`` of the asking process,
as the kernel reports it, never as the request says.

Framing: each frame is one type byte, a 4-byte big-endian length and the payload.

=====  ==========  ==================================================================
type   direction   payload
=====  ==========  ==================================================================
``J``  both        a JSON object (the request; an upload's or a download's header)
``D``  both        bytes of the current upload or download
``E``  both        end of the current upload or download
``O``  to client   text the command wrote to stdout (UTF-8)
``R``  to client   text the command wrote to stderr (UTF-8)
``X``  to client   the exit status, as decimal text; the last frame
=====  ==========  ==================================================================
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pwd
import shutil
import socket
import struct
import sys
import tempfile
import threading
from pathlib import Path

from cli import context
from cli.store import owner_socket
from config import Settings

log = logging.getLogger(__name__)

#: Subcommands that go through the channel when a server holds the store.
THROUGH_OWNER = (
    "import",
    "users",
    "tokens",
    "devices",
    "status",
    "backup",
    "export",
    "backtest",
    "simulate",
    "lake",
)
_HEADER = struct.Struct(">cI")
_CHUNK = 1 << 20
#: Largest JSON or text frame accepted (uploads come in chunks of _CHUNK).
_MAX_FRAME = 16 << 20
_UPLOAD = "@upload:"
_DOWNLOAD = "@download:"


class ChannelError(RuntimeError):
    """The channel broke or the peer sent something it should not."""


# -- frames -----------------------------------------------------------------------------
def send(sock: socket.socket, kind: bytes, payload: bytes = b"") -> None:
    sock.sendall(_HEADER.pack(kind, len(payload)) + payload)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, _CHUNK))
        if not chunk:
            raise ChannelError("the other side closed the channel")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(sock: socket.socket) -> tuple[bytes, bytes]:
    kind, length = _HEADER.unpack(_read_exact(sock, _HEADER.size))
    if length > _MAX_FRAME:
        raise ChannelError(f"frame of {length} bytes is over the limit")
    return kind, _read_exact(sock, length)


def _json(payload: bytes) -> dict:
    try:
        obj = json.loads(payload)
    except ValueError as exc:
        raise ChannelError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ChannelError("a JSON object was expected")
    return obj


class _Stream(io.TextIOBase):
    """A text stream sending each write as one frame (stdout or stderr of a command)."""

    def __init__(self, sock: socket.socket, kind: bytes, lock: threading.Lock, names: dict | None = None):
        self._sock, self._kind, self._lock = sock, kind, lock
        self._names = names or {}

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for spooled, name in self._names.items():
            text = text.replace(spooled, name)
        if text:
            with self._lock:
                with contextlib.suppress(OSError):  # the asking process went away
                    send(self._sock, self._kind, text.encode("utf-8", "replace"))
        return len(text)


# -- the serving side ---------------------------------------------------------------------
class OwnerServer:
    """Listens on the owner socket and runs each request's command on ``store``.

    Parameters
    ----------
    store : data.store.database.Store
        The store this process owns.
    settings : config.Settings
        Where the socket goes (beside ``db_path``) and where uploads are spooled
        (``data_dir``).
    run_command : callable
        ``run_command(argv) -> int``: parses and runs one subcommand (``app.run``).
    """

    def __init__(self, store, settings: Settings, run_command):
        self.store = store
        self.settings = settings
        self.run_command = run_command
        self.path = owner_socket(settings)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> OwnerServer:
        if len(os.fsencode(self.path)) >= 104:
            raise OSError(f"the owner socket path {self.path} is too long for a Unix socket")
        if self.path.exists() or self.path.is_symlink():
            # left by a server that died: this process holds the store now, so it is stale
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # created 0600: only this account may connect
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        sock.listen(16)
        self._sock = sock
        context.route_output()
        self._thread = threading.Thread(target=self._accept, name="emap-owner", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
            with contextlib.suppress(OSError):
                self.path.unlink()

    def _accept(self) -> None:
        while self._sock is not None:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name="emap-owner-command", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                user = self._peer_user(conn)
                if user is None:
                    send(
                        conn,
                        b"R",
                        b"refused: the owner channel takes only the account that runs the server\n",
                    )
                    send(conn, b"X", b"2")
                    return
                self._run(conn, user)
            except ChannelError as exc:
                log.warning("owner channel: %s", exc)
                with contextlib.suppress(OSError):
                    send(conn, b"R", f"error: {exc}\n".encode())
                    send(conn, b"X", b"2")
            except OSError as exc:
                log.warning("owner channel: %s", exc)
            except Exception as exc:  # a command's failure must not take the server down
                log.exception("owner channel: a command failed")
                with contextlib.suppress(OSError):
                    said = f"error: the command failed in the server ({type(exc).__name__}: {exc}); see its log\n"
                    send(conn, b"R", said.encode("utf-8", "replace"))
                    send(conn, b"X", b"1")

    @staticmethod
    def _peer_user(conn: socket.socket) -> str | None:
        """The OS user of the connecting process, if it may use the channel."""
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        if uid not in (os.getuid(), 0):
            return None
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)

    def _run(self, conn: socket.socket, user: str) -> None:
        kind, payload = receive(conn)
        if kind != b"J":
            raise ChannelError("the request must come first")
        request = _json(payload)
        argv = request.get("argv")
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            raise ChannelError("the request names no command")
        if argv[0] not in THROUGH_OWNER:
            send(conn, b"R", f"error: {argv[0]!r} does not run through the owner channel\n".encode())
            send(conn, b"X", b"2")
            return
        env = {
            k: v for k, v in (request.get("env") or {}).items() if isinstance(k, str) and isinstance(v, str)
        }
        spool = Path(tempfile.mkdtemp(prefix="owner-", dir=self._spool_root()))
        try:
            spooled, downloads = self._receive_files(conn, argv, spool)
            # the command's messages name the asking process's files, not the spooled copies
            shown = request.get("shown")
            names = {}
            if isinstance(shown, list) and len(shown) == len(argv):
                names = {p: str(s) for p, a, s in zip(spooled, argv, shown) if p != a}
            argv = spooled
            lock = threading.Lock()
            command = context.Remote(
                store=self.store,
                os_user=user,
                env=env,
                out=_Stream(conn, b"O", lock, names),
                err=_Stream(conn, b"R", lock, names),
            )
            log.info("owner channel: cli:%s runs %s", user, " ".join(_shown(argv)))
            with context.running_for(command):
                try:
                    status = int(self.run_command(argv) or 0)
                except SystemExit as exc:  # argparse errors and explicit exits
                    status = exc.code if isinstance(exc.code, int) else 2
            with lock:
                self._send_files(conn, downloads)
                send(conn, b"X", str(status).encode())
        finally:
            shutil.rmtree(spool, ignore_errors=True)

    def _spool_root(self) -> Path:
        root = Path(self.settings.data_dir) / "owner-spool"
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        return root

    @staticmethod
    def _receive_files(conn: socket.socket, argv: list[str], spool: Path) -> tuple[list[str], dict]:
        """Spool the uploads the request announces and put their paths in ``argv``; give
        each download a path to write to."""
        out, downloads = [], {}
        for arg in argv:
            if arg.startswith(_UPLOAD):
                kind, payload = receive(conn)
                header = _json(payload) if kind == b"J" else {}
                name = Path(str(header.get("name", "upload"))).name or "upload"
                path = spool / f"{len(out)}-{name}"
                with open(path, "wb") as fh:
                    while True:
                        kind, payload = receive(conn)
                        if kind == b"E":
                            break
                        if kind != b"D":
                            raise ChannelError("an upload was cut short")
                        fh.write(payload)
                out.append(str(path))
            elif arg.startswith(_DOWNLOAD):
                name = Path(arg[len(_DOWNLOAD) :].split(":", 1)[-1]).name or "download"
                path = spool / f"{len(out)}-{name}"
                downloads[arg] = path
                out.append(str(path))
            else:
                out.append(arg)
        return out, downloads

    @staticmethod
    def _send_files(conn: socket.socket, downloads: dict) -> None:
        for token, path in downloads.items():
            if not path.exists():
                continue
            send(conn, b"J", json.dumps({"download": token}).encode())
            with open(path, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    send(conn, b"D", chunk)
            send(conn, b"E")


def _shown(argv: list[str]) -> list[str]:
    """``argv`` for the log: paths of spooled files by name only."""
    return [Path(a).name if os.sep in a else a for a in argv]


# -- the asking side ------------------------------------------------------------------------
def answering(settings: Settings, timeout: float = 2.0) -> bool:
    """Whether a serving process answers on the owner socket of ``settings``' store."""
    path = owner_socket(settings)
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
        return True
    except OSError:
        return False


class Transfer:
    """What goes with a command over the channel: the indices of ``argv`` naming files to
    upload (read here, spooled there) and files to download (written there, copied
    here), and secrets from this process's environment or prompts."""

    def __init__(self, uploads=(), downloads=(), env: dict | None = None, paths=()):
        self.uploads = set(uploads)
        self.downloads = set(downloads)
        self.env = dict(env or {})
        #: indices of paths the server uses in place (a lake folder): sent absolute
        self.paths = set(paths)


def plan(argv: list[str], args) -> Transfer:
    """The :class:`Transfer` of a parsed command."""
    if args.command == "import":
        return Transfer(uploads=[i for i, a in enumerate(argv) if i > 0 and a in args.files])
    if args.command == "devices" and getattr(args, "file", None):
        return Transfer(uploads=[argv.index(args.file, 1)])
    if args.command in ("export", "backup"):
        return Transfer(downloads=[_value_index(argv, "--out")])
    if args.command == "lake" and args.lake_action == "export":
        return Transfer(paths=[_value_index(argv, "--lake")])
    if args.command == "users":
        from cli import users

        return Transfer(env=users.secrets_for(args))
    return Transfer()


def _value_index(argv: list[str], option: str) -> int:
    """Index of the value of ``option`` (``--out x``; ``--out=x`` is split first)."""
    for i, a in enumerate(argv):
        if a == option:
            return i + 1
    raise ValueError(f"{option} is required")


def normalise(argv: list[str]) -> list[str]:
    """``--opt=value`` as two arguments, so that values have an index of their own."""
    out = []
    for a in argv:
        if a.startswith("--") and "=" in a:
            out.extend(a.split("=", 1))
        else:
            out.append(a)
    return out


def run_remote(argv: list[str], settings: Settings, transfer: Transfer) -> int:
    """Run ``argv`` in the serving process and relay its output; its exit status."""
    sent, targets = [], {}
    for i, a in enumerate(argv):
        if i in transfer.uploads:
            sent.append(f"{_UPLOAD}{i}")
        elif i in transfer.downloads:
            token = f"{_DOWNLOAD}{i}:{Path(a).name}"
            targets[token] = Path(a)
            sent.append(token)
        elif i in transfer.paths:
            sent.append(str(Path(a).resolve()))
        else:
            sent.append(a)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(owner_socket(settings)))
        shown = [str(Path(a).resolve()) if i in transfer.uploads else a for i, a in enumerate(argv)]
        send(sock, b"J", json.dumps({"argv": sent, "shown": shown, "env": transfer.env}).encode())
        for i in sorted(transfer.uploads):
            _upload(sock, Path(argv[i]))
        return _relay(sock, targets)


def _upload(sock: socket.socket, path: Path) -> None:
    send(sock, b"J", json.dumps({"name": path.name}).encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            send(sock, b"D", chunk)
    send(sock, b"E")


def _relay(sock: socket.socket, targets: dict) -> int:
    current = None
    while True:
        kind, payload = receive(sock)
        if kind == b"O":
            sys.stdout.write(payload.decode("utf-8", "replace"))
            sys.stdout.flush()
        elif kind == b"R":
            sys.stderr.write(payload.decode("utf-8", "replace"))
            sys.stderr.flush()
        elif kind == b"J":
            token = _json(payload).get("download")
            if token not in targets:
                raise ChannelError("the server sent a file that was not asked for")
            current = open(targets[token], "wb")  # noqa: SIM115 (closed at E)
        elif kind == b"D" and current is not None:
            current.write(payload)
        elif kind == b"E" and current is not None:
            current.close()
            current = None
        elif kind == b"X":
            return int(payload.decode() or 0)
        else:
            raise ChannelError(f"unexpected frame {kind!r}")
