"""The phone process: the phone listener on a socket its serving process bound, relaying
every request to it (:mod:`data.ingest.phone_relay`).

Started by :class:`data.ingest.phone_relay.PhoneRelay` as ``python -m cli.phone_worker
<config> <listening socket fd> <channel fd>``; it ends when the channel closes (the
serving process stopped or died).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import sys
import threading

from cli import logs
from config import Settings
from data.ingest.phone_listener import PhoneListener
from data.ingest.phone_relay import FrameReader, RelayedEndpoint

log = logging.getLogger("data.ingest.phone_relay")  # the child end of the relay


class _Channel(asyncio.Protocol):
    """The serving process's end, on the listener's event loop."""

    def __init__(self, endpoint: RelayedEndpoint, ended: threading.Event):
        self.endpoint, self.ended = endpoint, ended
        self.reader = FrameReader()

    def connection_made(self, transport) -> None:
        self.endpoint.attach(transport)

    def data_received(self, data: bytes) -> None:
        try:
            docs = self.reader.feed(data)
        except ValueError:
            log.exception("phone process: unreadable frame from the serving process")
            self.ended.set()
            return
        for doc in docs:
            self.endpoint.answered(doc)

    def connection_lost(self, exc) -> None:
        self.endpoint.lost()
        self.ended.set()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print(
            "usage: python -m cli.phone_worker <config> <listening socket fd> <channel fd>", file=sys.stderr
        )
        return 2
    config = json.loads(argv[0])
    logs.configure(Settings.from_env())
    # Ctrl-C and SIGTERM are for the serving process, which closes the channel
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listening = socket.socket(fileno=int(argv[1]))
    channel = socket.socket(fileno=int(argv[2]))
    endpoint = RelayedEndpoint(config["endpoint"])
    listener = PhoneListener(endpoint, sock=listening, **config["listener"]).start()
    ended = threading.Event()

    async def connect() -> None:
        await listener.loop.create_unix_connection(lambda: _Channel(endpoint, ended), sock=channel)

    asyncio.run_coroutine_threadsafe(connect(), listener.loop).result(30)
    log.info("phone process serving port %s", listening.getsockname()[1])
    ended.wait()
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
