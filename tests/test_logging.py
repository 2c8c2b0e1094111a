"""The serving commands' log: JSON or text lines on stderr, an access line per request,
no secret from a query string or a header ever written, bad log settings refused."""

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from werkzeug.test import Client
from werkzeug.wrappers import Response

import app as entry
from cli import logs
from config import Settings
from data.ingest.tokens import create_token
from data.store.database import Store
from tests.ingest_support import SHENZHEN, copy_store, free_port, start_subprocess_server

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SECRETS = ("SECRET123", "SECRET456", "COOKIE789", "hunter2")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A store with one system token and nothing else (the requests need no network):
    ``(path, token)``."""
    path = tmp_path_factory.mktemp("logs") / "emap.duckdb"
    with Store(path) as store:
        return path, create_token(store, "system", "test-ops")


def _serve_and_stop(db: Path, env: dict, send) -> str:
    """Run ``python -m cli.ingest`` on ``db`` with ``env``, call ``send(url)``, stop the
    server (SIGTERM, as a supervisor would) and return everything it wrote to stderr."""
    port = free_port()
    proc = start_subprocess_server(db, port, env=env)
    try:
        send(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return Path(f"{db}.{port}.log").read_text()


def _phone_and_batch(url: str, system_token: str) -> None:
    lat, lng = SHENZHEN
    fix = {"id": "dev-001", "lat": lat, "lon": lng, "timestamp": 1_700_000_000}
    r = requests.get(f"{url}/osmand", params={**fix, "token": "SECRET123"}, timeout=10)
    assert r.status_code == 401  # an unknown token
    r = requests.post(
        f"{url}/api/v1/pings", json=[], headers={"Authorization": "Bearer SECRET456"}, timeout=10
    )
    assert r.status_code == 401
    # a good token and a record refused (no such device): 200, with the refusal listed
    record = [{"device_id": "dev-002", "ts": "2026-01-05T08:00:00Z", "lat": lat, "lng": lng}]
    r = requests.post(
        f"{url}/api/v1/pings",
        json=record,
        headers={"Authorization": f"Bearer {system_token}", "Cookie": "session=COOKIE789"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    r = requests.get(f"{url}/api/v1/health", params={"password": "hunter2", "x": "1"}, timeout=10)
    assert r.ok


def test_json_log_has_an_access_line_per_request_and_no_secret(template, tmp_path):
    path, token = template
    db = copy_store(path, tmp_path / "emap.duckdb")
    # phone fixes' lines are at DEBUG: asked for on the access logger alone
    env = {"EMAP_LOG_FORMAT": "json", "EMAP_LOG_LEVEL": "info,emap.access=debug"}
    out = _serve_and_stop(db, env, lambda url: _phone_and_batch(url, token))

    lines = [json.loads(line) for line in out.splitlines() if line.strip()]  # every line is JSON
    assert all({"ts", "level", "logger", "message"} <= set(rec) for rec in lines)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["ts"]) for rec in lines)
    assert any("EMAP ingest listening on" in rec["message"] for rec in lines)
    seen = {
        (rec["method"], rec["path"], rec["status"]): rec for rec in lines if rec["logger"] == "emap.access"
    }
    phone = seen[("GET", "/osmand", 401)]
    assert phone["level"] == "DEBUG" and "token=***" in phone["query"] and "id=dev-001" in phone["query"]
    assert phone["client"] == "127.0.0.1" and phone["bytes"] > 0 and phone["duration_ms"] >= 0
    assert seen[("POST", "/api/v1/pings", 401)]["level"] == "INFO"
    assert seen[("POST", "/api/v1/pings", 200)]["bytes"] > 0
    assert seen[("GET", "/api/v1/health", 200)]["query"] == "password=***&x=1"
    for secret in (*SECRETS, token):
        assert secret not in out


def test_text_log_and_phone_lines_off_at_info(template, tmp_path):
    path, token = template
    db = copy_store(path, tmp_path / "emap.duckdb")
    out = _serve_and_stop(db, {}, lambda url: _phone_and_batch(url, token))

    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.search(
        rf"^{stamp} INFO emap\.ingest: EMAP ingest listening on http://127\.0\.0\.1:\d+$", out, re.M
    )
    line = rf'^{stamp} INFO emap\.access: 127\.0\.0\.1 "POST /api/v1/pings HTTP/1\.1" 401 \d+ [\d.]+ms$'
    assert re.search(line, out, re.M), out
    assert re.search(r'"GET /api/v1/health\?password=\*\*\*&x=1 HTTP/1\.1" 200 ', out)
    assert "/osmand" not in out  # phone fixes: DEBUG only
    for secret in (*SECRETS, token):
        assert secret not in out


def test_a_bad_log_format_stops_the_ingest_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMAP_LOG")}
    env |= {"EMAP_LOG_FORMAT": "xml", "PYTHONPATH": str(PROJECT_ROOT)}
    db = tmp_path / "emap.duckdb"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli.ingest",
            "--db",
            str(db),
            "--port",
            str(free_port()),
            "--osmand-port",
            "0",
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "EMAP_LOG_FORMAT='xml' is not a log format" in done.stderr
    assert not db.exists()  # refused before the store was opened


def test_a_bad_log_level_stops_the_dashboard(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMAP_LOG_LEVEL", "loud")
    monkeypatch.setenv("EMAP_DATA_DIR", str(tmp_path))
    assert entry.main(["serve", "--port", str(free_port()), "--osmand-port", "0"]) == 2
    assert "EMAP_LOG_LEVEL='loud': 'loud' is not a level" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before the store was opened


def test_a_streamed_body_is_counted_and_logged_when_closed(caplog):
    def app(environ, start_response):
        return Response((b"x" * n for n in (3, 4, 5)), mimetype="text/plain")(environ, start_response)

    client = Client(logs.AccessLog(app, logs.trusted_networks(_settings("10.0.0.0/8"))))
    with caplog.at_level(logging.INFO, logger="emap.access"):
        got = client.get(
            "/stream?api_key=K1&a=b",
            environ_base={"REMOTE_ADDR": "10.1.2.3"},
            headers={"X-Forwarded-For": "203.0.113.9, 10.0.0.7"},
        )
        assert got.get_data() == b"x" * 12
        got.close()
    (rec,) = [r for r in caplog.records if r.name == "emap.access"]
    assert (rec.status, rec.bytes, rec.query) == (200, 12, "api_key=***&a=b")
    assert rec.client == "203.0.113.9"  # behind a trusted proxy, as sign-ins see it


def _settings(trusted: str) -> Settings:
    return Settings.from_env({"EMAP_TRUSTED_PROXIES": trusted})
