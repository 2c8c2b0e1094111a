"""The report renderer on its own, fed pages that misbehave on purpose (no escaping and no
CSP to help it): it loads the page file and nothing else, dismisses dialogs, stops at its
time limit with a ReportError, runs sandboxed as an unprivileged user when EMAP runs as
root, and the command line turns a failed render into a message and an exit code."""

from __future__ import annotations

import dataclasses
import logging
import os
import struct
import subprocess
import sys
import zlib

import pytest

from config import PROJECT_ROOT
from reports import chromium
from reports.build import ReportError
from tests.security.names_support import *  # noqa: F403 (the fixtures)
from tests.security.names_support import BRANCH, DAY

pytestmark = pytest.mark.browser

PNG = b"\x89PNG\r\n\x1a\n"
ROOT = os.geteuid() == 0


def _settings(settings, **changes):
    return dataclasses.replace(settings, **{"render_timeout_seconds": 40.0, **changes})


def _nasty_page(recorder, probe: str) -> str:
    r = recorder.url
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="{r}/style.css"><script src="{r}/script.js"></script>
<script src="file:///etc/os-release"></script></head>
<body><h1>page</h1>
<iframe src="file:///etc/os-release"></iframe><iframe src="{probe}"></iframe>
<object data="{probe}"></object><img src="{r}/img.png"><img src="file:///etc/hostname">
<iframe src="data:text/html,<img src='{r}/from-data-frame'><iframe src='{probe}'></iframe>"></iframe>
<iframe srcdoc="<img src='{r}/from-srcdoc'>"></iframe>
<script>
  fetch("{r}/fetch").catch(() => 0);
  try {{ new WebSocket("{r.replace("http", "ws")}/ws"); }} catch (e) {{}}
  navigator.sendBeacon && navigator.sendBeacon("{r}/beacon", "x");
  window.open("{r}/popup"); window.open("{probe}");
  var x = new XMLHttpRequest(); x.open("GET", "file:///etc/passwd"); try {{ x.send(); }} catch (e) {{}}
