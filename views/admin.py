"""Administration rules: who may change users, devices and tokens, and read the audit log.

Every function takes the :class:`~auth.viewer.Viewer` of the request (resolved from the
server-side session, never from what a page sends) and the store, checks the right
first, acts, and writes one audit line with the viewer's label. A right the viewer does
not hold raises :class:`~auth.viewer.OutsideScope` (the web layer answers 403 and writes
a ``refusal`` line); a request that cannot be carried out (an unknown courier, a taken
user id) raises :class:`AdminError`, whose message the page shows.

The split of rights (``docs/admin.md``):

============  ==========================  =======================================
page          admin                       manager (own subtree)
============  ==========================  =======================================
users         everything                  --
devices       everything                  devices of couriers / vehicles of their
                                          branches; bulk CSV; unknown devices whose
                                          fixes all lie in their subtree
tokens        everything                  device tokens of their devices, system
                                          tokens bound to a node of their subtree;
                                          revoke the tokens they created
imports       every file, every import    files held to their subtree; the
                                          imports held to a node of it
                                          (``views/imports.py``)
audit log     every line                  lines of users bound inside their subtree
============  ==========================  =======================================

A viewer role has none of them.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson
import polars as pl

from auth import users
from auth.viewer import OutsideScope, Viewer
from data.ingest import records as canon
from data.ingest import tokens as tok
from data.ingest import validate
from data.ingest.phones import UNKNOWN_DEVICE
from data.store import devices as dev
from geo import cells as h3cells
from layers.escape import csv_frame

PAGES = ("users", "devices", "tokens", "imports", "audit")
#: Pages of each role (a viewer has none).
_PAGES_OF = {"admin": PAGES, "operator": PAGES, "manager": ("devices", "tokens", "imports", "audit")}
#: Rows of the audit log shown or downloaded at most.
AUDIT_ROWS = 5000
#: Bytes of a bulk device file taken from the browser at most.
MAX_BULK_BYTES = 5_000_000
_TOKEN_ID = re.compile(r"^[0-9a-f]{12}$")


class AdminError(ValueError):
    """An administrative change that cannot be made; the message says why."""


def pages_for(viewer: Viewer) -> tuple[str, ...]:
    """The administration pages a viewer may open.

    Examples
    --------
    >>> v = Viewer("nanshan", "manager", "b-1", False, frozenset({"b-1"}), {}, "nanshan")
    >>> pages_for(v)
    ('devices', 'tokens', 'imports', 'audit')
    >>> pages_for(Viewer("x", "viewer", "b-1", False, frozenset({"b-1"}), {}, "x"))
    ()
    """
    return _PAGES_OF.get(viewer.role, ())


def require_page(viewer: Viewer, page: str) -> None:
    """:class:`OutsideScope` unless ``viewer`` may use the administration page ``page``."""
    if page not in pages_for(viewer):
        raise OutsideScope(f"the {str(page)[:20]} page by a {viewer.role}")


def is_admin(viewer: Viewer) -> bool:
    """Admins (and operators) hold every administrative right over the whole tree."""
    return viewer.role in ("admin", "operator")


def _text(value, what: str, longest: int = 64) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AdminError(f"give {what}")
    value = value.strip()
    if len(value) > longest:
        raise AdminError(f"{what} is longer than {longest} characters")
    return value


def _opt(value) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


# -- users ------------------------------------------------------------------------------------
def list_users(store, viewer: Viewer) -> pl.DataFrame:
    """Every user (no password hashes): admins only."""
    require_page(viewer, "users")
    return users.list_users(store).select(
        "user_id", "name", "role", "node_id", "can_see_couriers", "disabled", "updated_at"
    )


def new_password() -> str:
    """A generated password (shown once to the admin who asked for it)."""
    return secrets.token_urlsafe(12)


def create_user(store, viewer: Viewer, user_id, name, role, node_id, can_see_couriers=False) -> str:
    """Create a user with a generated password, returned once. Admins only."""
    require_page(viewer, "users")
    password = new_password()
    try:
        users.create_user(
            store,
            _text(user_id, "a user id"),
            password,
            _text(role, "a role"),
            _text(node_id, "a node"),
            name=_opt(name),
            can_see_couriers=bool(can_see_couriers),
            by=viewer.label,
        )
    except users.UserError as exc:
        raise AdminError(str(exc)) from None
    return password


def update_user(
    store, viewer: Viewer, user_id, *, role=None, node_id=None, can_see_couriers=None, disabled=None
):
    """Change a user's role, node, position grant or disabled flag. Admins only; an admin
    may not disable or demote themself (someone must be left to undo it)."""
    require_page(viewer, "users")
    user_id = _text(user_id, "a user")
    if user_id == viewer.user_id and (disabled or (role is not None and role != viewer.role)):
        raise AdminError("you cannot disable or demote yourself")
    try:
        users.update_user(
            store,
            user_id,
            role=_opt(role),
            node_id=_opt(node_id),
            can_see_couriers=None if can_see_couriers is None else bool(can_see_couriers),
            disabled=None if disabled is None else bool(disabled),
            by=viewer.label,
        )
    except users.UserError as exc:
        raise AdminError(str(exc)) from None


def reset_password(store, viewer: Viewer, user_id) -> str:
    """Give a user a new generated password (returned once; their sessions end). Admins only."""
    require_page(viewer, "users")
    password = new_password()
    try:
        users.update_user(store, _text(user_id, "a user"), password=password, by=viewer.label)
    except users.UserError as exc:
        raise AdminError(str(exc)) from None
    return password


# -- devices ----------------------------------------------------------------------------------
def _branch_of(store, courier_id: str | None, vehicle_id: str | None) -> str | None:
    if courier_id:
        row = (
            store.cursor()
            .execute("SELECT branch_id FROM couriers WHERE courier_id = ?", [courier_id])
            .fetchone()
        )
    else:
        row = (
            store.cursor()
            .execute("SELECT branch_id FROM vehicles WHERE vehicle_id = ?", [vehicle_id])
            .fetchone()
        )
    return row[0] if row else None


def _device_branch(store, device_id: str) -> tuple[bool, str | None]:
    """(is the device registered, the branch of its courier or vehicle)."""
    row = (
        store.cursor()
        .execute(
            "SELECT coalesce(c.branch_id, v.branch_id) FROM devices d LEFT JOIN couriers c USING (courier_id) "
            "LEFT JOIN vehicles v USING (vehicle_id) WHERE d.device_id = ?",
            [device_id],
        )
        .fetchone()
    )
    return (row is not None, row[0] if row else None)


def _owner(store, viewer: Viewer, courier_id, vehicle_id) -> tuple[str | None, str | None]:
    """The courier or vehicle a device goes to, checked: it exists, and (for a manager)
    belongs to a branch of the viewer's subtree."""
    courier_id, vehicle_id = _opt(courier_id), _opt(vehicle_id)
    if (courier_id is None) == (vehicle_id is None):
        raise AdminError("choose exactly one of a courier or a vehicle")
    branch = _branch_of(store, courier_id, vehicle_id)
    if branch is None:
        raise AdminError(f"no {'courier' if courier_id else 'vehicle'} {(courier_id or vehicle_id)[:64]!r}")
    if not is_admin(viewer) and not viewer.holds(branch):
        raise OutsideScope(
            f"{'courier' if courier_id else 'vehicle'} of {branch} is outside {viewer.root}", branch
        )
    return courier_id, vehicle_id


