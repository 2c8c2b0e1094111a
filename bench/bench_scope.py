"""Benchmark of what access control costs a callback: the same warm callback requests,
signed in, through Flask's test client in one process (no browser, no network), so that
the figures move only with the server's own work.

For each callback of a view it prints the median and p95 wall time per request over
``--n`` requests, as an admin at headquarters and as a branch manager at their branch.
Run it on two versions of the code to compare (every request passes the request guard,
the session look-up and the callbacks' scope checks of the version it runs on):

    .venv/bin/python bench/bench_scope.py --db var/bench-default.duckdb
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import Settings  # noqa: E402
from data.store.database import Store  # noqa: E402

PASSWORD = "bench password 42"
#: Callbacks timed: output id -> extra state items (besides the view state input).
CALLBACKS = {
    "..kpis.children...trend.figure...status.children..": [],
    "..children.rowData...children.columnDefs..": [],
    "alerts.children": [],
    "..breadcrumb.children...drill.options..": [],
    "map-legend.children": [],
    "..map.figure...geometry-key.data..": [{"id": "geometry-key", "property": "data", "value": None}],
}


def _outputs(output: str):
    def one(text):
        cid, prop = text.rsplit(".", 1)
        return {"id": cid, "property": prop}

    return [one(o) for o in output[2:-2].split("...")] if output.startswith("..") else one(output)


def _body(output: str, view: dict) -> dict:
    return {
        "output": output,
        "outputs": _outputs(output),
        "inputs": [{"id": "state", "property": "data", "value": view}],
        "changedPropIds": ["state.data"],
        "state": CALLBACKS[output],
    }


def _sign_in(client, user: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    r = client.post("/login", data={"user": user, "password": PASSWORD, "csrf": csrf})
    if r.status_code != 302:
        raise SystemExit(f"sign-in as {user} failed: {r.status_code}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, required=True, help="a demo store (copied; the copy gets the users)")
    ap.add_argument("--n", type=int, default=200, help="timed requests per callback and user")
    args = ap.parse_args(argv)

    from auth import users
    from pages.app import build_app
    from views import state as st
    from views.model import Model

    tmp = Path(tempfile.mkdtemp(prefix="emap-bench-scope-"))
    shutil.copy(args.db, tmp / "emap.duckdb")
    store = Store(tmp / "emap.duckdb")
    settings = Settings.from_env()
    users.ensure_tables(store)
    branch = store.sql("SELECT branch_id, sum(scans) s FROM cube_hourly GROUP BY 1 ORDER BY s DESC LIMIT 1")[
        "branch_id"
    ][0]
    for uid, role, node in (("bench-hq", "admin", "hq"), ("bench-branch", "manager", branch)):
        if users.get_user(store, uid) is None:
            users.create_user(store, uid, PASSWORD, role, node, by="bench")
    day = Model(store, settings).dates()[-1]
    app = build_app(store, settings, warm=False, prefetch=False, auth=True)
    print(f"store {args.db}, day {day}, branch {branch}; load average {os.getloadavg()[0]:.2f}")
    for uid, node in (("bench-hq", "hq"), ("bench-branch", branch)):
        client = app.server.test_client()
        _sign_in(client, uid)
        view = {
            **st.default(node=node, day=day, hour=10),
            "layers": ["hexes", "outlines", "zones", "outlets"],
        }
        for output in CALLBACKS:
            body = _body(output, view)
            for _ in range(3):  # warm the caches: what is timed is the request, not the reads
                r = client.post("/_dash-update-component", json=body)
                assert r.status_code == 200, (output, r.status_code, r.get_data()[:200])
            times = []
            for _ in range(args.n):
                t = time.perf_counter()
                client.post("/_dash-update-component", json=body)
                times.append(time.perf_counter() - t)
            ms = sorted(x * 1000 for x in times)
            name = output.strip(".").split(".")[0]
            print(
                f"  {uid:13s} {name:10s} median {statistics.median(ms):7.2f} ms"
                f"  p95 {ms[int(0.95 * len(ms)) - 1]:7.2f} ms"
            )
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    sys.stdout.flush()
    os._exit(0)  # background threads of the app may be inside DuckDB


if __name__ == "__main__":
    main()
