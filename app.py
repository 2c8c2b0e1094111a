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
  ingest   serve only the ingest API and the phone listener (a dedicated ingest port)
  lake     the Parquet lake: export the store to it, build days with Spark, copy tiers

With EMAP_LAKE_DIR set (or serve --lake DIR), the dashboard reads a lake's partitions
instead of the embedded store's records.

Settings come from config/__init__.py and EMAP_* environment variables (see README).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from config import Settings

#: Each subcommand and the module of ``cli/`` that runs it. A module gives ``HELP`` (a
#: string, or a dict by command when it serves several), ``add_arguments(parser)`` and
#: ``run(args, settings) -> int``.
COMMANDS = {
    "serve": "cli.serve",
    "demo": "cli.demo",
    "import": "cli.import_files",
    "replay": "cli.replay",
    "tokens": "cli.tokens",
    "users": "cli.users",
    "export": "cli.export",
    "backtest": "cli.forecast",
    "simulate": "cli.forecast",
    "status": "cli.status",
    "ingest": "cli.ingest",
    "lake": "cli.lake",
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python app.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        text = module.HELP[name] if isinstance(module.HELP, dict) else module.HELP
        command = sub.add_parser(name, help=text)
        module.add_arguments(command)
        command.set_defaults(func=module.run)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS and argv[0] not in ("-h", "--help"):
        argv = ["serve", *argv]
    args = parser().parse_args(argv)
    return args.func(args, Settings.from_env())


if __name__ == "__main__":
    sys.exit(main())