def owner_of(store, owner_id) -> tuple[str | None, str | None]:
    """``(courier_id, None)`` or ``(None, vehicle_id)`` for an id typed on the page
    (:class:`AdminError` if it is neither)."""
    owner_id = _text(owner_id, "a courier or vehicle id")
    cur = store.cursor()
    if cur.execute("SELECT 1 FROM couriers WHERE courier_id = ?", [owner_id]).fetchone():
        return owner_id, None
    if cur.execute("SELECT 1 FROM vehicles WHERE vehicle_id = ?", [owner_id]).fetchone():
        return None, owner_id
    raise AdminError(f"no courier or vehicle {owner_id[:64]!r}")


def list_devices(store, viewer: Viewer) -> pl.DataFrame:
    """The devices the viewer may manage (a manager: those of their subtree's branches)."""
    require_page(viewer, "devices")
    frame = dev.list_devices(store)
    if is_admin(viewer):
        return frame
    return frame.filter(pl.col("branch_id").is_in(sorted(viewer.nodes)))


def owners(store, viewer: Viewer) -> pl.DataFrame:
    """``kind, owner_id, name, branch_id`` of the couriers and vehicles a device may go to."""
    require_page(viewer, "devices")
    frame = store.sql(
        "SELECT 'courier' AS kind, courier_id AS owner_id, name, branch_id FROM couriers "
        "UNION ALL SELECT 'vehicle', vehicle_id, plate, branch_id FROM vehicles ORDER BY kind, owner_id"
    )
    if is_admin(viewer):
        return frame
    return frame.filter(pl.col("branch_id").is_in(sorted(viewer.nodes)))


