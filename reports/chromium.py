"""Headless Chromium for static exports (screenshots and PDF printing), kept on a leash.

A report page holds names from data, so the browser that renders it is treated as
exposed to hostile input:

* **one file, nothing else.** Chromium is driven over the DevTools protocol on a pipe
  (``--remote-debugging-pipe``, no port anyone else can reach). Every request is
  paused (``Fetch.enable`` with the pattern ``*``): the report file itself is let
  through once, every other request (``file://``, ``http(s)://``, anything) fails as
  blocked. A proxy that goes nowhere (``--proxy-server`` on a closed loopback port)
  catches whatever the interception would miss, and the page's own
  Content-Security-Policy (``reports.html``) blocks it in the first place.
* **sandboxed, unprivileged.** When EMAP runs as root (CI, servers), Chromium runs as
  ``settings.render_user`` (default ``nobody``) with its sandbox on; Chromium's
  sandbox does not start as root. ``EMAP_RENDER_NO_SANDBOX=1`` turns the sandbox off
  for hosts without user namespaces, with a warning in the log on every render.
* **no dialogs, no hang.** ``alert``/``confirm``/``prompt`` are dismissed as they open,
  and a render stops at ``settings.render_timeout_seconds`` with
  :class:`RenderTimeoutError`; the browser's process group is killed either way.

One fresh profile per call (a temporary folder owned by the rendering user), so a
run neither depends on nor leaves any browser state.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import pwd
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from reports.build import ReportError

log = logging.getLogger(__name__)

#: The Chromium binary (the Debian package); ``EMAP_CHROMIUM`` overrides it.
DEFAULT_CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--disable-extensions",
    "--mute-audio",
    "--no-default-browser-check",
)
#: Flags of the renderer only: no crash reporter (it would outlive the process group),
#: no DNS prefetch, WebRTC without UDP, no pop-up windows (a page the interception is not
#: attached to), and a proxy on a closed port so that any request the interception
#: misses goes nowhere (loopback included: ``<-loopback>``).
RENDER_FLAGS = (
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--dns-prefetch-disable",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--block-new-web-contents",
    "--remote-debugging-pipe",
    "--remote-allow-origins=",
)
#: Flags for a browser driven by Playwright in the tests (which adds its own --headless);
#: the tests run as root, where Chromium's sandbox does not start.
PLAYWRIGHT_ARGS = [f for f in FLAGS if f != "--headless"] + ["--no-sandbox"]
#: Seconds a render may take when no settings are given (``Settings.render_timeout_seconds``).
TIMEOUT = 30.0
#: Waits until the page has stopped moving (no running animation or transition, no
#: Leaflet zoom animation) for two frames in a row, or 2 s at most.
SETTLE = """new Promise(done => {
    const start = performance.now();
    let calm = 0;
    function tick() {
        const busy = document.getAnimations().some(a => a.playState === "running")
            || document.querySelector(".leaflet-zoom-anim") !== null;
        calm = busy ? 0 : calm + 1;
        if (calm >= 2 || performance.now() - start > 2000) done(1); else requestAnimationFrame(tick);
    }
    requestAnimationFrame(tick);
})"""
#: Descriptors of the DevTools pipe inside Chromium (fixed by ``--remote-debugging-pipe``).
_PIPE_IN, _PIPE_OUT = 3, 4


class ChromiumError(ReportError, RuntimeError):
    """Chromium is missing, could not start, or did not produce its output."""


class RenderTimeoutError(ChromiumError):
    """A render took longer than its time limit and was stopped."""


@dataclass
class RenderLog:
    """What a render refused along the way, and how the browser ran (for logs and tests).

    ``processes``: Chromium's processes once the page had loaded, as
    ``(type, uid, seccomp mode)`` read from ``/proc`` (``type`` "browser" for the main
    one; mode 2 is a seccomp-bpf filter, Chromium's sandbox).
    """

    blocked: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    user: str = ""
    sandbox: bool = True
    pid: int = 0
    processes: list[tuple[str, int, int]] = field(default_factory=list)


def _processes(root: int) -> list[tuple[str, int, int]]:
    """``(type, uid, seccomp)`` of process ``root`` and its descendants (Linux ``/proc``)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            args = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        info = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        # Chromium rewrites its command line as one string: search, don't split
        kind = re.search(rb"--type=([\w-]+)", args)
        kind = kind.group(1).decode() if kind else "browser"
        seccomp = int(info.get("Seccomp", "0").strip() or 0)
        table[int(entry.name)] = (int(info["PPid"]), (kind, int(info["Uid"].split()[1]), seccomp))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out.append(table[pid][1])
        todo += [child for child, (parent, _) in table.items() if parent == pid]
    return out


def binary(settings=None) -> str:
    """Path of the Chromium binary (``EMAP_CHROMIUM``, else :data:`DEFAULT_CHROMIUM`)."""
    path = getattr(settings, "chromium", "") or os.environ.get("EMAP_CHROMIUM") or DEFAULT_CHROMIUM
    if not (Path(path).is_file() or shutil.which(path)):
        raise ChromiumError(
            f"Chromium not found at {path} (install the 'chromium' package or set EMAP_CHROMIUM)"
        )
    return path


def settings_or_env(settings=None):
    """``settings``, or the settings of the environment (``config.Settings.from_env``)."""
    if settings is not None:
        return settings
    from config import Settings

    return Settings.from_env()


def _account(settings) -> pwd.struct_passwd | None:
    """The account Chromium runs as: None for this process's own (not root)."""
    if os.geteuid() != 0:
        return None
    name = getattr(settings, "render_user", "nobody")
    if not name:
        return None
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise ChromiumError(
            f"cannot render as user {name!r}: no such account (set EMAP_RENDER_USER to an "
            "unprivileged account)"
        ) from None


class _Pipe:
    """The DevTools protocol on a pair of pipes: JSON messages ended by NUL bytes."""

    def __init__(self, to_browser: int, from_browser: int, deadline: float, limit: float):
        self.w, self.r = to_browser, from_browser
        self.deadline, self.limit = deadline, limit
        self.buf = b""
        self.next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            self._wait(select.select([], [self.w], [], self._left())[1])
            data = data[os.write(self.w, data) :]
        return self.next_id

    def _left(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def _wait(self, ready) -> None:
        if not ready and time.monotonic() >= self.deadline:
            raise RenderTimeoutError(f"rendering stopped after {self.limit:g}s (EMAP_RENDER_TIMEOUT_SECONDS)")

    def read(self) -> dict:
        """The next message (a response or an event), waiting at most until the deadline."""
        while b"\0" not in self.buf:
            ready = select.select([self.r], [], [], self._left())[0]
            self._wait(ready)
            if not ready:
                continue
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise ChromiumError("Chromium closed its DevTools pipe (it exited)")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        return json.loads(raw)


class _Session:
    """One page of the browser, with requests and dialogs handled as they arrive."""

    def __init__(self, pipe: _Pipe, allowed: str, record: RenderLog):
        self.pipe = pipe
        self.allowed = allowed
        self.loaded_document = False
        self.record = record
        self.session: str | None = None
        self.load_fired = False

    def call(self, method: str, params: dict | None = None, browser: bool = False) -> dict:
        """Send a command and return its result, handling the events that arrive meanwhile."""
        want = self.pipe.send(method, params, None if browser else self.session)
        while True:
            msg = self.pipe.read()
            if msg.get("id") == want:
                if "error" in msg:
                    raise ChromiumError(f"{method}: {msg['error'].get('message', msg['error'])}")
                return msg.get("result", {})
            if "method" in msg:
                self.on_event(msg)

    def wait_load(self) -> None:
        while not self.load_fired:
            msg = self.pipe.read()
            if "method" in msg:
                self.on_event(msg)

    def on_event(self, msg: dict) -> None:
        method, params = msg["method"], msg.get("params", {})
        if method == "Fetch.requestPaused":
            url = params["request"]["url"]
            first_document = (
                not self.loaded_document and url == self.allowed and params.get("resourceType") == "Document"
            )
            if first_document:
                self.loaded_document = True
                self.pipe.send("Fetch.continueRequest", {"requestId": params["requestId"]}, self.session)
            else:
                self.record.blocked.append(url)
                log.warning("report render: blocked a request for %.200s", url)
                self.pipe.send(
                    "Fetch.failRequest",
                    {"requestId": params["requestId"], "errorReason": "BlockedByClient"},
                    self.session,
                )
        elif method == "Page.javascriptDialogOpening":
            self.record.dialogs.append(str(params.get("message", ""))[:200])
            log.warning("report render: dismissed a %s dialog", params.get("type", "JavaScript"))
            self.pipe.send("Page.handleJavaScriptDialog", {"accept": False}, self.session)
        elif method == "Page.loadEventFired":
            self.load_fired = True
        elif method in ("Inspector.targetCrashed", "Target.targetCrashed"):
            raise ChromiumError("the report page crashed Chromium's renderer")


def _command(settings, tmpdir: Path, sandbox: bool) -> list[str]:
    return [
        binary(settings),
        *FLAGS,
        *RENDER_FLAGS,
        *([] if sandbox else ["--no-sandbox"]),
        f"--user-data-dir={tmpdir / 'profile'}",
        "about:blank",
    ]


def _start(cmd: list[str], account, tmpdir: Path) -> tuple[subprocess.Popen, int, int]:
    """Start Chromium with the DevTools pipe on its descriptors 3 and 4."""
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    # the ends Chromium keeps, moved above 9 so the shell's 3<& and 4>& cannot collide
    child_r = fcntl.fcntl(to_r, fcntl.F_DUPFD_CLOEXEC, 10)
    child_w = fcntl.fcntl(from_w, fcntl.F_DUPFD_CLOEXEC, 10)
    for fd in (to_r, from_w):
        os.close(fd)
    home = str(tmpdir)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "XDG_CONFIG_HOME": home,
        "XDG_CACHE_HOME": home,
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    extra = {}
    if account is not None:
        extra = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    # bash puts the pipe on the descriptors Chromium expects (3 in, 4 out): Popen
    # keeps passed descriptors at their numbers and a preexec hook is unsafe in threads.
    script = f'exec "$0" "$@" {_PIPE_IN}<&{child_r} {_PIPE_OUT}>&{child_w} {child_r}<&- {child_w}>&-'
    try:
        with open(tmpdir / "stderr.log", "wb") as err:
            proc = subprocess.Popen(
                ["/bin/bash", "-c", script, *cmd],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                pass_fds=(child_r, child_w),
                env=env,
                cwd=home,
                start_new_session=True,
                close_fds=True,
                **extra,
            )
    except BaseException:
        for fd in (to_w, from_r):
            os.close(fd)
        raise
    finally:
        os.close(child_r)
        os.close(child_w)
    return proc, to_w, from_r


def live_group(pgid: int) -> list[int]:
    """Pids of the processes of group ``pgid`` that still run (zombies left out)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after ")"
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state not in ("Z", "X"):
            out.append(int(entry.name))
    return out


def _stop(proc: subprocess.Popen) -> None:
    """Kill what is left of the browser's process group and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        log.error("Chromium (pid %d) did not exit after SIGKILL", proc.pid)
    # the group's other processes die as the signal reaches them; a moment at most
    for _ in range(50):
        if not live_group(proc.pid):
            return
        time.sleep(0.02)
    log.error("processes of Chromium's group %d still run after SIGKILL", proc.pid)


def _stderr_tail(tmpdir: Path) -> str:
    try:
        return (tmpdir / "stderr.log").read_bytes().decode("utf-8", "replace")[-800:]
    except OSError:
        return ""


def run(
    page: str,
    kind: str,
    width: int = 1400,
    height: int = 1000,
    settings=None,
    deadline: float | None = None,
    record: RenderLog | None = None,
) -> bytes:
    """Render ``page`` (HTML text) in headless Chromium as ``kind`` ``"png"`` or ``"pdf"``.

    Parameters
    ----------
    page : str
        The whole HTML page; it is written to a temporary file, the only URL the
        browser may load.
    kind : str
        ``"png"``: a screenshot of a ``width`` x ``height`` viewport; ``"pdf"``: the page
        printed with its own ``@page`` size.
    settings : config.Settings, optional
        ``render_timeout_seconds``, ``render_user``, ``render_no_sandbox``, ``chromium``
        (default: from the environment).
    deadline : float, optional
        A ``time.monotonic()`` instant to stop at, for renders made of several calls
        (default: now + ``render_timeout_seconds``).
    record : RenderLog, optional
        Filled with the requests blocked, the dialogs dismissed and how the browser's
        processes run.

    Raises
    ------
    RenderTimeoutError
        The render did not finish in time (the browser is killed).
    ChromiumError
        Chromium is missing, failed to start or crashed.
    """
    if kind not in ("png", "pdf"):
        raise ValueError(f"kind must be 'png' or 'pdf', got {kind!r}")
    settings = settings_or_env(settings)
    limit = float(getattr(settings, "render_timeout_seconds", TIMEOUT))
    deadline = deadline if deadline is not None else time.monotonic() + limit
    inspect = record is not None
    record = record if record is not None else RenderLog()
    account = _account(settings)
    sandbox = not getattr(settings, "render_no_sandbox", False)
    if account is None and os.geteuid() == 0 and sandbox:
        raise ChromiumError(
            "Chromium's sandbox does not start as root: set EMAP_RENDER_USER to an unprivileged "
            "account, or EMAP_RENDER_NO_SANDBOX=1 to render without the sandbox"
        )
    if not sandbox:
        log.warning("report render: Chromium runs without its sandbox (EMAP_RENDER_NO_SANDBOX)")
    record.user = account.pw_name if account else pwd.getpwuid(os.geteuid()).pw_name
    record.sandbox = sandbox
    tmpdir = Path(tempfile.mkdtemp(prefix="emap-chromium-"))
    proc = None
    try:
        src = tmpdir / "report.html"
        src.write_text(page, encoding="utf-8")
        if account is not None:
            for p in (tmpdir, src):
                os.chown(p, account.pw_uid, account.pw_gid)
        tmpdir.chmod(0o700)
        src.chmod(0o400)
        try:
            proc, to_w, from_r = _start(_command(settings, tmpdir, sandbox), account, tmpdir)
        except OSError as exc:
            raise ChromiumError(f"cannot start Chromium: {exc}") from None
        record.pid = proc.pid
        pipe = _Pipe(to_w, from_r, deadline, limit)
        try:
            return _render(pipe, src.as_uri(), kind, width, height, record, inspect=inspect)
        except ChromiumError as exc:
            if isinstance(exc, RenderTimeoutError):
                log.error("report render stopped at its time limit (%gs)", limit)
                raise
            tail = _stderr_tail(tmpdir)
            hint = ""
            if sandbox and "sandbox" in tail.lower():
                hint = " (Chromium's sandbox did not start here: EMAP_RENDER_NO_SANDBOX=1 turns it off)"
            raise ChromiumError(f"{exc}{hint}: {tail}") from None
        finally:
            for fd in (to_w, from_r):
                os.close(fd)
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(tmpdir, ignore_errors=True)


def _render(
    pipe: _Pipe, url: str, kind: str, width: int, height: int, record: RenderLog, inspect: bool = False
) -> bytes:
    s = _Session(pipe, url, record)
    target = s.call("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
    s.session = s.call("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)[
        "sessionId"
    ]
    s.call("Fetch.enable", {"patterns": [{"urlPattern": "*"}]})
    s.call("Page.enable")
    s.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    nav = s.call("Page.navigate", {"url": url})
    if nav.get("errorText"):
        raise ChromiumError(f"Chromium could not open the report: {nav['errorText']}")
    s.wait_load()
    s.call("Runtime.evaluate", {"expression": SETTLE, "awaitPromise": True})
    if inspect:
        record.processes = _processes(record.pid)
    if kind == "png":
        out = s.call("Page.captureScreenshot", {"format": "png", "fromSurface": True})
    else:
        out = s.call(
            "Page.printToPDF",
            {"printBackground": True, "preferCSSPageSize": True, "displayHeaderFooter": False},
        )
    blob = base64.b64decode(out["data"])
    if not blob:
        raise ChromiumError(f"Chromium produced an empty {kind}")
    # no wait for an answer: the process group is killed right after anyway
    pipe.send("Browser.close")
    return blob
