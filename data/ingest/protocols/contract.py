"""What a phone protocol is: the one interface the phone endpoint and listener use.

A protocol is a module of this package that defines:

``NAME``
    The source name of its records (the quarantine's ``source``, the audit log).
``PATHS``
    The paths it is served on beside the API on the main port (``/osmand``); its own
    phone listener port answers it on every path, as phone apps are configured with a
    bare server address.
``decode(method, args, mimetype, body, speed_unit)``
    The raw ping records of one request (field names of
    :data:`data.ingest.validate.PING_COLUMNS`, values as received; every value check is
    the validator's), or :class:`ProtocolError` with a message for the phone.

A second protocol is one new module beside ``osmand.py`` and one entry in
:data:`data.ingest.protocols.PROTOCOLS`; the endpoint, tokens, the writer and the
answers are shared.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class ProtocolError(ValueError):
    """The request is not a position in this protocol; the message says why (answer 400)."""


class PhoneProtocol(Protocol):
    NAME: str
    PATHS: tuple[str, ...]

    def decode(
        self, method: str, args: Mapping[str, str], mimetype: str, body: bytes, speed_unit: str
    ) -> list[dict]: ...