def register_device(store, viewer: Viewer, device_id, courier_id=None, vehicle_id=None) -> None:
    """Register a new device for a courier or vehicle the viewer may manage."""
    require_page(viewer, "devices")
    courier_id, vehicle_id = _owner(store, viewer, courier_id, vehicle_id)
    try:
        dev.register(store, _text(device_id, "a device id"), courier_id, vehicle_id)
    except dev.DeviceError as exc:
        raise AdminError(str(exc)) from None
    users.audit(store, viewer.label, "device_change", f"register {device_id} -> {courier_id or vehicle_id}")


def attach_device(store, viewer: Viewer, device_id, courier_id=None, vehicle_id=None) -> None:
    """Attach a registered device to another courier or vehicle; a manager only moves a
    device of their subtree to an owner of their subtree."""
    require_page(viewer, "devices")
    device_id = _text(device_id, "a device id")
    courier_id, vehicle_id = _owner(store, viewer, courier_id, vehicle_id)
    known, branch = _device_branch(store, device_id)
    if known and not is_admin(viewer) and not viewer.holds(branch):
        raise OutsideScope(f"device {device_id[:64]!r} belongs outside {viewer.root}", branch)
    try:
        dev.attach(store, device_id, courier_id, vehicle_id)
    except dev.DeviceError as exc:
        raise AdminError(str(exc)) from None
    users.audit(store, viewer.label, "device_change", f"attach {device_id} -> {courier_id or vehicle_id}")


