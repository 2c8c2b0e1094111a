"""Logging of the serving commands (``serve``, ``ingest``): the log's levels and format,
and an access log of the HTTP requests they answer.

The log goes to stderr, one record a line: text (``2026-01-05T08:15:30.123Z INFO
emap.access: ...``) or, with ``EMAP_LOG_FORMAT=json``, one JSON object a line. stdout
keeps a command's own output. See docs/operations.md.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from time import perf_counter
from urllib.parse import unquote_plus

import orjson

from config import Settings

#: Formats of ``EMAP_LOG_FORMAT``.
FORMATS = ("text", "json")
_LEVELS = ("debug", "info", "warning", "error", "critical")

#: Logger of the access log (one record per HTTP request).
access = logging.getLogger("emap.access")

#: Query parameters whose values never reach the log: names holding one of these words
#: (``token``, ``access_token``, ``password``, ``client_secret``, ``api_key``...).
SECRET_WORDS = ("token", "password", "passwd", "secret", "api_key", "apikey")
REDACTED = "***"
_WORDS = "|".join(SECRET_WORDS)
_SECRET_NAME = re.compile(f"(?i){_WORDS}")
_SECRET_PARAM = re.compile(f"(?i)((?:^|&)[^&=]*(?:{_WORDS})[^&=]*=)[^&]*")
_REDACT_TO = rf"\g<1>{REDACTED}"

# Attributes every LogRecord has; any other attribute came from ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def _iso_utc(created: float, msecs: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """``<ISO-8601 UTC time> <LEVEL> <logger>: <message>``, a traceback on the lines after.

    Examples
    --------
    >>> r = logging.LogRecord("emap.serve", logging.INFO, "", 0, "up on %s", ("8050",), None)
    >>> r.created, r.msecs = 0.0, 5.0
    >>> TextFormatter().format(r)
    '1970-01-01T00:00:00.005Z INFO emap.serve: up on 8050'
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record, datefmt=None) -> str:  # noqa: N802 (logging's name)
        return _iso_utc(record.created, record.msecs)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (ISO-8601 UTC), ``level``, ``logger``,
    ``message``, the record's ``extra=`` fields, and ``exc_info`` / ``stack_info`` (text)
    when it has them.

    Examples
    --------
    >>> r = logging.LogRecord("emap.access", logging.INFO, "", 0, "GET /", (), None)
    >>> r.created, r.msecs, r.status = 0.0, 0.0, 200
    >>> JsonFormatter().format(r)
    '{"ts":"1970-01-01T00:00:00.000Z","level":"INFO","logger":"emap.access","message":"GET /","status":200}'
    """

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": _iso_utc(record.created, record.msecs),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc_info"] = record.exc_text
        if record.stack_info:
            out["stack_info"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(out, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # a str orjson refuses (lone surrogates): escaped by json instead
            return json.dumps(out, default=str, ensure_ascii=True)


def parse_level(spec: str) -> tuple[int, dict[str, int]]:
    """The root level and the levels by logger of ``EMAP_LOG_LEVEL``: ``LEVEL`` or
    ``LEVEL,logger=LEVEL,...``. ``ValueError`` names the setting.

    Examples
    --------
    >>> parse_level("info,emap.access=debug")
    (20, {'emap.access': 10})
    >>> parse_level("loud")
    Traceback (most recent call last):
    ...
    ValueError: EMAP_LOG_LEVEL='loud': 'loud' is not a level (debug, info, warning, error or critical)
    """
    root, by_logger = logging.INFO, {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, level = part.rpartition("=")
        if level.strip().lower() not in _LEVELS:
            raise ValueError(
                f"EMAP_LOG_LEVEL={spec!r}: {level.strip()!r} is not a level "
                "(debug, info, warning, error or critical)"
            )
        value = getattr(logging, level.strip().upper())
        if name.strip():
            by_logger[name.strip()] = value
        else:
            root = value
    return root, by_logger


def configure(settings: Settings, stream=None) -> None:
    """Send every logger's records to ``stream`` (stderr) in ``settings.log_format``, at
    ``settings.log_level``; warnings and uncaught exceptions become records too, so that
    a JSON log stays JSON. ``ValueError`` (naming the setting) for a value it cannot use.
    """
    fmt = settings.log_format.strip().lower()
    if fmt not in FORMATS:
        raise ValueError(f"EMAP_LOG_FORMAT={settings.log_format!r} is not a log format: use text or json")
    root, by_logger = parse_level(settings.log_level)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=root, handlers=[handler], force=True)
    for name, level in by_logger.items():
        logging.getLogger(name).setLevel(level)
    logging.captureWarnings(True)
    uncaught = logging.getLogger("emap.uncaught")

    def thread_hook(args) -> None:
        if args.exc_type is not SystemExit:
            uncaught.error(
                "uncaught exception in thread %s",
                args.thread.name if args.thread else "?",
                exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
            )

    def main_hook(kind, value, tb) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
        else:
            uncaught.critical("uncaught exception", exc_info=(kind, value, tb))

    threading.excepthook = thread_hook
    sys.excepthook = main_hook


def redact_query(query: str) -> str:
    """``query`` with the values of secret-looking parameters replaced by ``***``.

    Examples
    --------
    >>> redact_query("id=dev-1&token=abc&lat=22.5")
    'id=dev-1&token=***&lat=22.5'
    >>> redact_query("Password=x&client_secret=y&%74oken=z&x=1")
    'Password=***&client_secret=***&%74oken=***&x=1'
    """
    if "%" not in query and "+" not in query:
        return _SECRET_PARAM.sub(_REDACT_TO, query)
    # a name may be percent-encoded (``%74oken`` reads as ``token``): decode each one
    parts = query.split("&")
    for i, part in enumerate(parts):
        name, eq, _ = part.partition("=")
        if eq and _SECRET_NAME.search(unquote_plus(name)):
            parts[i] = f"{name}={REDACTED}"
    return "&".join(parts)


def _printable(text: str) -> str:
    # a path or query with control characters (%0A decoded in a path) must not start a
    # line of its own in a text log
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class AccessLog:
    """WSGI middleware: one ``emap.access`` record per request once it is answered, at
    INFO (``quiet_paths``: at DEBUG). Never logs headers (``Authorization``, ``Cookie``)
    nor bodies; secret-looking query parameters are redacted (:func:`redact_query`).

    Record fields (``extra``): ``client``, ``method``, ``path``, ``query``, ``protocol``,
    ``status``, ``bytes`` (of the response body) and ``duration_ms``.

    Parameters
    ----------
    app
        The WSGI app served.
    trusted : tuple
        Networks of the trusted reverse proxies (``EMAP_TRUSTED_PROXIES``): the client of a
        request from one of them is read from ``X-Forwarded-For``, as sign-ins read it.
    quiet_paths : iterable of str
        Paths logged at DEBUG (phone fixes, thousands a second, each one already a row in
        the store or in the quarantine). When DEBUG is off they cost one lookup.
    """

    def __init__(self, app, trusted: tuple = (), quiet_paths=()):
        self.app = app
        self.trusted = tuple(trusted)
        self.quiet = frozenset(quiet_paths)

    def __call__(self, environ, start_response):
        level = logging.DEBUG if environ.get("PATH_INFO") in self.quiet else logging.INFO
        if not access.isEnabledFor(level):
            return self.app(environ, start_response)
        request = _Request(self, environ, level)

        def start(status, headers, exc_info=None):
            request.status = status
            request.headers = headers
            return start_response(status, headers, exc_info)

        try:
            body = self.app(environ, start)
        except Exception:
            request.status = "500"  # waitress answers 500 and logs the exception
            request.done(0)
            raise
        if isinstance(body, list):  # built already: nothing left to time
            request.done(sum(map(len, body)))
            return body
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None and isinstance(wrapper, type) and isinstance(body, wrapper):
            # a file sent by the server itself: keep its fast path, take the length from
            # the headers
            request.done(_content_length(request.headers))
            return body
        return _Body(body, request)

    def client(self, environ) -> str:
        remote = environ.get("REMOTE_ADDR") or "-"
        forwarded = environ.get("HTTP_X_FORWARDED_FOR")
        if not self.trusted or not forwarded:
            return remote
        from auth.web import client_address

        return client_address(remote, forwarded, self.trusted)


def _content_length(headers) -> int | None:
    for name, value in headers or ():
        if name.lower() == "content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class _Request:
    __slots__ = ("log", "environ", "level", "started", "status", "headers")

    def __init__(self, log: AccessLog, environ, level: int):
        self.log, self.environ, self.level = log, environ, level
        self.started = perf_counter()
        self.status, self.headers = "-", None

    def done(self, nbytes: int | None, aborted: bool = False) -> None:
        ms = round((perf_counter() - self.started) * 1000, 1)
        env = self.environ
        try:
            status = int(self.status[:3])
        except ValueError:
            status = 0
        method = env.get("REQUEST_METHOD", "-")
        path = _printable(env.get("SCRIPT_NAME", "") + env.get("PATH_INFO", ""))
        query = env.get("QUERY_STRING", "")
        if query:
            query = _printable(redact_query(query))
        protocol = env.get("SERVER_PROTOCOL", "-")
        client = self.log.client(env)
        target = f"{path}?{query}" if query else path
        access.log(
            self.level,
            '%s "%s %s %s" %s %s %.1fms%s',
            client,
            method,
            target,
            protocol,
            status or "-",
            "-" if nbytes is None else nbytes,
            ms,
            " (aborted)" if aborted else "",
            extra={
                "client": client,
                "method": method,
                "path": path,
                "query": query,
                "protocol": protocol,
                "status": status or None,
                "bytes": nbytes,
                "duration_ms": ms,
                **({"aborted": True} if aborted else {}),
            },
        )


class _Body:
    """A response body passed through, its bytes counted; logged when the server closes it."""

    def __init__(self, inner, request: _Request):
        self.inner, self.request, self.nbytes, self.aborted = inner, request, 0, False

    def __iter__(self):
        try:
            for chunk in self.inner:
                self.nbytes += len(chunk)
                yield chunk
        except Exception:
            self.aborted = True
            raise

    def close(self) -> None:
        try:
            close = getattr(self.inner, "close", None)
            if close is not None:
                close()
        finally:
            self.request.done(self.nbytes, self.aborted)


def quiet_request_handler():
    """werkzeug's request handler without its own request lines: they hold the query
    string as sent, tokens included; :class:`AccessLog` logs requests instead."""
    from werkzeug.serving import WSGIRequestHandler

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, code="-", size="-") -> None:
            pass

    return QuietHandler


def trusted_networks(settings: Settings) -> tuple:
    """The networks of ``EMAP_TRUSTED_PROXIES`` (``ValueError`` naming a bad entry)."""
    from auth.web import _networks  # the parser sign-ins use, so both agree on the client

    return _networks(settings.trusted_proxies)
