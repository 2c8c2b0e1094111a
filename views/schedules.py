"""Scheduled reports for one viewer: creating, listing, pausing and downloading them,
what is due at a given time, and running one under its creator's rights of the moment.

A schedule runs as the user who created it, with that user's **current** row: at each
run the creator's role, node and disabled flag are read again and turned into a
:class:`~auth.viewer.Viewer`. A creator who was disabled, became a viewer or no longer
holds the schedule's node stops the schedule, with the reason stored and shown; nothing
is produced. The report itself is made by a function handed in by the caller (the
runner in ``reports/scheduler.py``): this layer does not import the renderers.

Periods, in the network's local time (``settings.local_tz``):

* ``hour``: every hour at the minute of ``at_time``, the previous whole hour;
* ``day``: every day at ``at_time``, the day before;
* ``week``: every Monday at ``at_time``, the seven days before (Monday to Sunday).

Examples
--------
>>> from datetime import datetime
>>> due_period({"period": "day", "at_time": "06:30"}, datetime(2026, 11, 21, 7, 0)).slug()
'2026-11-20'
>>> due_period({"period": "day", "at_time": "06:30"}, datetime(2026, 11, 21, 6, 0)).slug()
'2026-11-19'
>>> due_period({"period": "hour", "at_time": "00:05"}, datetime(2026, 11, 21, 10, 7)).slug()
'2026-11-21T09'
>>> due_period({"period": "week", "at_time": "08:00"}, datetime(2026, 11, 25, 9, 0)).slug()
'2026-11-16+7d'
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from auth import users
from auth.viewer import OutsideScope, Viewer, of_store
from data.store import schedules as table
from data.store.database import ScopeError
from layers.hexes import METRICS

log = logging.getLogger(__name__)

PERIODS = ("hour", "day", "week")
#: The report formats (``reports.FORMATS``; a test keeps the two the same).
FORMATS = ("html", "png", "pdf", "geojson", "csv", "parquet")
LANGS = ("zh", "en")
#: Most outputs a schedule may keep.
KEEP_MAX = 100
_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
#: Output file names: made here from checked parts, and checked again before any read.
_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_ID = re.compile(r"[0-9a-f]{12}")


class ScheduleError(ValueError):
    """A schedule that cannot be made or changed as asked (the message says why)."""


@dataclass(frozen=True)
class Due:
    """The period a schedule produces: one local hour of ``day`` or ``days`` days from it."""

    day: str
    hour: int | None = None
    days: int = 1

    def slug(self) -> str:
        """As ``reports.build.Period.slug``."""
        if self.hour is not None:
            return f"{self.day}T{self.hour:02d}"
        return self.day if self.days == 1 else f"{self.day}+{self.days}d"


# -- time -------------------------------------------------------------------------------------
def local_now(settings, now: datetime | None = None) -> tuple[datetime, datetime]:
    """``(utc, local)`` naive datetimes of ``now`` (an aware time, or naive UTC; default: now)."""
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    utc = now.astimezone(UTC).replace(tzinfo=None)
    local = now.astimezone(ZoneInfo(settings.local_tz)).replace(tzinfo=None)
    return utc, local


def due_period(schedule: dict, now_local: datetime) -> Due:
    """The newest period of ``schedule`` whose run time has come at ``now_local``."""
    hh, mm = (int(x) for x in schedule["at_time"].split(":"))
    kind = schedule["period"]
    if kind == "hour":
        run = now_local.replace(minute=mm, second=0, microsecond=0)
        if run > now_local:
            run -= timedelta(hours=1)
        start = run.replace(minute=0) - timedelta(hours=1)
        return Due(start.date().isoformat(), start.hour)
    run = now_local.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if kind == "week":
        run -= timedelta(days=run.weekday())
        if run > now_local:
            run -= timedelta(days=7)
        return Due((run.date() - timedelta(days=7)).isoformat(), None, 7)
    if run > now_local:
        run -= timedelta(days=1)
    return Due((run.date() - timedelta(days=1)).isoformat())


def is_due(schedule: dict, now_utc: datetime, now_local: datetime, retry_seconds: float) -> Due | None:
    """The period to produce now, or None: paused, stopped, already produced, or failed
    less than ``retry_seconds`` ago."""
    if schedule["paused"] or schedule["stopped"]:
        return None
    due = due_period(schedule, now_local)
    if schedule["last_period"] is not None and due.slug() <= schedule["last_period"]:
        return None
    tried = schedule["last_attempt_at"]
    if schedule["last_error"] and tried is not None and (now_utc - tried).total_seconds() < retry_seconds:
        return None
    return due


def due_now(store, settings, now: datetime | None = None) -> list[tuple[dict, Due]]:
    """Every schedule due at ``now`` with the period it produces, oldest schedule first."""
    utc, local = local_now(settings, now)
    out = []
    for s in table.active(store):
        due = is_due(s, utc, local, settings.schedule_retry_seconds)
        if due is not None:
            out.append((s, due))
    return out


# -- rights ---------------------------------------------------------------------------------
def creator_viewer(store, schedule: dict) -> tuple[Viewer | None, str]:
    """The creator's viewer as of now, or ``(None, why the schedule must stop)``."""
    who = schedule["created_by"]
    user = users.get_user(store, who)
    if user is None:
        return None, f"its creator {who} no longer exists"
    if user["disabled"]:
        return None, f"its creator {who} is disabled"
    viewer = of_store(store, user)
    if not viewer.may_act:
        return None, f"its creator {who} is now a {user['role']} and may not export"
    if not viewer.holds(schedule["node_id"]):
        return None, f"node {schedule['node_id']} is outside its creator's nodes ({who}: {viewer.root})"
    return viewer, ""