def _bulk_lines(store, viewer: Viewer, text: str) -> tuple[list[list[str]], list[int], list[tuple[int, str]]]:
    """The lines of a bulk file a manager may write, their line numbers, and the refused ones."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip().lower() for h in next(reader, [])]
    kept, numbers, refused = [header], [], []
    branch = {}
    for kind, table in (("courier_id", "couriers"), ("vehicle_id", "vehicles")):
        for oid, b in store.cursor().execute(f"SELECT {kind}, branch_id FROM {table}").fetchall():
            branch[(kind, oid)] = b
    for line in reader:
        number = reader.line_num
        record = dict(zip(header, (v.strip() for v in line), strict=False))
        owner = (
            ("courier_id", record.get("courier_id"))
            if record.get("courier_id")
            else ("vehicle_id", record.get("vehicle_id"))
        )
        b = branch.get(owner)
        known, now = _device_branch(store, record.get("device_id", ""))
        if any("\n" in v or "\r" in v for v in line):
            refused.append((number, "a field holds a line break"))
        elif b is not None and not viewer.holds(b):
            refused.append((number, f"{owner[1][:64]!r} is outside {viewer.root}"))
        elif known and not viewer.holds(now):
            refused.append(
                (number, f"device {record.get('device_id', '')[:64]!r} belongs outside {viewer.root}")
            )
        else:
            kept.append(line)
            numbers.append(number)
    return kept, numbers, refused


def bulk_devices(store, viewer: Viewer, data: bytes) -> dev.BulkResult:
    """Register or re-attach the devices of a CSV file (``device_id`` and ``courier_id`` or
    ``vehicle_id``). A manager's lines naming an owner or a device outside their subtree
    are refused with their line number, like any other unusable line."""
    require_page(viewer, "devices")
    if len(data) > MAX_BULK_BYTES:
        raise AdminError(f"the file is over {MAX_BULK_BYTES // 1_000_000} MB")
    text = data.decode("utf-8-sig", errors="replace")
    numbers: list[int] | None = None
    early: list[tuple[int, str]] = []
    if not is_admin(viewer):
        try:
            lines, numbers, early = _bulk_lines(store, viewer, text)
        except csv.Error as exc:
            raise AdminError(f"the file is not CSV: {str(exc)[:100]}") from None
        out = io.StringIO(newline="")
        csv.writer(out, lineterminator="\n").writerows(lines)
        text = out.getvalue()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "devices.csv"
        path.write_text(text, encoding="utf-8")
        try:
            result = dev.bulk(store, path)
        except (dev.DeviceError, csv.Error) as exc:
            raise AdminError(str(exc)[:200]) from None
    if numbers is not None:  # line n of the filtered file is the (n - 1)th kept line
        result.refused = [
            (numbers[n - 2] if 2 <= n <= len(numbers) + 1 else n, why) for n, why in result.refused
        ]
    result.refused = sorted(early + result.refused)
    users.audit(
        store,
        viewer.label,
        "device_change",
        f"bulk: {result.registered} registered or attached, {len(result.refused)} lines refused",
    )
    return result


# -- unknown devices ----------------------------------------------------------------------------
def _unknown_rows(store) -> pl.DataFrame:
    """``rowid, received_at, device_id, lat, lng, raw, record`` of quarantined fixes of
    unregistered devices (the raw record read through the one canonical reading)."""
    rows = (
        store.cursor()
        .execute(
            "SELECT rowid, received_at, reason, raw FROM quarantine "
            "WHERE record_kind = 'pings' AND starts_with(reason, ?)",
            [UNKNOWN_DEVICE],
        )
        .fetchall()
    )
    out = []
    for rowid, received, reason, raw in rows:
        try:
            record = orjson.loads(raw)
        except (orjson.JSONDecodeError, TypeError):
            continue
        row, _ = canon.canonical("pings", record) if isinstance(record, dict) else (None, None)
        if not row:
            continue
        device = row.get("device_id") or _quoted(reason)
        out.append((rowid, received, device, _num(row.get("lat")), _num(row.get("lng")), raw, row))
    schema = {
        "rowid": pl.Int64,
        "received_at": pl.Datetime("us"),
        "device_id": pl.String,
        "lat": pl.Float64,
        "lng": pl.Float64,
        "raw": pl.String,
        "record": pl.Object,
    }
    return pl.DataFrame(out, schema=schema, orient="row")


def _quoted(reason: str) -> str | None:
    m = re.search(r"'(.*)'", reason or "")
    return m.group(1) if m else None


def _num(text) -> float | None:
    try:
        x = float(text)
    except (TypeError, ValueError):
        return None
    return x if -1000 < x < 1000 else None


def _located(store, rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` with the branch each fix lies in (``None``: not locatable)."""
    ok = rows["lat"].is_not_null() & rows["lng"].is_not_null()
    ok = ok & rows["lat"].is_between(-90, 90) & rows["lng"].is_between(-180, 180)
    branch = [None] * len(rows)
    if ok.any():
        idx = ok.arg_true().to_list()
        cells = h3cells.cells_of(rows["lat"].gather(idx), rows["lng"].gather(idx)).to_numpy()
        for i, b in zip(idx, store.branches_of_cells(cells).to_list(), strict=True):
            branch[i] = b
    return rows.with_columns(pl.Series("branch_id", branch, dtype=pl.String))


def unknown_devices(store, viewer: Viewer) -> pl.DataFrame:
    """``device_id, fixes, last_seen, branch_id`` of devices not registered whose fixes
    wait in quarantine. A manager sees a device only when every fix of it that can be
    placed lies in a branch of their subtree (and one at least can be placed); the branch
    is the one of its newest placed fix."""
    require_page(viewer, "devices")
    rows = _unknown_rows(store).filter(pl.col("device_id").is_not_null())
    registered = set(store.sql("SELECT device_id FROM devices")["device_id"].to_list())
    rows = rows.filter(~pl.col("device_id").is_in(sorted(registered)))
    empty = pl.DataFrame(
        schema={
            "device_id": pl.String,
            "fixes": pl.UInt32,
            "last_seen": pl.Datetime("us"),
            "branch_id": pl.String,
        }
    )
    if rows.is_empty():
        return empty
    rows = _located(store, rows.drop("record", "raw"))
    held = sorted(viewer.nodes)
    frame = (
        rows.sort("received_at")
        .group_by("device_id", maintain_order=True)
        .agg(
            pl.len().alias("fixes"),
            pl.col("received_at").max().alias("last_seen"),
            pl.col("branch_id").drop_nulls().last().alias("branch_id"),
            (pl.col("branch_id").is_null() | pl.col("branch_id").is_in(held)).all().alias("inside"),
        )
        .sort("last_seen", descending=True)
    )
    if not is_admin(viewer):
        frame = frame.filter(pl.col("inside") & pl.col("branch_id").is_not_null())
    return frame.select("device_id", "fixes", "last_seen", "branch_id")


@dataclass
class Reingested:
    """What re-ingesting a device's quarantined fixes did."""

    stored: int = 0
    duplicates: int = 0
    still_refused: int = 0


