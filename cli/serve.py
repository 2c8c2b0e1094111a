"""``python app.py serve`` (the default): the dashboard, the ingest API and the phone
listener, in one process that owns the store."""

from __future__ import annotations

import logging
import os
import signal
import sys
from dataclasses import replace

from cli import logs
from cli.store import ensure_accounts, ensure_demo, ensure_tree, open_store
from config import Settings

log = logging.getLogger("emap.serve")


def add_arguments(s) -> None:
    s.add_argument("--host", help="address to listen on (default EMAP_HOST or 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default EMAP_PORT or 8050)")
    s.add_argument("--no-demo", action="store_true", help="do not create the demo on an empty store")
    s.add_argument("--threads", type=int, default=256, help="request threads (default 256)")
    s.add_argument(
        "--osmand-port",
        type=int,
        help="port of the phone listener, OsmAnd protocol (default EMAP_OSMAND_PORT or 5055; 0: off)",
    )
    s.add_argument(
        "--dev-server", action="store_true", help="use Flask's development server instead of waitress"
    )
    s.add_argument(
        "--no-live-demo",
        action="store_true",
        help="do not play a live demo day on a demo store (EMAP_LIVE_DEMO=0)",
    )
    s.add_argument(
        "--live-speedup",
        type=float,
        help="data seconds of the live demo day per second (default EMAP_LIVE_SPEEDUP or 1)",
    )
    s.add_argument(
        "--web-processes",
        type=int,
        help="worker processes answering the dashboard's callbacks, apart from ingest "
        "(default EMAP_WEB_PROCESSES or 1; 0: this process answers them)",
    )
    s.add_argument("--lake", help="serve a lake's partitions instead of the embedded store (EMAP_LAKE_DIR)")


def run(args, settings: Settings) -> int:
    try:
        logs.configure(settings)
    except ValueError as exc:  # a log setting that cannot be used: said before any log
        print(f"cannot serve: {exc}", file=sys.stderr)
        return 2
    from observe.routes import make_observe_blueprint
    from pages.app import build_app
    from reports import scheduler as report_scheduler

    if args.lake:
        settings = replace(settings, lake_dir=args.lake)
    try:
        store = open_store(settings)
    except RuntimeError as exc:  # a lake that cannot be served says why
        log.error("%s", exc)
        return 2
    if not settings.lake_dir:
        if args.no_demo:
            ensure_tree(store)  # an empty network, ready for imports and devices
        else:
            ensure_demo(store, settings)
    ensure_accounts(store, settings)
    channel = _owner_channel(store, settings)  # other processes reach the store through it
    scheduler = report_scheduler.start(store, settings)  # scheduled reports, one at a time
    metrics, health = observed(store)
    blueprints = _ingest(store, settings, metrics, health)
    pool = _web_pool(args, settings, store)  # before the app: it sets the shared session key
    try:
        app = build_app(
            store,
            settings,
            blueprints=[*blueprints, make_observe_blueprint(metrics, health, settings.metrics_token)],
            auth=True,
            warm=pool is None,  # with workers, they warm what their callbacks read
            metrics=metrics,
        )
    except ValueError as exc:  # a setting that cannot be used (EMAP_TRUSTED_PROXIES...)
        log.error("cannot serve: %s", exc)
        _close(store, blueprints, None, channel, scheduler, pool=pool)
        return 2
    if pool is not None:
        from cli.web_pool import install

        install(app, pool)
    host = args.host or settings.host
    port = args.port or settings.port
    try:
        phones = _phones(args, settings, blueprints, host, port)
    except OSError:
        _close(store, blueprints, None, channel, scheduler, pool=pool)
        return 2
    log.info("EMAP dashboard on http://%s:%s/", host, port)
    live = _live_demo(args, settings, store, blueprints, host, port, phones)  # waits for the port
    # SIGTERM (systemd, docker, kill) stops as Ctrl-C does: queued records are committed,
    # the store is closed and the owner socket removed. Open live streams end first: each
    # holds a request thread that waitress would otherwise wait for.
    stop = _stopper(getattr(app, "live_events", None))
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        _serve(app, args, settings, blueprints, host, port)
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        _close(store, blueprints, phones, channel, scheduler, live, pool)
    return 0


def _stopper(streams):
    """The signal handler that stops the server: ends ``streams`` (a live hub), then
    interrupts the serving loop."""

    def stop(*_signal) -> None:
        if streams is not None:
            streams.stop()
        raise KeyboardInterrupt

    return stop


def observed(store):
    """The metrics and health checks of this server, watching its store (embedded or lake)."""
    from data.store.watch import watch_store
    from observe.health import Health
    from observe.metrics import Metrics

    metrics, health = Metrics(), Health()
    watch_store(store, metrics, health)
    return metrics, health


def _ingest(store, settings: Settings, metrics, health) -> list:
    """The ingest API's blueprint, unless the store is a lake (written by its own pipeline)."""
    if settings.lake_dir:
        log.info(
            "Serving the lake %s: the ingest API is off (the lake is written by its own pipeline).",
            settings.lake_dir,
        )
        return []
    from data.ingest.http_api import make_ingest_blueprint

    return [make_ingest_blueprint(store, settings, metrics=metrics, health=health)]


