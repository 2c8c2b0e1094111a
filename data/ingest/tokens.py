"""API tokens for devices and systems. Only the SHA-256 of a token is stored.

A **device** token lets one device report its own positions (and scans); a **system**
token lets an operations system push pings and parcel events for any device, or, when
the token is bound to a node, only records positioned inside that node's territory. Tokens are
shown once, when created, and can be revoked; a revoked token stops working within
:data:`CACHE_SECONDS` in a running server.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl

from data.store.database import Store

KINDS = ("device", "system")
#: How long a running server trusts its memory of a token before asking the store again.
CACHE_SECONDS = 5.0

_DDL = """CREATE TABLE IF NOT EXISTS tokens (
    token_hash VARCHAR PRIMARY KEY,  -- sha256 hex of the token; the token itself is never stored
    kind VARCHAR NOT NULL,           -- device | system
    device_id VARCHAR,               -- for kind = device
    system_name VARCHAR,             -- for kind = system
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP,
    node_id VARCHAR                  -- system tokens: records must lie inside this node (NULL: anywhere)
)"""
#: Stores made before tokens could be bound to a node.
_MIGRATE = "ALTER TABLE tokens ADD COLUMN IF NOT EXISTS node_id VARCHAR"


@dataclass(frozen=True)
class Principal:
    """Who a valid token speaks for."""

    kind: str
    device_id: str | None = None
    system_name: str | None = None
    node_id: str | None = None

    @property
    def name(self) -> str:
        return f"device:{self.device_id}" if self.kind == "device" else f"system:{self.system_name}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def ensure_table(store: Store) -> None:
    """Create the tokens table if missing (and add columns newer than the store)."""
    cur = store.cursor()
    cur.execute(_DDL)
    cur.execute(_MIGRATE)
    _add_creator(cur)


#: Who made a token from the dashboard (NULL: made on the command line, or before the
#: column existed): a manager may revoke only the tokens they made.
_CREATOR = "ALTER TABLE tokens ADD COLUMN IF NOT EXISTS created_by VARCHAR"


def _add_creator(cur) -> None:
    cur.execute(_CREATOR)


def record_creator(store: Store, token: str, user: str) -> None:
    """Note who created ``token`` (the clear token just returned by :func:`create_token`)."""
    ensure_table(store)
    store.cursor().execute("UPDATE tokens SET created_by = ? WHERE token_hash = ?", [user, hash_token(token)])


def forget_cached(store: Store) -> None:
    """Tell every :class:`TokenCache` on ``store`` to read tokens again (a revocation made
    in this process holds from the next request, not after :data:`CACHE_SECONDS`)."""
    store.tokens_epoch = getattr(store, "tokens_epoch", 0) + 1


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def create_token(store: Store, kind: str, subject: str, node_id: str | None = None) -> str:
    """Create a token and return it in clear (the only time it is available).

    Parameters
    ----------
    kind : {"device", "system"}
    subject : str
        The device id (device token) or a name for the system (system token).
    node_id : str, optional
        Bind a system token to a node of the tree: records outside its territory are
        rejected.

    Examples
    --------
    >>> token = create_token(store, "system", "sorting-centre-wms")  # doctest: +SKIP
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    if not subject or not str(subject).strip():
        raise ValueError("a token needs a device id or a system name")
    if node_id is not None and kind != "system":
        raise ValueError("only a system token is bound to a node (a device token is bound to its device)")
    ensure_table(store)
    if node_id is not None:
        store.check_scope(node_id)
    token = "emap_" + secrets.token_urlsafe(32)
    store.cursor().execute(
        "INSERT INTO tokens (token_hash, kind, device_id, system_name, created_at, node_id) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            hash_token(token),
            kind,
            subject if kind == "device" else None,
            subject if kind == "system" else None,
            _now(),
            node_id,
        ],
    )
    return token


def list_tokens(store: Store) -> pl.DataFrame:
    """Every token: ``token_id`` (first 12 hex digits of its hash), kind, subject, dates."""
    ensure_table(store)
    return store.sql(
        "SELECT left(token_hash, 12) AS token_id, kind, coalesce(device_id, system_name) AS subject, "
        "node_id, created_at, revoked_at FROM tokens ORDER BY created_at"
    )


def revoke_token(store: Store, token_id: str) -> int:
    """Revoke the tokens whose hash starts with ``token_id`` (as listed); returns how many.

    A prefix of fewer than 8 digits is refused, so one call cannot revoke many by accident.
    """
    if len(token_id) < 8:
        raise ValueError("give at least 8 hex digits of the token id")
    ensure_table(store)
    cur = store.cursor()
    n = cur.execute(
        "SELECT count(*) FROM tokens WHERE starts_with(token_hash, ?) AND revoked_at IS NULL",
        [token_id.lower()],
    ).fetchone()[0]
    cur.execute(
        "UPDATE tokens SET revoked_at = ? WHERE starts_with(token_hash, ?) AND revoked_at IS NULL",
        [_now(), token_id.lower()],
    )
    return n


class TokenCache:
    """Token -> :class:`Principal` lookups for a running server, remembered briefly."""

    def __init__(self, store: Store, ttl: float = CACHE_SECONDS):
        self._store = store
        self._ttl = ttl
        self._seen: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()
        self._epoch = getattr(store, "tokens_epoch", 0)
        ensure_table(store)

    def lookup(self, token: str | None) -> Principal | None:
        """The principal of a valid token, ``None`` for an unknown or revoked one."""
        if not token:
            return None
        digest = hash_token(token)
        now = time.monotonic()
        epoch = getattr(self._store, "tokens_epoch", 0)
        with self._lock:
            if epoch != self._epoch:  # a token was revoked through this store: forget them all
                self._seen.clear()
                self._epoch = epoch
            hit = self._seen.get(digest)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        row = (
            self._store.cursor()
            .execute(
                "SELECT kind, device_id, system_name, node_id FROM tokens "
                "WHERE token_hash = ? AND revoked_at IS NULL",
                [digest],
            )
            .fetchone()
        )
        principal = Principal(*row) if row else None
        with self._lock:
            if len(self._seen) > 100_000:  # bounded: a flood of random tokens cannot grow it forever
                self._seen.clear()
            self._seen[digest] = (now, principal)
        return principal