def reingest(store, device_id: str, local_tz: str, limits: validate.Limits | None = None) -> Reingested:
    """Send the quarantined fixes of ``device_id`` through validation and the store again;
    the ones stored (or already stored) leave the quarantine, the others stay."""
    rows = _unknown_rows(store).filter(pl.col("device_id") == device_id)
    if rows.is_empty():
        return Reingested()
    records = rows["record"].to_list()
    cols = canon.columns("pings", records)
    frame = pl.DataFrame({n: pl.Series(n, v, dtype=pl.String) for n, v in cols.items()})
    frame = frame.with_columns(pl.int_range(1, len(records) + 1, dtype=pl.UInt32).alias("_row"))
    good, bad = validate.check_pings(frame, local_tz, limits)
    stored, dup, refused = store.ingest_pings(good)
    kept = set(bad["_row"].to_list()) | set(refused["_row"].to_list())
    # by their text, not their row ids (the quarantine may be trimmed meanwhile): a copy
    # of a fix now stored goes too
    done = sorted({raw for i, raw in enumerate(rows["raw"].to_list(), start=1) if i not in kept})
    if done:
        store.cursor().execute(
            "DELETE FROM quarantine WHERE record_kind = 'pings' AND starts_with(reason, ?) "
            "AND raw IN (SELECT unnest(?))",
            [UNKNOWN_DEVICE, done],
        )
    return Reingested(stored, dup, len(kept))


def register_unknown(
    store, viewer: Viewer, device_id, courier_id=None, vehicle_id=None, *, local_tz: str, limits=None
) -> Reingested:
    """Register a device seen in quarantine (one the viewer may see in
    :func:`unknown_devices`) for a courier or vehicle, then re-ingest its fixes."""
    device_id = _text(device_id, "a device id")
    listed = unknown_devices(store, viewer)
    if device_id not in set(listed["device_id"].to_list()):
        raise OutsideScope(f"unknown device {device_id[:64]!r} is not one of {viewer.root}")
    register_device(store, viewer, device_id, courier_id, vehicle_id)
    done = reingest(store, device_id, local_tz, limits)
    users.audit(
        store,
        viewer.label,
        "device_change",
        f"re-ingest {device_id}: {done.stored} stored, {done.duplicates} already stored, "
        f"{done.still_refused} still refused",
    )
    return done


def register_seen(store, viewer: Viewer, device_id, owner_id, *, local_tz: str, limits=None) -> Reingested:
    """One click on a row of the unknown devices: the device must be one the viewer sees
    in :func:`unknown_devices` (checked first, whatever the owner: a forged id is refused
    as outside the viewer's subtree), then it is registered for the courier or vehicle
    chosen and its fixes re-ingested (:func:`register_unknown`)."""
    device_id = _text(device_id, "a device id")
    if device_id not in set(unknown_devices(store, viewer)["device_id"].to_list()):
        raise OutsideScope(f"unknown device {device_id[:64]!r} is not one of {viewer.root}")
    courier_id, vehicle_id = owner_of(store, owner_id)
    return register_unknown(
        store, viewer, device_id, courier_id, vehicle_id, local_tz=local_tz, limits=limits
    )


# -- tokens -----------------------------------------------------------------------------------
def list_tokens(store, viewer: Viewer) -> pl.DataFrame:
    """``token_id, kind, subject, node_id, created_by, created_at, revoked_at, mine``: the
    tokens the viewer may see (a manager: tokens of their devices and of nodes of their
    subtree). ``mine``: the viewer may revoke it."""
    require_page(viewer, "tokens")
    tok.ensure_table(store)
    frame = store.sql(
        "SELECT left(t.token_hash, 12) AS token_id, t.kind, coalesce(t.device_id, t.system_name) AS subject, "
        "t.node_id, t.created_by, t.created_at, t.revoked_at, "
        "coalesce(c.branch_id, v.branch_id) AS device_branch "
        "FROM tokens t LEFT JOIN devices d ON t.kind = 'device' AND d.device_id = t.device_id "
        "LEFT JOIN couriers c ON c.courier_id = d.courier_id LEFT JOIN vehicles v ON v.vehicle_id = d.vehicle_id "
        "ORDER BY t.created_at"
    )
    if is_admin(viewer):
        frame = frame.with_columns(pl.lit(True).alias("mine"))
    else:
        held = sorted(viewer.nodes)
        frame = frame.filter(
            ((pl.col("kind") == "device") & pl.col("device_branch").is_in(held))
            | ((pl.col("kind") == "system") & pl.col("node_id").is_in(held))
        ).with_columns((pl.col("created_by") == viewer.label).fill_null(False).alias("mine"))
    return frame.drop("device_branch")


