"""`python app.py serve` and a taken phone port: the default gives way, a chosen one does not."""

import errno
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from config import Settings
from tests.ingest_support import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _hold(port: int) -> socket.socket | None:
    """Hold a loopback port as another program would; None if one already does."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            return None
        raise
    sock.listen()
    return sock


@pytest.fixture(scope="module")
def network_file(tmp_path_factory, tree):
    """A store holding the organisation tree and nothing else, made once."""
    from data.store.database import Store

    path = tmp_path_factory.mktemp("network") / "emap.duckdb"
    with Store(path) as store:
        store.save_tree(tree)
    return path


def _env(tmp_path, network_file, **extra) -> dict:
    """The server's environment: a data folder of its own holding a copy of the network."""
    shutil.copy(network_file, tmp_path / Settings().db_name)
    env = {k: v for k, v in os.environ.items() if k != "EMAP_OSMAND_PORT"}
    return {**env, "EMAP_DATA_DIR": str(tmp_path), "PYTHONPATH": str(PROJECT_ROOT), **extra}


def _wait_until_serving(proc, port: int, log: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"the dashboard did not start within {seconds} s"
        try:
            if requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.2)


def test_a_taken_default_phone_port_leaves_the_dashboard_serving(tmp_path, network_file):
    default = Settings().osmand_port
    holder = _hold(default)  # taken already (None) is the same case
    port = free_port()
    log = tmp_path / "serve.err"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "serve", "--no-demo", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=_env(tmp_path, network_file),
        )
    try:
        _wait_until_serving(proc, port, log)
        assert "phone listener is off" in log.read_text() and f":{default}" in log.read_text()
        # phones still reach EMAP, on the main port's /osmand
        answer = requests.get(
            f"http://127.0.0.1:{port}/osmand", params={"id": "x", "lat": "91", "lon": "0"}, timeout=5
        )
        # a fix refused for good is answered 200 (the phone moves on) with its reason
        assert answer.status_code == 200 and "lat out of range" in answer.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if holder is not None:
            holder.close()


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_taken_chosen_phone_port_is_an_error(tmp_path, network_file, how):
    holder = _hold(0)
    taken = holder.getsockname()[1]
    args, env = ["--port", str(free_port())], _env(tmp_path, network_file)
    if how == "flag":
        args += ["--osmand-port", str(taken)]
    else:
        env["EMAP_OSMAND_PORT"] = str(taken)
    try:
        done = subprocess.run(
            [sys.executable, "app.py", "serve", "--no-demo", "--host", "127.0.0.1", *args],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    finally:
        holder.close()
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"cannot listen for phones on 127.0.0.1:{taken}" in done.stderr


def test_serving_an_empty_data_folder_without_the_demo_builds_the_network(tmp_path):
    # `serve --no-demo` on a new folder: the organisation tree is built, the dashboard
    # answers (it used to stop on a store without a tree).
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "EMAP_OSMAND_PORT"}
    env |= {"EMAP_DATA_DIR": str(tmp_path), "PYTHONPATH": str(PROJECT_ROOT)}
    log = tmp_path / "serve.err"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "app.py",
                "serve",
                "--no-demo",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--osmand-port",
                "0",
            ],
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    try:
        _wait_until_serving(proc, port, log)
        assert "building the organisation tree" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
