"""``python app.py tokens``: create, list or revoke ingest API tokens."""

from __future__ import annotations

import sys

from cli import context
from cli.store import open_store
from config import Settings


def add_arguments(t) -> None:
    t.add_argument("action", choices=["create", "list", "revoke"])
    grp = t.add_mutually_exclusive_group()
    grp.add_argument("--device", dest="subject_device", help="device id the token may write for")
    grp.add_argument("--system", dest="subject_system", help="name of an operations system")
    t.add_argument("--id", dest="token_id", help="token id to revoke")
    t.add_argument("--node", help="bind a system token to a node: records outside it are rejected")


def run(args, settings: Settings) -> int:
    from auth import users
    from data.ingest import tokens

    kind = "device" if args.subject_device else "system"
    subject = args.subject_device or args.subject_system
    store = open_store(settings)
    tokens.ensure_table(store)
    users.ensure_tables(store)
    if args.action == "create":
        if not subject:
            print("error: tokens create needs --device ID or --system NAME", file=sys.stderr)
            return 2
        try:
            secret = tokens.create_token(store, kind, subject, node_id=args.node)
        except (ValueError, LookupError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        bound = f" (records inside {args.node} only)" if args.node else ""
        users.audit(
            store, context.operator_label(), "token_change", f"create {kind} token for {subject}{bound}"
        )
        print(f"{kind} token for {subject}{bound}: {secret}")
        print("It is shown once; the store keeps only its hash.")
    elif args.action == "list":
        print(tokens.list_tokens(store))
    else:
        if not args.token_id:
            print("error: tokens revoke needs --id TOKEN_ID (see tokens list)", file=sys.stderr)
            return 2
        n = tokens.revoke_token(store, args.token_id)
        tokens.forget_cached(store)  # through a running server: refused from its next request
        users.audit(store, context.operator_label(), "token_change", f"revoke {args.token_id}: {n} revoked")
        print(f"revoked {n} token(s)")
        return 0 if n else 1
    return 0
