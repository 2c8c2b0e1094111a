"""Headless Chromium for static exports (screenshots and PDF printing).

One fresh profile per call (``--user-data-dir`` in a temporary folder) and no
background traffic, so a run neither depends on nor leaves any browser state.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

#: The Chromium binary (the Debian package); ``EMAP_CHROMIUM`` overrides it.
DEFAULT_CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
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
#: The same flags for a browser driven by Playwright (which adds its own --headless).
PLAYWRIGHT_ARGS = [f for f in FLAGS if f != "--headless"]
#: Seconds a Chromium call may take before it is stopped.
TIMEOUT = 120


class ChromiumError(RuntimeError):
    """Chromium is missing or did not produce its output."""


def binary() -> str:
    path = os.environ.get("EMAP_CHROMIUM") or DEFAULT_CHROMIUM
    if not (Path(path).is_file() or shutil.which(path)):
        raise ChromiumError(
            f"Chromium not found at {path} (install the 'chromium' package or set EMAP_CHROMIUM)"
        )
    return path


def run(page: str, out_name: str, args: list[str], budget_ms: int = 5000) -> bytes:
    """Open ``page`` (HTML text) in headless Chromium with ``args`` that write
    ``{out}`` (replaced by the output path) and return the output file's bytes."""
    with tempfile.TemporaryDirectory(prefix="emap-chromium-") as tmp:
        tmpdir = Path(tmp)
        src = tmpdir / "page.html"
        src.write_text(page, encoding="utf-8")
        out = tmpdir / out_name
        cmd = [
            binary(),
            *FLAGS,
            f"--user-data-dir={tmpdir / 'profile'}",
            f"--virtual-time-budget={budget_ms}",
            *[a.replace("{out}", str(out)) for a in args],
            src.as_uri(),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise ChromiumError(f"Chromium took more than {TIMEOUT}s") from None
        if not out.is_file() or out.stat().st_size == 0:
            tail = proc.stderr.decode("utf-8", "replace")[-800:]
            raise ChromiumError(f"Chromium wrote no {out_name} (exit {proc.returncode}): {tail}")
        return out.read_bytes()
