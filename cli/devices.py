"""``python app.py devices``: register phones and trackers, attach them to couriers or
vehicles, list them, or register a fleet from a CSV file."""

from __future__ import annotations

import sys

from cli import context
from cli.store import open_store
from config import Settings


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="devices_action", required=True)
    for name, text in (("register", "register a new device"), ("attach", "attach a device to another owner")):
        a = sub.add_parser(name, help=text)
        a.add_argument("device_id", help="the device id the phone or tracker reports")
        owner = a.add_mutually_exclusive_group(required=True)
        owner.add_argument("--courier", help="courier id the device belongs to")
        owner.add_argument("--vehicle", help="vehicle id the device belongs to")
    sub.add_parser("list", help="list the devices with their courier or vehicle and branch")
    b = sub.add_parser("bulk", help="register or re-attach the devices of a CSV file")
    b.add_argument("file", help="CSV with a header: device_id, courier_id and/or vehicle_id")


def run(args, settings: Settings) -> int:
    from auth import users
    from data.store import devices

    store = open_store(settings)
    by = context.operator_label()
    try:
        users.ensure_tables(store)
        if args.devices_action == "list":
            import polars as pl

            with pl.Config(tbl_rows=-1, tbl_cols=-1):
                print(devices.list_devices(store))
            return 0
        if args.devices_action == "bulk":
            result = devices.bulk(store, args.file)
            for line, why in result.refused:
                print(f"line {line}: {why}", file=sys.stderr)
            users.audit(
                store,
                by,
                "device_change",
                f"bulk: {result.registered} written, {len(result.refused)} lines refused",
            )
            print(f"{result.registered} devices written, {len(result.refused)} lines refused")
            return 0 if not result.refused else 1
        change = devices.register if args.devices_action == "register" else devices.attach
        change(store, args.device_id, courier_id=args.courier, vehicle_id=args.vehicle)
        users.audit(
            store,
            by,
            "device_change",
            f"{args.devices_action} {args.device_id} courier={args.courier} vehicle={args.vehicle}",
        )
        print(f"{args.devices_action}: {args.device_id} -> {args.courier or args.vehicle}")
        return 0
    except devices.DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
