"""Generated demo stores made once per test run, however many xdist workers need them.

A session fixture runs once per worker: with two workers each generated the same demo.
:func:`built_once` builds the file once in a folder the workers share (the first worker
to ask builds it, under a lock; the others wait for it) and gives each worker its own
copy, so nothing one worker writes is seen by another, as before.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path


def built_once(key: str, base: Path, dest: Path, build: Callable[[Path], None]) -> Path:
    """``dest`` after ``build(path)`` made the file: at ``dest`` itself in a run without
    workers; else built once as ``key`` under the run's shared base temporary folder (the
    parent of ``base``, a worker's own base temporary folder) and copied to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        build(dest)
        return dest
    shared = base.parent / f"built-once-{key}" / dest.name
    shared.parent.mkdir(exist_ok=True)
    done = shared.with_name(shared.name + ".done")
    with open(shared.with_name(shared.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            build(shared)
            done.touch()
    shutil.copy(shared, dest)
    return dest
