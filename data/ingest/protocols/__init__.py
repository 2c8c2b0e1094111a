"""Phone protocols (see :mod:`data.ingest.protocols.contract`).

Examples
--------
>>> sorted(PROTOCOLS), PROTOCOLS["osmand"].PATHS
(['osmand'], ('/osmand',))
>>> [r["lng"] for r in PROTOCOLS["osmand"].decode("GET", {"id": "d1", "lat": "22.5", "lon": "114.0"}, "", b"", "kn")]
['114.0']
"""

from __future__ import annotations

from data.ingest.protocols import osmand
from data.ingest.protocols.contract import PhoneProtocol, ProtocolError

#: Every protocol the server speaks, by name.
PROTOCOLS: dict[str, PhoneProtocol] = {osmand.NAME: osmand}

__all__ = ["PROTOCOLS", "PhoneProtocol", "ProtocolError"]
