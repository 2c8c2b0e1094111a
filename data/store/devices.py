"""Devices: which phone or tracker reports for which courier or vehicle.

A fix is stored only for a registered device (unless ``auto_register_devices`` is on):
the device names the courier or vehicle it belongs to, and through them the branch. An
operator registers devices one by one, re-attaches one to another courier or vehicle,
or registers a whole fleet from a CSV file (``device_id`` and one of ``courier_id`` /
``vehicle_id`` per line). Every change takes effect for the next commit of the ingest
writer (the store forgets its device map on each change); callers audit it.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from data.store.database import Store

#: A device id: 1 to 64 characters, no control characters or spaces at either end.
_DEVICE_ID = re.compile(r"^[^\x00-\x1f\x7f\s](?:[^\x00-\x1f\x7f]{0,62}[^\x00-\x1f\x7f\s])?$")
_SCHEMA = {
    "device_id": pl.String,
    "courier_id": pl.String,
    "vehicle_id": pl.String,
    "registered_at": pl.Datetime("us"),
}
#: Lines of a bulk file read at most (a fleet, not a data set).
MAX_BULK_LINES = 1_000_000


class DeviceError(ValueError):
    """A device change that cannot be made; the message says why."""


@dataclass
class BulkResult:
    """What a bulk registration did: rows registered, and each refused line with why."""

    registered: int = 0
    refused: list[tuple[int, str]] = field(default_factory=list)


def check_device_id(device_id: str) -> str:
    """``device_id`` if it is a usable id, else :class:`DeviceError`.

    >>> check_device_id("phone-001")
    'phone-001'
    >>> check_device_id(" x")
    Traceback (most recent call last):
    ...
    data.store.devices.DeviceError: a device id is 1-64 characters, without control characters or spaces at either end
    """
    if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
        raise DeviceError(
            "a device id is 1-64 characters, without control characters or spaces at either end"
        )
    return device_id


def _owner(store: Store, courier_id: str | None, vehicle_id: str | None) -> tuple[str | None, str | None]:
    courier_id = (courier_id or "").strip() or None
    vehicle_id = (vehicle_id or "").strip() or None
    if (courier_id is None) == (vehicle_id is None):
        raise DeviceError("give exactly one of a courier or a vehicle")
    table, key, value = (
        ("couriers", "courier_id", courier_id) if courier_id else ("vehicles", "vehicle_id", vehicle_id)
    )
    if not store.cursor().execute(f"SELECT 1 FROM {table} WHERE {key} = ?", [value]).fetchone():
        raise DeviceError(f"no {key[:-3]} {value!r}")
    return courier_id, vehicle_id


def _exists(store: Store, device_id: str) -> bool:
    return bool(store.cursor().execute("SELECT 1 FROM devices WHERE device_id = ?", [device_id]).fetchone())


def _write(store: Store, rows: list[tuple[str, str | None, str | None]]) -> None:
    now = datetime.now(UTC).replace(tzinfo=None)
    frame = pl.DataFrame([(d, c, v, now) for d, c, v in rows], schema=_SCHEMA, orient="row")
    store.upsert("devices", frame, "device_id")


def register(
    store: Store, device_id: str, courier_id: str | None = None, vehicle_id: str | None = None
) -> None:
    """Register a new device for a courier or a vehicle (:class:`DeviceError` if it exists)."""
    check_device_id(device_id)
    courier_id, vehicle_id = _owner(store, courier_id, vehicle_id)
    if _exists(store, device_id):
        raise DeviceError(f"device {device_id!r} is registered; attach it to move it")
    _write(store, [(device_id, courier_id, vehicle_id)])


def attach(
    store: Store, device_id: str, courier_id: str | None = None, vehicle_id: str | None = None
) -> None:
    """Attach a registered device to another courier or vehicle."""
    if not _exists(store, device_id):
        raise DeviceError(f"no device {device_id!r}; register it first")
    courier_id, vehicle_id = _owner(store, courier_id, vehicle_id)
    _write(store, [(device_id, courier_id, vehicle_id)])


def list_devices(store: Store) -> pl.DataFrame:
    """Every device with its courier or vehicle and branch."""
    return store.sql("""
        SELECT d.device_id, d.courier_id, d.vehicle_id, coalesce(c.branch_id, v.branch_id) AS branch_id,
               d.registered_at
        FROM devices d LEFT JOIN couriers c USING (courier_id) LEFT JOIN vehicles v USING (vehicle_id)
        ORDER BY d.device_id""")


def bulk(store: Store, path: str | Path) -> BulkResult:
    """Register or re-attach the devices of a CSV file (header: ``device_id`` and
    ``courier_id`` and/or ``vehicle_id``). A line that cannot be used is refused with its
    line number and reason; every other line is written, in one transaction."""
    result = BulkResult()
    rows: dict[str, tuple[str, str | None, str | None]] = {}
    couriers = {r[0] for r in store.cursor().execute("SELECT courier_id FROM couriers").fetchall()}
    vehicles = {r[0] for r in store.cursor().execute("SELECT vehicle_id FROM vehicles").fetchall()}
    with open(path, "rb") as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="replace", newline="")
        reader = csv.reader(text)
        header = [h.strip().lower() for h in next(reader, [])]
        if "device_id" not in header or not {"courier_id", "vehicle_id"} & set(header):
            raise DeviceError("the file needs a header with device_id and courier_id or vehicle_id")
        for line in reader:
            number = reader.line_num
            if number > MAX_BULK_LINES:
                result.refused.append((number, f"more than {MAX_BULK_LINES:,} lines: the rest was not read"))
                break
            why = _bulk_line(header, line, couriers, vehicles, rows)
            if why:
                result.refused.append((number, why))
    if rows:
        _write(store, list(rows.values()))
    result.registered = len(rows)
    return result


def _bulk_line(header: list[str], line: list[str], couriers: set, vehicles: set, rows: dict) -> str | None:
    """Add one line's device to ``rows``; the reason it is refused, or None."""
    if len(line) != len(header):
        return f"{len(line)} fields where the header has {len(header)}"
    record = dict(zip(header, (v.strip() for v in line)))
    try:
        device_id = check_device_id(record.get("device_id", ""))
    except DeviceError as exc:
        return str(exc)
    courier_id = record.get("courier_id") or None
    vehicle_id = record.get("vehicle_id") or None
    if (courier_id is None) == (vehicle_id is None):
        return "give exactly one of courier_id or vehicle_id"
    if courier_id is not None and courier_id not in couriers:
        return f"no courier {courier_id!r}"
    if vehicle_id is not None and vehicle_id not in vehicles:
        return f"no vehicle {vehicle_id!r}"
    if device_id in rows:
        return f"device {device_id!r} is listed twice (the first line is kept)"
    rows[device_id] = (device_id, courier_id, vehicle_id)
    return None
