"""``python app.py ingest`` (or ``python -m cli.ingest``): the ingest API alone, with its
phone listener, for a dedicated ingest port, tests and benchmarks."""

from __future__ import annotations

import logging
import signal
import sys

from cli import logs
from config import Settings

log = logging.getLogger("emap.ingest")


def add_arguments(parser) -> None:
    parser.add_argument("--db", help="DuckDB file (default: the configured one)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8060)
    parser.add_argument(
        "--threads",
        type=int,
        default=512,
        help="request threads (waitress); each unanswered phone request holds one",
    )
    parser.add_argument(
        "--osmand-port",
        type=int,
        default=None,
        help="port of the phone listener (default EMAP_OSMAND_PORT, 5055; 0: off)",
    )
    parser.add_argument("--server", choices=("waitress", "werkzeug"), default="waitress")
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=0.005,
        help="seconds between GIL hand-overs (short: the writer thread, which "
        "returns from DuckDB/polars often, is not starved by request threads)",
    )


def run(args, settings: Settings) -> int:
    try:
        logs.configure(settings)
    except ValueError as exc:  # a log setting that cannot be used: said before any log
        print(f"cannot serve: {exc}", file=sys.stderr)
        return 2
    try:
        trusted = logs.trusted_networks(settings)
    except ValueError as exc:
        log.error("cannot serve: %s", exc)
        return 2
    from data.ingest.http_api import ingest_front, make_app
    from data.store.database import Store

    sys.setswitchinterval(args.switch_interval)
    store = Store(args.db or settings.db_path)
    app = make_app(store, settings)
    blueprint = app.blueprints["ingest"]
    committer = blueprint.committer
    wsgi = ingest_front(app, blueprint)
    if settings.access_log:
        paths = list(blueprint.phone_wsgi)
        wsgi = logs.AccessLog(wsgi, trusted, paths + [p + "/" for p in paths])
    osmand_port = settings.osmand_port if args.osmand_port is None else args.osmand_port
    phones = None

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        if osmand_port:
            from data.ingest.phone_listener import PhoneListener

            try:
                phones = PhoneListener(blueprint.osmand, args.host, osmand_port).start()
            except OSError as exc:
                log.error(
                    "cannot listen for phones on %s:%s: %s (--osmand-port; 0: off)",
                    args.host,
                    osmand_port,
                    exc,
                )
                return 2
            log.info("EMAP phone listener (OsmAnd) on http://%s:%s", args.host, phones.port)
        log.info("EMAP ingest listening on http://%s:%s", args.host, args.port)
        if args.server == "waitress":
            from waitress import serve

            # poll, not select: the phone listener's connections share this process's file
            # descriptors, and select() fails on any numbered past 1023
            serve(
                wsgi,
                host=args.host,
                port=args.port,
                threads=args.threads,
                connection_limit=4000,
                asyncore_use_poll=True,
                channel_timeout=60,
                backlog=2048,
                ident="emap",
                # bodies are buffered by waitress (on disk past 1 MB) before the app reads them;
                # file imports are the largest (each route checks its own limit)
                max_request_body_size=max(settings.ingest_max_body_bytes, settings.import_max_bytes) + 65536,
            )
        else:
            from werkzeug.serving import WSGIRequestHandler, run_simple

            WSGIRequestHandler.protocol_version = "HTTP/1.1"
            # werkzeug's own request lines would show query strings, tokens included
            run_simple(
                args.host, args.port, wsgi, threaded=True, request_handler=logs.quiet_request_handler()
            )
    except KeyboardInterrupt:
        pass
    finally:
        if phones is not None:
            phones.close()
        committer.close()
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    from cli.commands import COMMANDS

    parser = argparse.ArgumentParser(prog="python -m cli.ingest", description=COMMANDS["ingest"][1])
    add_arguments(parser)
    return run(parser.parse_args(argv), Settings.from_env())


if __name__ == "__main__":
    sys.exit(main())