</script></body></html>"""


def test_renderer_loads_the_page_file_and_nothing_else(settings, recorder, probe_file):
    before = len(recorder.hits)
    log = chromium.RenderLog()
    blob = chromium.run(
        _nasty_page(recorder, probe_file), "png", 600, 400, settings=_settings(settings), record=log
    )
    assert blob[:8] == PNG
    assert recorder.hits[before:] == []  # not the network, not the local page that calls it
    assert probe_file in log.blocked and "file:///etc/os-release" in log.blocked
    assert f"{recorder.url}/img.png" in log.blocked and f"{recorder.url}/fetch" in log.blocked
    assert not any(u.startswith("file:") and u.endswith("report.html") for u in log.blocked)


def test_renderer_dismisses_dialogs(settings):
    page = """<html><body><script>
        alert("one"); var c = confirm("two"); var p = prompt("three", "x");
        document.body.textContent = "after " + c + " " + p;
    </script></body></html>"""
    log = chromium.RenderLog()
    for kind, magic in (("png", PNG), ("pdf", b"%PDF-")):
        log.dialogs.clear()
        blob = chromium.run(page, kind, 400, 300, settings=_settings(settings), record=log)
        assert blob.startswith(magic)
        assert log.dialogs == ["one", "two", "three"]


@pytest.mark.parametrize("kind", ["png", "pdf"])
def test_renderer_stops_at_its_time_limit_with_a_report_error(settings, kind):
    page = "<html><body><script>while (true) {}</script></body></html>"
    log = chromium.RenderLog()
    with pytest.raises(chromium.RenderTimeoutError, match=r"stopped after 3s") as caught:
        chromium.run(
            page, kind, 400, 300, settings=_settings(settings, render_timeout_seconds=3.0), record=log
        )
    assert isinstance(caught.value, ReportError)  # what the export callback shows as a message
    assert log.pid and chromium.live_group(log.pid) == []  # nothing of the browser is left


@pytest.mark.skipif(not ROOT, reason="the privilege drop applies when EMAP runs as root")
def test_renderer_runs_sandboxed_as_an_unprivileged_user(settings):
    log = chromium.RenderLog()
    chromium.run("<html><body>x</body></html>", "png", 300, 200, settings=_settings(settings), record=log)
    nobody = __import__("pwd").getpwnam("nobody").pw_uid
    assert log.user == "nobody" and log.sandbox
    assert log.processes and {uid for _, uid, _ in log.processes} == {nobody}
    renderers = [seccomp for kind, _, seccomp in log.processes if kind == "renderer"]
    assert renderers and all(mode == 2 for mode in renderers)  # seccomp-bpf: the sandbox is on


@pytest.mark.skipif(not ROOT, reason="Chromium's sandbox only refuses to start as root")
def test_rendering_as_root_needs_the_explicit_no_sandbox_setting(settings, caplog):
    as_root = _settings(settings, render_user="")
    with pytest.raises(chromium.ChromiumError, match="EMAP_RENDER_NO_SANDBOX"):
        chromium.run("<html><body>x</body></html>", "png", 300, 200, settings=as_root)
    log = chromium.RenderLog()
    with caplog.at_level(logging.WARNING, logger="reports.chromium"):
        blob = chromium.run(
            "<html><body>x</body></html>",
            "png",
            300,
            200,
            settings=dataclasses.replace(as_root, render_no_sandbox=True),
            record=log,
        )
    assert blob[:8] == PNG and log.user == "root" and not log.sandbox
    assert any("without its sandbox" in r.getMessage() for r in caplog.records)


def test_export_command_reports_a_render_over_its_limit(small_demo_path, tmp_path):
    env = {
        **os.environ,
        "EMAP_DATA_DIR": str(small_demo_path.parent),
        "EMAP_DB_NAME": small_demo_path.name,
        "EMAP_RENDER_TIMEOUT_SECONDS": "0.01",
    }
    out = tmp_path / "b.png"
    run = subprocess.run(
        [
            sys.executable,
            "app.py",
            "export",
            "--node",
            BRANCH,
            "--date",
            DAY,
            "--format",
            "png",
            "--out",
            str(out),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 4, run.stderr
    assert "error: rendering stopped after 0.01s" in run.stderr
    assert "Traceback" not in run.stderr and not out.exists()


def _pixels(png: bytes) -> list[bytes]:
    """Rows of an 8-bit RGB or RGBA PNG as bytes (Chromium's screenshots)."""
    pos, idat, head = 8, b"", None
    while pos < len(png):
        size, kind = struct.unpack(">I4s", png[pos : pos + 8])
        body = png[pos + 8 : pos + 8 + size]
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + size
    width, height, depth, colour, _, _, interlace = head
    assert depth == 8 and colour in (2, 6) and not interlace
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return [bytes(r[i] for i in range(len(r)) if i % bpp < 3) for r in rows]


def test_renderer_waits_for_the_page_to_stop_moving(settings):
    # Leaflet's fitBounds animates the zoom; an image taken meanwhile shows a scaled map
    page = """<html><head><style>
        body { margin: 0; background: #fff; }
        #box { position: absolute; left: 0; top: 0; width: 60px; height: 60px; background: #f00;
               transition: left 0.6s linear; }
    </style></head><body><div id="box"></div><script>
        const box = document.getElementById("box");
        box.offsetLeft;  // the start position is laid out, so the change below is a transition
        box.style.left = "300px";
    </script></body></html>"""
    rows = _pixels(chromium.run(page, "png", 400, 100, settings=_settings(settings)))
    assert rows[30][330 * 3 : 330 * 3 + 3] == b"\xff\x00\x00"  # the box where it ends up
    assert rows[30][30 * 3 : 30 * 3 + 3] == b"\xff\xff\xff"  # and no longer where it started
