"""The command line: each subcommand and the module of ``cli/`` that runs it.

A module gives ``add_arguments(parser)`` and ``run(args, settings) -> int``; it is
imported only when its command runs (or for ``--help`` of all), so a command starts
without loading what the others need. With a server holding the
store, the commands of :data:`cli.owner.THROUGH_OWNER` run inside it (:mod:`cli.owner`);
they behave the same either way.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cli import owner
from cli.store import StoreHeld, owner_socket
from config import Settings

#: Each subcommand: the module of ``cli/`` that runs it, and its one-line help.
COMMANDS = {
    "serve": ("cli.serve", "serve the dashboard (default)"),
    "demo": ("cli.demo", "generate the demo network and days"),
    "import": ("cli.import_files", "load CSV/Parquet files of pings, events, outlets, couriers"),
    "replay": ("cli.replay", "stream a generated day to a running server's ingest API"),
    "tokens": ("cli.tokens", "create, list or revoke ingest API tokens"),
    "users": ("cli.users", "create, list, set-role, reset-password, disable or enable users"),
    "devices": ("cli.devices", "register, attach, list devices, or register them in bulk from a CSV file"),
    "export": ("cli.export", "export a heatmap report: html, png, pdf, geojson, csv, parquet"),
    "backtest": ("cli.forecast", "replay a day hour by hour and score the workload forecast"),
    "simulate": ("cli.forecast", "apply dispatch suggestions over a day and compare before/after"),
    "status": ("cli.status", "show what the store holds"),
    "backup": ("cli.backup", "write a consistent copy of the store, also while a server runs"),
    "ingest": ("cli.ingest", "serve only the ingest API and the phone listener (a dedicated ingest port)"),
    "lake": ("cli.lake", "Parquet lake: export, build days with Spark (lake spark), copy, list"),
}


def parser(description: str = "", only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser. With ``only``, the options of that subcommand alone are
    set up (each subcommand's module imports what it needs: a command starts faster)."""
    p = argparse.ArgumentParser(
        prog="python app.py", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command")
    for name, (module_name, text) in COMMANDS.items():
        command = sub.add_parser(name, help=text)
        if only is None or only == name:
            module = importlib.import_module(module_name)
            module.add_arguments(command)
            command.set_defaults(func=module.run)
    return p


def run(argv: list[str], settings: Settings) -> int:
    """Parse and run one subcommand here (the owner channel runs requests with this)."""
    args = parser(only=argv[0] if argv else None).parse_args(argv)
    return args.func(args, settings)


def main(argv: list[str] | None = None, description: str = "") -> int:
    """Parse ``argv`` (default: the process's arguments) and run the subcommand: in the
    serving process when one holds the store, else here."""
    argv = owner.normalise(list(sys.argv[1:] if argv is None else argv))
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["serve", *argv]
    args = parser(description, only=argv[0] if argv[0] in COMMANDS else None).parse_args(
        argv
    )  # usage errors here
    settings = Settings.from_env()
    through_owner = _through_owner(args)
    if (through_owner or args.command == "demo") and owner.answering(settings):
        if args.command == "demo":
            print(
                f"error: a server holds the store {settings.db_path} (it answers on {owner_socket(settings)}); "
                "stop it to generate a demo, or use another store (EMAP_DATA_DIR)",
                file=sys.stderr,
            )
            return 2
        check = getattr(importlib.import_module(COMMANDS[args.command][0]), "check_here", None)
        problem = check(args) if check else None
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        return owner.run_remote(argv, settings, owner.plan(argv, args))
    try:
        return args.func(args, settings)
    except StoreHeld as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _through_owner(args) -> bool:
    if args.command not in owner.THROUGH_OWNER:
        return False
    # the Spark job and copies between lakes work on lakes, not on the store
    return not (args.command == "lake" and args.lake_action != "export")
