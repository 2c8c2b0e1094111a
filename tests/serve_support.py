"""``python app.py serve`` as a real process on a copy of a store, for the tests that need
the whole server (its web workers, its live demo day) rather than the app in a thread."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from config import PROJECT_ROOT
from tests.auth_support import PASSWORD
from tests.ingest_support import free_port


@dataclass(frozen=True)
class Served:
    """A running ``app.py serve``: its base URL, process and log (stdout and stderr)."""

    url: str
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()


@contextmanager
def serve_process(
    store_path: Path,
    folder: Path,
    ready: str,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    drop_env: tuple[str, ...] = (),
    patience: float = 180,
    graceful: bool = True,
) -> Iterator[Served]:
    """Serve a copy of ``store_path`` in ``folder`` (its data folder) on a free loopback
    port, with the demo accounts' password, no phone listener and text logs; ``args`` and
    ``env`` are added, ``drop_env`` removed from the environment. Yields once ``ready``
    appears in the log (within ``patience`` seconds, else the test fails with the log's
    end); the server is stopped after: asked to (SIGTERM), or with ``graceful=False``
    killed, for tests that check nothing of its stop and would only wait for it."""
    shutil.copy(store_path, folder / "emap.duckdb")
    port = free_port()
    full_env = {
        **os.environ,
        "EMAP_DATA_DIR": str(folder),
        "EMAP_DEMO_PASSWORD": PASSWORD,
        "EMAP_OSMAND_PORT": "0",
        "EMAP_LOG_FORMAT": "text",
        **(env or {}),
    }
    for name in ("EMAP_LAKE_DIR", *drop_env):
        full_env.pop(name, None)
    log_path = folder / "serve.log"
    argv = ["app.py", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    with open(log_path, "w+b") as log:
        proc = subprocess.Popen(
            [sys.executable, *argv], cwd=PROJECT_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + patience
            while ready not in log_path.read_text():
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, f"no {ready!r} in the log: {log_path.read_text()[-3000:]}"
                time.sleep(0.3)
            yield Served(f"http://127.0.0.1:{port}", proc, log_path)
        finally:
            if proc.poll() is None:
                if graceful:
                    proc.terminate()
                else:
                    proc.kill()
            proc.wait(60)
