"""Phone protocols (see :mod:`data.ingest.protocols.contract`)."""

from __future__ import annotations

from data.ingest.protocols import osmand
from data.ingest.protocols.contract import PhoneProtocol, ProtocolError

#: Every protocol the server speaks, by name.
PROTOCOLS: dict[str, PhoneProtocol] = {osmand.NAME: osmand}

__all__ = ["PROTOCOLS", "PhoneProtocol", "ProtocolError"]
