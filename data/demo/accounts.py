"""Demo accounts: one per level of the tree, so the views can be compared."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from auth import users

#: (user id, role, node, display name)
ACCOUNTS = (
    ("admin", "admin", "hq", "Administrator"),
    ("hq", "manager", "hq", "Headquarters operations"),
    ("south", "manager", "div-south", "South division manager"),
    ("shenzhen", "manager", "r-440300", "Shenzhen region manager"),
    ("nanshan", "manager", "b-440305", "Nanshan branch manager"),
)
PASSWORD_ENV = "EMAP_DEMO_PASSWORD"


def create_accounts(store, data_dir: Path) -> str | None:
    """Create the demo accounts that are missing (nodes absent from the tree are skipped).

    The password is ``EMAP_DEMO_PASSWORD`` or, when unset, generated; a generated one is
    printed once and written to ``<data_dir>/demo-accounts.txt`` (mode 600). Returns
    the path of that file, or None.
    """
    users.ensure_tables(store)
    given = os.environ.get(PASSWORD_ENV)
    password = given or secrets.token_urlsafe(12)
    made = []
    for uid, role, node, name in ACCOUNTS:
        if users.get_user(store, uid) is not None:
            continue
        try:
            users.create_user(store, uid, password, role, node, name=name, by="demo")
        except users.UserError:
            continue
        made.append((uid, role, node))
    if not made:
        return None
    lines = [f"{uid:10s} {role:8s} {node}" for uid, role, node in made]
    print("Demo accounts (user, role, node): " + "; ".join(f"{u} ({r}, {n})" for u, r, n in made))
    if given:
        print(f"Their password is the value of {PASSWORD_ENV}.")
        return None
    path = Path(data_dir) / "demo-accounts.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("EMAP demo accounts; every one has the password below.\n")
        fh.write(f"password: {password}\n\n" + "\n".join(lines) + "\n")
    os.chmod(path, 0o600)
    print(f"Their password (shown once, also in {path}, readable only by you): {password}")
    return str(path)