def _phones(args, settings: Settings, blueprints: list, host: str, port: int):
    """The phone listener on its own port (an event loop, not a thread per phone waiting
    for its commit; in a process of its own unless ``EMAP_PHONE_PROCESS`` is off), or
    None. Raises OSError when a port asked for cannot be had."""
    osmand_port = settings.osmand_port if args.osmand_port is None else args.osmand_port
    if not blueprints or not osmand_port:
        return None
    from data.ingest.phone_listener import PhoneListener
    from data.ingest.phone_relay import PhoneRelay

    # A port asked for (flag or EMAP_OSMAND_PORT) must be had; the default may be taken
    # on a shared host (another tracking server, a second EMAP), and then the
    # dashboard still serves, with phones posting to /osmand on its own port.
    chosen = args.osmand_port is not None or "EMAP_OSMAND_PORT" in os.environ
    try:
        listener = PhoneRelay if settings.phone_process else PhoneListener
        phones = listener(blueprints[0].osmand, host, osmand_port).start()
    except OSError as exc:
        if chosen:
            log.error(
                "cannot listen for phones on %s:%s: %s (set EMAP_OSMAND_PORT or --osmand-port; "
                "0 turns the phone listener off)",
                host,
                osmand_port,
                exc,
            )
            raise
        log.warning(
            "the phone listener is off: cannot listen on %s:%s (%s); phones can post to "
            "http://%s:%s/osmand instead, or set EMAP_OSMAND_PORT or --osmand-port to a free port",
            host,
            osmand_port,
            exc,
            host,
            port,
        )
        return None
    log.info("EMAP phone listener (OsmAnd protocol) on http://%s:%s", host, phones.port)
    return phones


def _serve(app, args, settings: Settings, blueprints: list, host: str, port: int) -> None:
    trusted = logs.trusted_networks(settings)  # checked already by build_app
    if args.dev_server:
        if settings.access_log:
            app.server.wsgi_app = logs.AccessLog(app.server.wsgi_app, trusted, _phone_paths(blueprints))
        # werkzeug's own request lines would show query strings, tokens included
        app.run(host=host, port=port, debug=False, request_handler=logs.quiet_request_handler())
        return
    # waitress: a production WSGI server with a thread pool, pure Python.
    from waitress import serve

    # A phone request to /osmand on this port waits for its commit, holding a thread:
    # many threads and a high connection limit let fixes from many devices share one commit.
    wsgi = app.server
    if blueprints:
        from data.ingest.http_api import ingest_front

        wsgi = ingest_front(app.server, blueprints[0])  # phone fixes skip Dash/Flask routing
    if settings.access_log:
        # waitress logs no requests itself
        wsgi = logs.AccessLog(wsgi, trusted, _phone_paths(blueprints))
    # poll, not select: phones on the phone listener hold file descriptors of this process
    # too, and select() fails on any numbered past 1023. waitress buffers a body before the
    # app sees it: bodies past the ingest limit are refused (413) by waitress itself, so
    # none can take the memory.
    serve(
        wsgi,
        host=host,
        port=port,
        threads=args.threads,
        connection_limit=4000,
        asyncore_use_poll=True,
        ident="EMAP",
        # file imports (POST /api/v1/import) may be larger than batches: each route
        # checks its own limit, waitress refuses what passes both
        max_request_body_size=max(settings.ingest_max_body_bytes, settings.import_max_bytes) + 65536,
    )


def _phone_paths(blueprints: list) -> list[str]:
    """Paths of the phone protocols on the main port (``/osmand``, ``/osmand/``): their
    requests are logged at DEBUG."""
    paths = [p for bp in blueprints for p in getattr(bp, "phone_wsgi", {})]
    return paths + [p + "/" for p in paths]


def _owner_channel(store, settings: Settings):
    """The owner channel (:mod:`cli.owner`): commands of other processes run here, on this
    process's store, while it serves."""
    from cli import commands
    from cli.owner import OwnerServer

    try:
        return OwnerServer(store, settings, lambda argv: commands.run(argv, settings)).start()
    except OSError as exc:
        log.warning("the owner channel is off (%s): other commands need the server stopped", exc)
        return None


def _live_demo(args, settings: Settings, store, blueprints: list, host: str, port: int, phones):
    """The live demo day (:mod:`data.demo.live`) playing through this server's ingest
    paths from a thread, or None (turned off, no ingest, or not a demo store: said in
    the log). The thread waits until the server listens."""
    if args.no_live_demo or not settings.live_demo or not blueprints:
        return None
    from data.demo.live import LivePlayer

    speedup = settings.live_speedup if args.live_speedup is None else args.live_speedup
    local = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # a wildcard is reached on loopback
    phone_url = f"http://{local}:{phones.port}" if phones is not None else None
    return LivePlayer(
        store, f"http://{local}:{port}", phone_url, speedup=speedup, local_tz=settings.local_tz
    ).start()


def _web_pool(args, settings: Settings, store):
    """The web workers (:mod:`cli.web_pool`), started, or None (none asked for, or a lake:
    its partitions are read where they are served)."""
    n = settings.web_processes if args.web_processes is None else args.web_processes
    if n <= 0:
        return None
    if settings.lake_dir:
        log.info("Serving a lake: the dashboard's callbacks are answered by this process.")
        return None
    from cli.web_pool import WebPool

    log.info("starting %d web worker(s) for the dashboard's callbacks", n)
    return WebPool(store, n, nice=settings.web_nice).start()


def _close(store, blueprints: list, phones, channel=None, scheduler=None, live=None, pool=None) -> None:
    if live is not None:
        live.stop()  # first: its requests need the server and the writer
    if pool is not None:
        pool.close()  # the workers' reads go through this store
    if scheduler is not None:
        scheduler.close()  # before the store: a report being made finishes first
    if channel is not None:
        channel.close()
    if phones is not None:
        phones.close()
    for bp in blueprints:
        committer = getattr(bp, "committer", None)
        if committer is not None:
            committer.close()  # acknowledged records are already committed; stop cleanly
    store.close()
