"""The owner channel: with a real server holding the store, every store command of the
README runs in a second process and succeeds, through the server."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from config import PROJECT_ROOT
from data.store.database import Store
from tests.conftest import DEMO_END

DAY = DEMO_END.isoformat()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(small_demo_path, tmp_path_factory):
    """A real ``python app.py serve`` on a copy of the small demo; yields its environment."""
    folder = tmp_path_factory.mktemp("owner")
    shutil.copy(small_demo_path, folder / "emap.duckdb")
    env = {**os.environ, "EMAP_DATA_DIR": str(folder), "EMAP_OSMAND_PORT": "0", "EMAP_LOG_FORMAT": "text"}
    env.pop("EMAP_LAKE_DIR", None)
    log = open(folder / "serve.log", "w+b")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "app.py", "serve", "--host", "127.0.0.1", "--port", str(_free_port())],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    socket_path = folder / "emap.duckdb.owner"
    deadline = time.monotonic() + 120
    while not socket_path.exists():
        assert proc.poll() is None, (folder / "serve.log").read_text()
        assert time.monotonic() < deadline, "the server did not open its owner channel"
        time.sleep(0.2)
    yield {"env": env, "folder": folder, "proc": proc}
    if proc.poll() is None:
        proc.terminate()
        proc.wait(60)
    log.close()


def emap(served, *argv, stdin=None, extra_env=None):
    done = subprocess.run(
        [sys.executable, "app.py", *argv],
        cwd=PROJECT_ROOT,
        env={**served["env"], **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        input=stdin,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_the_socket_is_for_the_owning_account_only(served):
    path = served["folder"] / "emap.duckdb.owner"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert path.stat().st_uid == os.getuid()


def test_status_users_tokens_and_devices_run_through_the_server(served):
    status = emap(served, "status")
    assert status.returncode == 0, status.stderr
    assert "pings" in status.stdout and str(served["folder"]) in status.stdout

    made = emap(
        served,
        "users",
        "create",
        "ops-anna",
        "--role",
        "viewer",
        "--node",
        "r-440300",
        extra_env={"EMAP_NEW_PASSWORD": "a long enough password"},
    )
    assert made.returncode == 0, made.stderr
    assert "ops-anna" in emap(served, "users", "list").stdout
    again = emap(
        served,
        "users",
        "create",
        "ops-anna",
        "--role",
        "viewer",
        "--node",
        "hq",
        extra_env={"EMAP_NEW_PASSWORD": "a long enough password"},
    )
    assert again.returncode == 2 and "exists" in again.stderr

    token = emap(served, "tokens", "create", "--system", "erp", "--node", "r-440300")
    assert token.returncode == 0 and "emap_" in token.stdout, token.stderr
    assert "erp" in emap(served, "tokens", "list").stdout

    courier = _a_courier(served)
    reg = emap(served, "devices", "register", "phone-owner-1", "--courier", courier)
    assert reg.returncode == 0, reg.stderr
    assert "phone-owner-1" in emap(served, "devices", "list").stdout
    bulk_file = served["folder"] / "fleet.csv"
    bulk_file.write_text(f"device_id,courier_id\nphone-owner-2,{courier}\nphone-owner-3,nobody\n")
    bulk = emap(served, "devices", "bulk", str(bulk_file))
    assert bulk.returncode == 1  # one line refused
    assert "1 devices written, 1 lines refused" in bulk.stdout
    assert "line 3: no courier 'nobody'" in bulk.stderr


def _a_courier(served) -> str:
    listed = emap(served, "devices", "list").stdout
    for line in listed.splitlines():
        cells = [c.strip() for c in line.split("┆")]
        if len(cells) >= 2 and cells[1].startswith("c-"):
            return cells[1]
    raise AssertionError(f"no courier in {listed[:500]}")


def test_import_streams_the_file_and_its_result_back(served, tmp_path):
    rows = tmp_path / "pings.csv"
    rows.write_text(
        "device_id,ts,lat,lng\n"
        + "".join(f"owner-import-dev,{DAY} 10:{m:02d}:00,22.54,113.93\n" for m in range(5))
    )
    done = emap(served, "import", str(rows), "--kind", "pings")
    assert done.returncode == 0, done.stderr
    assert "pings.csv" in done.stdout and "owner-spool" not in done.stdout


def test_export_writes_the_file_where_the_caller_asked(served, tmp_path):
    out = tmp_path / "sz.csv"
    done = emap(served, "export", "--node", "r-440300", "--date", DAY, "--format", "csv", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert out.read_text().startswith("cell,lat,lng")
    assert str(out) in done.stdout and "owner-spool" not in done.stdout


def test_backtest_simulate_and_lake_export(served, tmp_path):
    bt = emap(served, "backtest", "--node", "b-440305", "--date", DAY)
    assert bt.returncode == 0 and "horizon" in bt.stdout, bt.stderr
    sim = emap(served, "simulate", "--node", "b-440305", "--date", DAY)
    assert sim.returncode == 0 and "before" in sim.stdout, sim.stderr
    lake = tmp_path / "lake"
    exp = emap(served, "lake", "export", "--lake", str(lake), "--reference-only")
    assert exp.returncode == 0, exp.stderr
    assert (lake / "reference").is_dir()


def test_a_backup_taken_while_serving_restores_to_the_same_store(served, tmp_path):
    backup = tmp_path / "backup.duckdb"
    done = emap(served, "backup", "--out", str(backup))
    assert done.returncode == 0, done.stderr
    assert str(backup) in done.stdout
    served_counts = dict(
        (line.split()[0], int(line.split()[1].replace(",", "")))
        for line in emap(served, "status").stdout.splitlines()[1:]
    )
    restored = tmp_path / "restored" / "emap.duckdb"  # restoring is putting the file in place
    restored.parent.mkdir()
    shutil.copy(backup, restored)
    with Store(restored, read_only=True) as store:
        assert store.counts() == served_counts
        assert store.scalar("SELECT count(*) FROM users WHERE user_id = 'ops-anna'") == 1
    again = emap(served, "backup", "--out", str(backup))
    assert again.returncode == 2 and "never overwrites" in again.stderr


def test_demo_on_a_served_store_stops_and_says_why(served):
    done = emap(served, "demo", "--size", "small")
    assert done.returncode == 2
    assert "a server holds the store" in done.stderr


def test_garbage_on_the_channel_harms_nobody(served):
    path = str(served["folder"] / "emap.duckdb.owner")
    for junk in (b"", b"\x00" * 9, b"J\xff\xff\xff\xffxx", b"Jnot a frame at all"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(path)
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:  # closed with the junk unread: refused, as it should be
                pass
    assert emap(served, "status").returncode == 0


def test_changes_are_audited_as_the_os_user_and_the_socket_goes_with_the_server(served):
    """Last of the module: stops the server, then reads its store."""
    assert emap(served, "tokens", "create", "--device", "phone-audit").returncode == 0
    assert (
        emap(
            served, "users", "create", "ops-audit", "--role", "viewer", "--node", "hq", "--generate"
        ).returncode
        == 0
    )
    assert emap(served, "devices", "register", "phone-audit", "--courier", _a_courier(served)).returncode == 0
    served["proc"].terminate()
    served["proc"].wait(60)
    assert not (served["folder"] / "emap.duckdb.owner").exists()
    with Store(served["folder"] / "emap.duckdb", read_only=True) as store:
        rows = (
            store.cursor()
            .execute(
                "SELECT DISTINCT user_id, action FROM audit_log "
                "WHERE action IN ('user_change', 'token_change', 'device_change')"
            )
            .fetchall()
        )
    me = f"cli:{getpass.getuser()}"
    assert {(me, "user_change"), (me, "token_change"), (me, "device_change")} <= set(rows)


def test_a_store_held_without_a_channel_gets_a_sentence(small_demo_path, tmp_path):
    held = tmp_path / "emap.duckdb"
    shutil.copy(small_demo_path, held)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('ok', flush=True); "
            "time.sleep(120)",
            str(held),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        done = subprocess.run(
            [sys.executable, "app.py", "status"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "EMAP_DATA_DIR": str(tmp_path)},
        )
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert f"held by process {holder.pid}" in done.stderr
