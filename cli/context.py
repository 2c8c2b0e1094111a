"""What a command runs with when the serving process runs it for another process.

A subcommand reaches its store, its operator name, its secrets from the environment
and its output through the functions here. Run from a terminal, they are the obvious
ones (a store opened from the settings, the OS user, ``os.environ``, stdout). Run
through the owner channel (:mod:`cli.owner`), the serving process sets them for the
command's thread: the store it owns, the OS user of the process that asked, the values
that process sent, and a stream back to it. The command itself does not know the
difference, so every subcommand behaves the same with a server running or not.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import sys
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Remote:
    """A command being run for another process."""

    store: object  #: the serving process's store
    os_user: str  #: the OS user of the asking process (from the socket's peer credentials)
    env: dict = field(default_factory=dict)  #: secrets the asking process sent (passwords)
    out: object = None  #: where the command's stdout goes (a text stream)
    err: object = None  #: where its stderr goes


_REMOTE: ContextVar[Remote | None] = ContextVar("emap_remote_command", default=None)


def remote() -> Remote | None:
    """The command being run for another process, or None in a terminal."""
    return _REMOTE.get()


@contextlib.contextmanager
def running_for(command: Remote):
    token = _REMOTE.set(command)
    try:
        yield command
    finally:
        _REMOTE.reset(token)


def os_user() -> str:
    """The OS user a command acts for (audited as ``cli:<os user>``)."""
    command = remote()
    if command is not None:
        return command.os_user
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return "unknown"


def operator_label() -> str:
    """``cli:<os user>``: who a command's changes are audited as."""
    return f"cli:{os_user()}"


def env(name: str) -> str | None:
    """A value from the environment of the process that asked for the command."""
    command = remote()
    if command is not None:
        return command.env.get(name)
    return os.environ.get(name)


class _Routed:
    """sys.stdout / sys.stderr of the serving process: a command run for another process
    writes to that process; every other thread writes where it always did."""

    def __init__(self, original, pick):
        self._original = original
        self._pick = pick

    def _target(self):
        command = remote()
        target = None if command is None else self._pick(command)
        return target if target is not None else self._original

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return False if remote() is not None else self._original.isatty()

    def __getattr__(self, name):
        return getattr(self._original, name)


def route_output() -> None:
    """Send the output of commands run for other processes back to them (once per process)."""
    if not isinstance(sys.stdout, _Routed):
        sys.stdout = _Routed(sys.stdout, lambda c: c.out)
    if not isinstance(sys.stderr, _Routed):
        sys.stderr = _Routed(sys.stderr, lambda c: c.err)
