"""``python app.py users``: create, list, change roles, reset passwords, disable users.

With a server running, it runs inside the server (``cli.owner``); changes are audited as
``cli:<os user>``.
"""

from __future__ import annotations

import getpass
import os
import secrets
import sys

from auth import users
from cli import context
from cli.store import open_store

ACTIONS = ("create", "list", "set-role", "reset-password", "disable", "enable")
PASSWORD_ENV = "EMAP_NEW_PASSWORD"


def add_arguments(parser) -> None:
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("user", nargs="?", help="user id (login name)")
    parser.add_argument("--role", choices=users.ROLES, help="viewer, manager or admin")
    parser.add_argument("--node", help="node the role is bound to (hq, div-south, r-440300, b-440305)")
    parser.add_argument("--name", help="display name")
    grp = parser.add_mutually_exclusive_group()
    grp.add_argument(
        "--couriers",
        dest="couriers",
        action="store_true",
        default=None,
        help="may see individual courier positions above branch level",
    )
    grp.add_argument("--no-couriers", dest="couriers", action="store_false")
    parser.add_argument(
        "--generate",
        action="store_true",
        help="generate a password and print it once (else EMAP_NEW_PASSWORD or a prompt)",
    )


def _needs_password(args) -> bool:
    return args.action in ("create", "reset-password") and not args.generate


def _prompt(user: str) -> str:
    pw = getpass.getpass(f"password for {user}: ")
    if pw != getpass.getpass("again: "):
        raise users.UserError("the passwords differ")
    return pw


def secrets_for(args) -> dict:
    """What a command run by the server needs from this terminal: the new password
    (from ``EMAP_NEW_PASSWORD`` or a prompt here, never in the arguments)."""
    if not (_needs_password(args) and args.user):
        return {}
    return {PASSWORD_ENV: os.environ.get(PASSWORD_ENV) or _prompt(args.user)}


def _password(args) -> str:
    if args.generate:
        pw = secrets.token_urlsafe(12)
        print(f"password for {args.user}: {pw}  (shown once)")
        return pw
    pw = context.env(PASSWORD_ENV)
    if pw:
        return pw
    if context.remote() is not None:
        raise users.UserError(f"give the password in {PASSWORD_ENV} or use --generate")
    return _prompt(args.user)


def run(args, settings) -> int:
    store = open_store(settings)
    try:
        users.ensure_tables(store)
        if args.action == "list":
            with __import__("polars").Config(tbl_rows=-1, tbl_cols=-1):
                print(users.list_users(store))
            return 0
        if not args.user:
            print(f"error: users {args.action} needs a user id", file=sys.stderr)
            return 2
        if args.action == "create":
            if not args.role or not args.node:
                print("error: users create needs --role and --node", file=sys.stderr)
                return 2
            users.create_user(
                store,
                args.user,
                _password(args),
                args.role,
                args.node,
                name=args.name,
                can_see_couriers=bool(args.couriers),
                by=context.operator_label(),
            )
        elif args.action == "set-role":
            users.update_user(
                store,
                args.user,
                role=args.role,
                node_id=args.node,
                can_see_couriers=args.couriers,
                by=context.operator_label(),
            )
        elif args.action == "reset-password":
            if users.get_user(store, args.user) is None:
                raise users.UserError(f"no user {args.user!r}")
            users.update_user(store, args.user, password=_password(args), by=context.operator_label())
        else:
            users.update_user(
                store, args.user, disabled=args.action == "disable", by=context.operator_label()
            )
        print(f"{args.action}: {args.user} done")
        return 0
    except users.UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
