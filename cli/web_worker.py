"""A web worker: the dashboard's callbacks, in a process of their own.

Started by ``python app.py serve --web-processes N`` (:mod:`cli.web_pool`), never by hand:
``python -m cli.web_worker <query socket> <http socket>``. It builds the same Dash app as
the serving process on a :class:`data.store.remote.RemoteStore` (statements run in the
serving process, which owns the file) and answers, on a Unix socket only the serving
process reaches, the callback requests that process hands it. Building figures is
Python work that holds an interpreter; here it holds this process's, not the one the
ingest API and the writer run on.

The serving process passes the browser's own request on unchanged, plus the socket
peer's address and scheme as it saw them (``X-EMAP-Peer``, ``X-EMAP-Scheme``), so
sign-in, scope checks, the client address of audit lines and the trusted proxies work
here exactly as there. The worker's sessions are the server's: the same session key
comes in ``EMAP_SECRET_KEY``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

from cli import logs
from config import Settings

log = logging.getLogger("emap.web_worker")

#: Headers the serving process sets on a request it passes on (a browser's own are dropped there).
PEER_HEADER = "HTTP_X_EMAP_PEER"
SCHEME_HEADER = "HTTP_X_EMAP_SCHEME"
#: Threads of a worker: its callbacks are CPU work, more threads would only wait for the lock.
THREADS = 12


def restore_peer(app):
    """WSGI middleware: the browser's address and scheme as the serving process saw them."""

    def restored(environ, start_response):
        environ["REMOTE_ADDR"] = environ.pop(PEER_HEADER, "") or "127.0.0.1"
        scheme = environ.pop(SCHEME_HEADER, "")
        if scheme in ("http", "https"):
            environ["wsgi.url_scheme"] = scheme
        return app(environ, start_response)

    return restored


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m cli.web_worker <query socket> <http socket>", file=sys.stderr)
        return 2
    query_socket, http_socket = argv
    settings = Settings.from_env()
    logs.configure(settings)
    if settings.web_nice > 0:
        os.nice(settings.web_nice)  # ingest, in the serving process, goes first
    from waitress import serve

    from data.store.remote import RemoteStore
    from pages.app import build_app

    threading.Thread(target=_end_with, args=(os.getppid(),), name="emap-parent", daemon=True).start()
    store = RemoteStore(query_socket, settings.db_path)
    app = build_app(
        store, settings, auth=True, report_answers=True
    )  # warmed here: the serving process does not
    signal.signal(signal.SIGTERM, _interrupt)
    log.info("web worker %s answering on %s", os.getpid(), http_socket)
    try:
        serve(
            restore_peer(app.server),
            unix_socket=http_socket,
            unix_socket_perms="600",
            threads=THREADS,
            # the serving process holds a connection per request it hands over at once
            connection_limit=1024,
            asyncore_use_poll=True,
            ident="EMAP",
            _quiet=True,
        )
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    return 0


def _end_with(parent: int) -> None:
    """Exit when the serving process is gone (killed without stopping its workers): a
    worker without it has no store and no one to answer."""
    while os.getppid() == parent:
        time.sleep(2)
    os._exit(0)


def _interrupt(*_signal) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