def create_token(store, viewer: Viewer, kind, subject, node_id=None) -> str:
    """Create a token (returned once, in clear). A manager creates device tokens for
    devices of their subtree and system tokens bound to a node of their subtree."""
    require_page(viewer, "tokens")
    if kind not in tok.KINDS:
        raise AdminError(f"the kind is one of {', '.join(tok.KINDS)}")
    subject = _text(subject, "a device id" if kind == "device" else "a system name")
    node_id = _opt(node_id) if kind == "system" else None
    if kind == "device":
        known, branch = _device_branch(store, subject)
        if not known:
            raise AdminError(f"no device {subject!r}; register it first")
        if not is_admin(viewer) and not viewer.holds(branch):
            raise OutsideScope(f"device {subject!r} belongs outside {viewer.root}", branch)
    elif not is_admin(viewer):
        if node_id is None:
            raise AdminError("a system token of a manager is bound to a node of their subtree")
        viewer.require(node_id)
    try:
        token = tok.create_token(store, kind, subject, node_id=node_id)
    except ValueError as exc:
        raise AdminError(str(exc)[:200]) from None
    tok.record_creator(store, token, viewer.label)
    users.audit(
        store,
        viewer.label,
        "token_change",
        f"create {kind} token {tok.hash_token(token)[:12]} for {subject}"
        + (f" node={node_id}" if node_id else ""),
    )
    return token


def revoke_token(store, viewer: Viewer, token_id) -> None:
    """Revoke one token by its listed id (12 hex digits). A manager revokes only a token
    they created (and still see); it stops working from the next request."""
    require_page(viewer, "tokens")
    if not isinstance(token_id, str) or not _TOKEN_ID.match(token_id):
        raise AdminError("a token id is the 12 hex digits shown in the list")
    rows = list_tokens(store, viewer).filter(pl.col("token_id") == token_id)
    if rows.is_empty():
        if is_admin(viewer):
            raise AdminError(f"no token {token_id}")
        raise OutsideScope(f"token {token_id} is not one of {viewer.label}")
    if not rows["mine"][0]:
        raise OutsideScope(f"token {token_id} was not created by {viewer.label}")
    n = tok.revoke_token(store, token_id)
    tok.forget_cached(store)
    users.audit(store, viewer.label, "token_change", f"revoke token {token_id} ({n} revoked)")


# -- audit log --------------------------------------------------------------------------------
def audit_lines(store, viewer: Viewer, action=None, text=None, limit: int = AUDIT_ROWS) -> pl.DataFrame:
    """``ts, user_id, action, detail``, newest first. An admin reads every line; a manager
    the lines of users bound to a node of their subtree (their own included). ``action``
    and ``text`` (a case-insensitive part of the user or the detail) filter."""
    require_page(viewer, "audit")
    users.ensure_tables(store)
    where, params = [], []
    if isinstance(action, str) and action in users.ACTIONS:
        where.append("a.action = ?")
        params.append(action)
    if isinstance(text, str) and text.strip():
        where.append("(contains(lower(a.user_id), ?) OR contains(lower(a.detail), ?))")
        params += [text.strip().lower()[:100]] * 2
    if not is_admin(viewer):
        where.append("a.user_id IN (SELECT user_id FROM users WHERE node_id IN (SELECT unnest(?)))")
        params.append(sorted(viewer.nodes))
    sql = "SELECT a.ts, a.user_id, a.action, a.detail FROM audit_log a"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return store.sql(sql + " ORDER BY a.ts DESC LIMIT ?", [*params, max(1, min(int(limit), AUDIT_ROWS))])


def audit_csv(store, viewer: Viewer, action=None, text=None) -> str:
    """The audit lines the viewer may read (:func:`audit_lines`) as CSV text, every cell
    safe from spreadsheet formulas; the download itself is audited as an export."""
    frame = csv_frame(audit_lines(store, viewer, action, text))
    users.audit(
        store,
        viewer.label,
        "export",
        f"audit log CSV: {len(frame)} lines (action={str(action)[:20]}, text={str(text)[:40]!r})",
    )
    return frame.write_csv()