# -- files ----------------------------------------------------------------------------------
def folder(settings, schedule_id: str) -> Path:
    """Where a schedule's outputs are written."""
    if not _ID.fullmatch(schedule_id or ""):
        raise ScheduleError("bad schedule id")
    return Path(settings.data_dir) / "reports" / schedule_id


def file_name(schedule: dict, due: Due) -> str:
    """``<schedule>-<node>-<period>-<metric>.<format>``, from checked parts only."""
    node = re.sub(r"[^A-Za-z0-9_-]", "_", schedule["node_id"])[:64]
    slug = due.slug().replace("+", "_")
    return f"{schedule['schedule_id']}-{node}-{slug}-{schedule['metric']}.{schedule['format']}"


def _safe_path(settings, schedule_id: str, name: str) -> Path:
    base = folder(settings, schedule_id)
    if not isinstance(name, str) or not _FILE.fullmatch(name) or ".." in name:
        raise ScheduleError("bad file name")
    path = base / name
    if path.resolve().parent != base.resolve():
        raise ScheduleError("bad file name")
    return path


def _write(settings, schedule: dict, due: Due, blob: bytes) -> str:
    name = file_name(schedule, due)
    path = _safe_path(settings, schedule["schedule_id"], name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + name + ".tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, path)  # a download never sees half a file
    return name


def prune(store, settings, schedule: dict) -> list[str]:
    """Delete the outputs beyond the schedule's ``keep`` (oldest periods first); their names."""
    old = table.outputs(store, schedule["schedule_id"])[int(schedule["keep"]) :]
    names = [o["file_name"] for o in old]
    for name in names:
        try:
            _safe_path(settings, schedule["schedule_id"], name).unlink(missing_ok=True)
        except (ScheduleError, OSError) as exc:
            log.warning("schedule %s: cannot delete %s: %s", schedule["schedule_id"], name, exc)
    table.forget_outputs(store, schedule["schedule_id"], names)
    return names


# -- one run --------------------------------------------------------------------------------
#: ``make(viewer, schedule, due) -> bytes``: the report of the schedule's node, metric,
#: format and language for the period, built for ``viewer``.
Make = Callable[[Viewer, dict, Due], bytes]


def run_one(store, settings, schedule: dict, due: Due, make: Make, now: datetime | None = None) -> dict:
    """Produce one schedule's report for ``due`` as its creator: ``{"status": "produced" |
    "stopped" | "failed", "detail": ...}``. Never raises for a report that fails: the
    error is stored on the schedule and the run is tried again later."""
    sid = schedule["schedule_id"]
    viewer, why = creator_viewer(store, schedule)
    if viewer is None:
        table.stop(store, sid, why)
        users.audit(store, schedule["created_by"], "schedule_change", f"schedule={sid} stopped: {why}")
        return {"schedule_id": sid, "status": "stopped", "detail": why}
    utc, _ = local_now(settings, now)
    try:
        blob = make(viewer, schedule, due)
        name = _write(settings, schedule, due, blob)
    except OutsideScope as exc:  # the rights changed between the check and the build
        table.stop(store, sid, str(exc))
        return {"schedule_id": sid, "status": "stopped", "detail": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a render, a read or the disk: never the runner's end
        detail = str(exc) or type(exc).__name__
        table.failed(store, sid, detail, utc)
        log.warning("schedule %s (%s, %s) failed: %s", sid, schedule["node_id"], due.slug(), detail)
        return {"schedule_id": sid, "status": "failed", "detail": detail}
    table.produced(store, sid, due.slug(), name, len(blob), utc)
    users.audit(
        store,
        viewer.label,
        "export",
        f"schedule={sid} node={schedule['node_id']} period={due.slug()} metric={schedule['metric']} "
        f"format={schedule['format']} file={name}",
    )
    prune(store, settings, schedule)
    return {"schedule_id": sid, "status": "produced", "detail": name, "bytes": len(blob)}


# -- for a viewer ---------------------------------------------------------------------------
def check(store, node_id, metric, period, fmt, at_time, keep, lang) -> dict:
    """The fields of a new schedule, checked one by one (``ScheduleError`` naming the bad one)."""
    try:
        store.check_scope(node_id)
    except ScopeError:
        raise ScheduleError("unknown node") from None
    if metric not in METRICS:
        raise ScheduleError(f"metric must be one of {', '.join(METRICS)}")
    if period not in PERIODS:
        raise ScheduleError(f"period must be one of {', '.join(PERIODS)}")
    if fmt not in FORMATS:
        raise ScheduleError(f"format must be one of {', '.join(FORMATS)}")
    if not isinstance(at_time, str) or not _TIME.fullmatch(at_time):
        raise ScheduleError("time must be HH:MM")
    try:
        keep = int(keep)
    except (TypeError, ValueError):
        raise ScheduleError(f"keep must be a whole number 1..{KEEP_MAX}") from None
    if not 1 <= keep <= KEEP_MAX:
        raise ScheduleError(f"keep must be a whole number 1..{KEEP_MAX}")
    if lang not in LANGS:
        raise ScheduleError("language must be zh or en")
    return {
        "node_id": node_id,
        "metric": metric,
        "period": period,
        "fmt": fmt,
        "at_time": at_time,
        "keep": keep,
        "lang": lang,
    }


def _require_user(viewer: Viewer) -> str:
    viewer.require_act("scheduled reports")
    if not viewer.user_id or viewer.role == "operator":
        raise ScheduleError("scheduled reports need a signed-in manager or admin")
    return viewer.user_id


def create(store, viewer: Viewer, node_id, metric, period, fmt, at_time, keep, lang="zh") -> str:
    """A new schedule of ``viewer`` (a manager or admin) on a node they hold; its id."""
    who = _require_user(viewer)
    fields = check(store, node_id, metric, period, fmt, at_time, keep, lang)
    viewer.require(node_id)
    sid = table.insert(store, created_by=who, **fields)
    said = " ".join(f"{k}={v}" for k, v in fields.items())
    users.audit(store, viewer.label, "schedule_change", f"schedule={sid} create {said}")
    return sid


def visible(store, viewer: Viewer) -> list[dict]:
    """The schedules ``viewer`` sees: an admin every one; a manager those on nodes of their
    subtree and those they created (outputs only of the nodes they hold)."""
    viewer.require_act("scheduled reports")
    out = []
    for s in table.listed(store, viewer.nodes, viewer.user_id):
        held = viewer.holds(s["node_id"])
        out.append({**s, "held": held, "outputs": table.outputs(store, s["schedule_id"]) if held else []})
    return out


def _own(store, viewer: Viewer, schedule_id) -> dict:
    """The schedule if ``viewer`` may change it: they hold its node or created it."""
    viewer.require_act("scheduled reports")
    s = table.get(store, schedule_id)
    if s is None:
        raise LookupError("no such schedule")
    if not viewer.holds(s["node_id"]) and s["created_by"] != viewer.user_id:
        raise OutsideScope(f"schedule of node {s['node_id']!r} is outside {viewer.root}", s["node_id"])
    return s


def change(store, settings, viewer: Viewer, schedule_id, action: str) -> None:
    """``pause``, ``resume`` or ``delete`` a schedule the viewer may change (audited)."""
    if action not in ("pause", "resume", "delete"):
        raise ScheduleError("action must be pause, resume or delete")
    s = _own(store, viewer, schedule_id)
    sid = s["schedule_id"]
    if action == "delete":
        table.delete(store, sid)
        shutil.rmtree(folder(settings, sid), ignore_errors=True)
    else:
        table.set_paused(store, sid, action == "pause")
    users.audit(store, viewer.label, "schedule_change", f"schedule={sid} {action}")


def output_file(store, settings, viewer: Viewer, schedule_id, name) -> tuple[Path, str, str]:
    """``(path, file name, format)`` of an output ``viewer`` may download: the schedule's
    node must be theirs (``OutsideScope``), the output a recorded one (``LookupError``)."""
    viewer.require_act("download")
    s = table.get(store, schedule_id)
    if s is None:
        raise LookupError("no such schedule")
    viewer.require(s["node_id"])
    row = table.output(store, schedule_id, name)
    if row is None:
        raise LookupError("no such output")
    path = _safe_path(settings, s["schedule_id"], row["file_name"])
    if not path.is_file():
        raise LookupError("the output file is gone")
    return path, row["file_name"], s["format"]
