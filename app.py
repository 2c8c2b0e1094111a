"""EMAP: the operations electronic map of an express-delivery network.

The one entry point. ``python app.py`` serves the dashboard on the embedded store,
creating the database and the demo network on first run. Subcommands:

  serve    serve the dashboard (the default)
  demo     generate the demo network and days into the store
  import   load CSV or Parquet files of pings, parcel events, outlets or couriers
  replay   stream a generated day to a running server's ingest API
  tokens   create, list or revoke ingest API tokens
  users    create, list, set-role, reset-password, disable or enable users
  export   export a heatmap report (HTML, PNG, PDF, GeoJSON, CSV, GeoParquet)
  backtest score the workload forecast hour by hour over a day
  simulate apply dispatch suggestions over a day: before / after
  status   show what the store holds
  lake     the Parquet lake: export the store to it, build days with Spark, copy tiers

With EMAP_LAKE_DIR set (or serve --lake DIR), the dashboard reads a lake's partitions
instead of the embedded store's records.

Settings come from config.py and EMAP_* environment variables (see README).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date

from config import Settings


def _store(settings: Settings, read_only: bool = False):
    from data.store import open_store

    return open_store(settings, read_only=read_only)


def _say(start: float):
    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f}s] {msg}", flush=True)

    return say


def ensure_demo(store, settings: Settings) -> None:
    """Generate the demo on first run; reuse it afterwards."""
    from data import demo

    if store.meta("demo_size") is not None or store.scalar("SELECT EXISTS (SELECT 1 FROM pings)"):
        return
    t0 = time.perf_counter()
    print(f"First run: creating {settings.db_path} with the '{settings.demo_size}' demo network.")
    totals = demo.generate(store, size=settings.demo_size, seed=settings.demo_seed, days=settings.demo_days,
                           progress=_say(t0))
    print(f"Demo ready in {time.perf_counter() - t0:.0f}s: {totals['pings']:,} pings, "
          f"{totals['parcel_events']:,} parcel events.")
    from auth.demo import create_accounts

    create_accounts(store, settings.data_dir)


def _ensure_tree(store) -> None:
    """A store without an organisation tree gets the one built from the boundaries."""
    if not store.has_tree():
        from geo.hierarchy import load_tree

        print("building the organisation tree from the China boundaries", file=sys.stderr)
        store.save_tree(load_tree())


def _ensure_accounts(store, settings: Settings) -> None:
    """A demo store made before accounts existed gets them; any other store without a
    user says how to create one."""
    from auth import users

    users.ensure_tables(store)
    if store.scalar("SELECT count(*) FROM users") > 0:
        return
    if store.meta("demo_size") is not None:
        from auth.demo import create_accounts

        create_accounts(store, settings.data_dir)
    else:
        print("No users yet: python app.py users create NAME --role admin --node hq", flush=True)


def cmd_serve(args, settings: Settings) -> int:
    from dashapp import build_app

    if args.lake:
        from dataclasses import replace

        settings = replace(settings, lake_dir=args.lake)
    try:
        store = _store(settings)
    except RuntimeError as exc:  # a lake that cannot be served says why
        print(exc, file=sys.stderr)
        return 2
    if not settings.lake_dir:
        if args.no_demo:
            _ensure_tree(store)  # an empty network, ready for imports and devices
        else:
            ensure_demo(store, settings)
    _ensure_accounts(store, settings)
    blueprints = []
    try:
        from data.http_api import make_ingest_blueprint
    except ImportError:
        make_ingest_blueprint = None
    if settings.lake_dir:
        print(f"Serving the lake {settings.lake_dir}: the ingest API is off (the lake is "
              "written by its own pipeline).", flush=True)
    elif make_ingest_blueprint is not None:
        blueprints.append(make_ingest_blueprint(store, settings))
    try:
        app = build_app(store, settings, blueprints=blueprints, auth=True)
    except ValueError as exc:  # a setting that cannot be used (EMAP_TRUSTED_PROXIES...)
        print(f"cannot serve: {exc}", file=sys.stderr)
        return 2
    host = args.host or settings.host
    port = args.port or settings.port
    osmand_port = settings.osmand_port if args.osmand_port is None else args.osmand_port
    phones = None
    if blueprints and osmand_port:
        # phones on their own port: an event loop, not a thread per phone waiting for its commit
        from data.phone_listener import PhoneListener

        # A port asked for (flag or EMAP_OSMAND_PORT) must be had; the default may be taken
        # on a shared host (another tracking server, a second EMAP), and then the
        # dashboard still serves, with phones posting to /osmand on its own port.
        chosen = args.osmand_port is not None or "EMAP_OSMAND_PORT" in os.environ
        try:
            phones = PhoneListener(blueprints[0].osmand, host, osmand_port).start()
        except OSError as exc:
            if chosen:
                print(f"cannot listen for phones on {host}:{osmand_port}: {exc} (set EMAP_OSMAND_PORT or "
                      "--osmand-port; 0 turns the phone listener off)", file=sys.stderr)
                blueprints[0].committer.close()
                store.close()
                return 2
            print(f"warning: the phone listener is off: cannot listen on {host}:{osmand_port} ({exc}); "
                  f"phones can post to http://{host}:{port}/osmand instead, or set EMAP_OSMAND_PORT "
                  "or --osmand-port to a free port", file=sys.stderr, flush=True)
        if phones is not None:
            print(f"EMAP phone listener (OsmAnd protocol) on http://{host}:{phones.port}", flush=True)
    print(f"EMAP dashboard on http://{host}:{port}/", flush=True)
    try:
        if args.dev_server:
            app.run(host=host, port=port, debug=False)
        else:
            # waitress: a production WSGI server with a thread pool, pure Python.
            from waitress import serve

            # A phone request to /osmand on this port waits for its commit, holding a
            # thread: many threads and a high connection limit let fixes from many devices
            # share one commit.
            wsgi = app.server
            if blueprints:
                from data.http_api import ingest_front

                wsgi = ingest_front(app.server, blueprints[0])  # phone fixes skip Dash/Flask routing
            # poll, not select: phones on the phone listener hold file descriptors of this
            # process too, and select() fails on any numbered past 1023
            # waitress buffers a body before the app sees it: bodies past the ingest limit
            # are refused (413) by waitress itself, so none can take the memory.
            serve(wsgi, host=host, port=port, threads=args.threads, connection_limit=4000,
                  asyncore_use_poll=True, ident="EMAP",
                  max_request_body_size=settings.ingest_max_body_bytes + 65536)
    finally:
        if phones is not None:
            phones.close()
        for bp in blueprints:
            committer = getattr(bp, "committer", None)
            if committer is not None:
                committer.close()  # acknowledged records are already committed; stop cleanly
        store.close()
    return 0


def cmd_demo(args, settings: Settings) -> int:
    from data import demo

    store = _store(settings)
    t0 = time.perf_counter()
    end = date.fromisoformat(args.end_date) if args.end_date else None
    totals = demo.generate(store, size=args.size, seed=args.seed, days=args.days, end_date=end,
                           progress=_say(t0))
    print(f"stored {totals['pings']:,} pings and {totals['parcel_events']:,} parcel events "
          f"({totals['refused']:,} generated positions fell outside every territory and were dropped) "
          f"in {time.perf_counter() - t0:.1f}s")
    return 0


def cmd_import(args, settings: Settings) -> int:
    from data.importer import ImportFileError, import_file, print_progress

    store = _store(settings)
    _ensure_tree(store)
    status = 0
    for path in args.files:
        t0 = time.perf_counter()
        try:
            report = import_file(store, path, kind=args.kind, batch_rows=args.batch_rows,
                                 local_tz=settings.local_tz, progress=print_progress)
        except ImportFileError as exc:
            print(f"\nerror: {exc}", file=sys.stderr)
            status = 2
            continue
        rate = report.rows / max(time.perf_counter() - t0, 1e-9)
        print(f"\n{report.line()} ({rate:,.0f} rows/s)")
        if report.rejected:
            print(f"  rejected rows are in the quarantine table (source = '{report.path}')")
    return status


def cmd_replay(args, settings: Settings) -> int:
    from data import replay

    report = replay.run_from_args(args, local_tz=settings.local_tz)
    return 0 if report.rejected == 0 or args.allow_rejected else 1


def cmd_tokens(args, settings: Settings) -> int:
    from data import tokens

    store = _store(settings)
    tokens.ensure_table(store)
    if args.action == "create":
        if not args.subject:
            print("error: tokens create needs --device ID or --system NAME", file=sys.stderr)
            return 2
        try:
            secret = tokens.create_token(store, args.kind, args.subject, node_id=args.node)
        except (ValueError, LookupError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        bound = f" (records inside {args.node} only)" if args.node else ""
        print(f"{args.kind} token for {args.subject}{bound}: {secret}")
        print("It is shown once; the store keeps only its hash.")
    elif args.action == "list":
        print(tokens.list_tokens(store))
    else:
        if not args.token_id:
            print("error: tokens revoke needs --id TOKEN_ID (see tokens list)", file=sys.stderr)
            return 2
        n = tokens.revoke_token(store, args.token_id)
        print(f"revoked {n} token(s)")
        return 0 if n else 1
    return 0


def cmd_users(args, settings: Settings) -> int:
    from auth import cli

    return cli.run(args, settings)


def cmd_export(args, settings: Settings) -> int:
    from reports import cli

    return cli.run(args, settings)


def cmd_forecast(args, settings: Settings) -> int:
    from data import forecast_cli

    return forecast_cli.run(args, settings)


def cmd_status(args, settings: Settings) -> int:
    store = _store(settings, read_only=True)
    print(f"store: {settings.db_path}")
    for table, n in store.counts().items():
        print(f"  {table:15s} {n:>12,}")
    return 0


def cmd_lake(args, settings: Settings) -> int:
    from lake import cli as lake_cli

    return lake_cli.run(args, lambda: _store(settings, read_only=True))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python app.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")

    s = sub.add_parser("serve", help="serve the dashboard (default)")
    s.add_argument("--host", help="address to listen on (default EMAP_HOST or 127.0.0.1)")
    s.add_argument("--port", type=int, help="port (default EMAP_PORT or 8050)")
    s.add_argument("--no-demo", action="store_true", help="do not create the demo on an empty store")
    s.add_argument("--threads", type=int, default=256, help="request threads (default 256)")
    s.add_argument("--osmand-port", type=int,
                   help="port of the phone listener, OsmAnd protocol (default EMAP_OSMAND_PORT or 5055; 0: off)")
    s.add_argument("--dev-server", action="store_true", help="use Flask's development server instead of waitress")
    s.add_argument("--lake", help="serve a lake's partitions instead of the embedded store (EMAP_LAKE_DIR)")
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("demo", help="generate the demo network and days")
    d.add_argument("--size", choices=["small", "default", "large"], default="default",
                   help="small: 2 cities, 400 couriers; default: 10 cities, 6,000 couriers, "
                        "~4 M pings a day; large: 20,000 couriers, ~40 M pings a day")
    d.add_argument("--seed", type=int, default=7, help="random seed (same seed, same data)")
    d.add_argument("--days", type=int, default=3, help="number of days ending at --end-date (default 3)")
    d.add_argument("--end-date", help="newest day, YYYY-MM-DD (default: yesterday, local time)")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("import", help="load CSV/Parquet files of pings, events, outlets, couriers")
    i.add_argument("files", nargs="+", help="files to import (.csv or .parquet)")
    i.add_argument("--kind", choices=["pings", "parcel_events", "outlets", "couriers"],
                   help="what the files hold (default: guessed from name or columns)")
    i.add_argument("--batch-rows", type=int, default=1_000_000, help="rows per batch (memory bound)")
    i.set_defaults(func=cmd_import)

    r = sub.add_parser("replay", help="stream a generated day to a running server's ingest API")
    try:
        from data import replay

        replay.add_arguments(r)
    except ImportError:
        pass
    r.add_argument("--allow-rejected", action="store_true", help="exit 0 even if records were rejected")
    r.set_defaults(func=cmd_replay)

    t = sub.add_parser("tokens", help="create, list or revoke ingest API tokens (server stopped)")
    t.add_argument("action", choices=["create", "list", "revoke"])
    grp = t.add_mutually_exclusive_group()
    grp.add_argument("--device", dest="subject_device", help="device id the token may write for")
    grp.add_argument("--system", dest="subject_system", help="name of an operations system")
    t.add_argument("--id", dest="token_id", help="token id to revoke")
    t.add_argument("--node", help="bind a system token to a node: records outside it are rejected")
    t.set_defaults(func=cmd_tokens)

    u = sub.add_parser("users", help="create, list, set-role, reset-password, disable users (server stopped)")
    from auth import cli as users_cli

    users_cli.add_arguments(u)
    u.set_defaults(func=cmd_users)

    e = sub.add_parser("export", help="export a heatmap report: html, png, pdf, geojson, csv, parquet")
    from reports import cli as report_cli

    report_cli.add_arguments(e)
    e.set_defaults(func=cmd_export)

    from data import forecast_cli

    b = sub.add_parser("backtest", help="replay a day hour by hour and score the workload forecast")
    forecast_cli.add_arguments(b)
    b.set_defaults(func=cmd_forecast)
    m = sub.add_parser("simulate", help="apply dispatch suggestions over a day and compare before/after")
    forecast_cli.add_arguments(m)
    m.set_defaults(func=cmd_forecast)

    st = sub.add_parser("status", help="show what the store holds")
    st.set_defaults(func=cmd_status)

    lk = sub.add_parser("lake", help="Parquet lake: export, build days with Spark (lake spark), copy, list")
    from lake import cli as lake_cli

    lake_cli.add_arguments(lk)
    lk.set_defaults(func=cmd_lake)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "action", None) is not None and args.command == "tokens":
        args.kind = "device" if args.subject_device else "system"
        args.subject = args.subject_device or args.subject_system
    settings = Settings.from_env()
    if args.command is None:
        args = parser().parse_args(["serve", *(argv or [])])
    return args.func(args, settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
