"""Users and the audit log, kept in the store.

A user has a role bound to one node of the organisation tree: a *viewer* or a *manager*
sees that node's subtree (a manager may also export and decide on dispatch
suggestions), an *admin* sees the whole tree. Passwords are stored as scrypt hashes
(``werkzeug.security``); the clear password is never stored.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from datetime import UTC, datetime, timedelta

import polars as pl
from werkzeug.security import check_password_hash, generate_password_hash

log = logging.getLogger(__name__)

ROLES = ("viewer", "manager", "admin")
ACTIONS = (
    "login",
    "login_failed",
    "logout",
    "refusal",
    "export",
    "user_change",
    "token_change",
    "device_change",
    "import",
    "schedule_change",
)
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
#: Hash used when a login names no user, so that the answer takes as long as for one.
_DUMMY_HASH = generate_password_hash("not a password", method="scrypt")

_DDL = (
    """CREATE TABLE IF NOT EXISTS users (
        user_id VARCHAR PRIMARY KEY,     -- login name
        name VARCHAR,                    -- display name
        password_hash VARCHAR NOT NULL,  -- scrypt, werkzeug format
        role VARCHAR NOT NULL,           -- viewer | manager | admin
        node_id VARCHAR NOT NULL,        -- the node the role is bound to
        can_see_couriers BOOLEAN NOT NULL DEFAULT false,  -- courier positions above branch level
        disabled BOOLEAN NOT NULL DEFAULT false,
        created_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS audit_log (
        ts TIMESTAMP NOT NULL,           -- UTC
        user_id VARCHAR,                 -- who (or the name tried, or a token's subject)
        action VARCHAR NOT NULL,         -- login | login_failed | logout | refusal | export | user_change
        detail VARCHAR)""",
    # Sign-ins live here, not only in the signed cookie: signing out (or an admin) ends a
    # session for good, and a cookie copied before that is refused.
    """CREATE TABLE IF NOT EXISTS sessions (
        session_hash VARCHAR PRIMARY KEY,  -- sha256 of the random token the cookie holds
        user_id VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,     -- UTC
        expires_at TIMESTAMP NOT NULL,
        ended_at TIMESTAMP)""",
    # Failed sign-ins, so that the limit survives a restart.
    """CREATE TABLE IF NOT EXISTS login_failures (
        key VARCHAR NOT NULL,              -- "address|name" or "address"
        ts TIMESTAMP NOT NULL)""",
)


class UserError(ValueError):
    """A user change that cannot be made (unknown user, bad role or node...)."""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def ensure_tables(store) -> None:
    """Create the users, sessions, login_failures and audit_log tables if missing (a
    read-only store is left as it is)."""
    if getattr(store, "read_only", False):
        return
    cur = store.cursor()
    for stmt in _DDL:
        cur.execute(stmt)


def _check(store, role: str | None, node_id: str | None) -> None:
    if role is not None and role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if node_id is not None:
        found = store.cursor().execute("SELECT 1 FROM nodes WHERE node_id = ?", [node_id]).fetchone()
        if found is None:
            raise UserError(f"unknown node {node_id!r}")


def hash_password(password: str) -> str:
    if not password or len(password) < 8:
        raise UserError("a password needs at least 8 characters")
    return generate_password_hash(password, method="scrypt")


def create_user(
    store,
    user_id: str,
    password: str,
    role: str,
    node_id: str,
    name: str | None = None,
    can_see_couriers: bool = False,
    by: str = "cli",
) -> None:
    """Add a user.

    Examples
    --------
    >>> create_user(store, "nanshan", "a long password", "manager", "b-440305")  # doctest: +SKIP
    """
    ensure_tables(store)
    if not _NAME.match(user_id or ""):
        raise UserError("a user id is 2-64 letters, digits or _.@-")
    _check(store, role, node_id)
    if get_user(store, user_id) is not None:
        raise UserError(f"user {user_id!r} exists")
    now = _now()
    store.cursor().execute(
        "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, false, ?, ?)",
        [user_id, name or user_id, hash_password(password), role, node_id, bool(can_see_couriers), now, now],
    )
    audit(
        store,
        by,
        "user_change",
        f"create {user_id} role={role} node={node_id} couriers={bool(can_see_couriers)}",
    )


def get_user(store, user_id: str) -> dict | None:
    """The user's row as a dict (with its password hash), or None."""
    cur = store.cursor().execute("SELECT * FROM users WHERE user_id = ?", [user_id])
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def list_users(store) -> pl.DataFrame:
    """Every user, without password hashes."""
    ensure_tables(store)
    return store.sql("SELECT * EXCLUDE (password_hash) FROM users ORDER BY user_id")


def update_user(
    store,
    user_id: str,
    *,
    role: str | None = None,
    node_id: str | None = None,
    can_see_couriers: bool | None = None,
    disabled: bool | None = None,
    password: str | None = None,
    by: str = "cli",
) -> None:
    """Change a user's role, node, courier grant, disabled flag or password."""
    if get_user(store, user_id) is None:
        raise UserError(f"no user {user_id!r}")
    _check(store, role, node_id)
    sets, params, said = [], [], []
    for col, value in (
        ("role", role),
        ("node_id", node_id),
        ("can_see_couriers", can_see_couriers),
        ("disabled", disabled),
    ):
        if value is not None:
            sets.append(f"{col} = ?")
            params.append(value)
            said.append(f"{col}={value}")
    if password is not None:
        sets.append("password_hash = ?")
        params.append(hash_password(password))
        said.append("password reset")
    if not sets:
        return
    store.cursor().execute(
        f"UPDATE users SET {', '.join(sets)}, updated_at = ? WHERE user_id = ?", [*params, _now(), user_id]
    )
    if disabled or password is not None:
        ensure_tables(store)
        end_sessions_of(store, user_id)  # a new secret, or no access: sign in again
    else:  # a new role, node or grant holds from the next request on
        store.sessions_epoch = sessions_epoch(store) + 1
    audit(store, by, "user_change", f"{user_id}: {', '.join(said)}")


def authenticate(store, user_id: str, password: str) -> dict | None:
    """The user if the password matches and the user is enabled, else None."""
    user = get_user(store, user_id) if user_id else None
    ok = check_password_hash(user["password_hash"] if user else _DUMMY_HASH, password or "")
    if not ok or user is None or user["disabled"]:
        return None
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def start_session(store, user_id: str, hours: float) -> str:
    """A new session of ``user_id`` lasting ``hours``: the token for the cookie (only its
    hash is stored)."""
    token = secrets.token_urlsafe(32)
    now = _now()
    store.cursor().execute(
        "INSERT INTO sessions VALUES (?, ?, ?, ?, NULL)",
        [_token_hash(token), user_id, now, now + timedelta(hours=hours)],
    )
    return token


def session_user(store, token) -> dict | None:
    """The enabled user of a live session token (None: unknown, ended or expired)."""
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    cur = store.cursor().execute(
        "SELECT u.* FROM sessions s JOIN users u USING (user_id) WHERE s.session_hash = ? "
        "AND s.ended_at IS NULL AND s.expires_at > ? AND NOT u.disabled",
        [_token_hash(token), _now()],
    )
    row = cur.fetchone()
    return None if row is None else dict(zip([d[0] for d in cur.description], row, strict=True))


def end_session(store, token) -> None:
    """End a session for good (a replayed cookie of it is refused)."""
    if isinstance(token, str):
        store.cursor().execute(
            "UPDATE sessions SET ended_at = ? WHERE session_hash = ? AND ended_at IS NULL",
            [_now(), _token_hash(token)],
        )


def end_sessions_of(store, user_id: str) -> None:
    """End every session of a user (disabled, password reset)."""
    store.cursor().execute(
        "UPDATE sessions SET ended_at = ? WHERE user_id = ? AND ended_at IS NULL", [_now(), user_id]
    )
    # A server on this store remembers sessions for a moment: this tells it to read again.
    store.sessions_epoch = sessions_epoch(store) + 1


def sessions_epoch(store) -> int:
    """How many times sessions were ended in bulk through this store object."""
    return getattr(store, "sessions_epoch", 0)


def failed_login(store, keys, window_seconds: float) -> None:
    """Count one failed sign-in under each of ``keys``; failures older than the window go."""
    now = _now()
    cur = store.cursor()
    cur.execute("DELETE FROM login_failures WHERE ts < ?", [now - timedelta(seconds=window_seconds)])
    cur.executemany("INSERT INTO login_failures VALUES (?, ?)", [[k, now] for k in keys])


def login_failures(store, key: str, window_seconds: float) -> int:
    """Failed sign-ins under ``key`` within the window."""
    return store.scalar(
        "SELECT count(*) FROM login_failures WHERE key = ? AND ts >= ?",
        [key, _now() - timedelta(seconds=window_seconds)],
    )


def clear_login_failures(store, key: str) -> None:
    store.cursor().execute("DELETE FROM login_failures WHERE key = ?", [key])


def audit(store, user_id: str | None, action: str, detail: str = "") -> None:
    """Append one line to the audit log (a read-only store's line goes to the log)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    if getattr(store, "read_only", False):
        log.warning("audit (read-only store): %s %s %s", user_id, action, detail[:2000])
        return
    store.cursor().execute(
        "INSERT INTO audit_log VALUES (?, ?, ?, ?)", [_now(), user_id, action, detail[:2000]]
    )


def audit_log(store, action: str | None = None) -> pl.DataFrame:
    """The audit log, newest last (optionally one action)."""
    ensure_tables(store)
    if action is None:
        return store.sql("SELECT * FROM audit_log ORDER BY ts")
    return store.sql("SELECT * FROM audit_log WHERE action = ? ORDER BY ts", [action])
