# -*- test-case-name: tests.test_web_iclock -*-
"""
One decorator for every asynchronous handler.

A handler is an ``async def`` method taking the request and returning the
reply body as bytes.  The decorator runs it, writes the body with
``Content-Type`` and ``Content-Length``, maps :class:`~pushd.errors.PushdError`
to its status and one-line reason, logs anything unexpected and answers it
with a plain 500, and never lets a traceback reach the wire.
"""

from __future__ import annotations

import re
import time
from functools import wraps
from typing import Any, Awaitable, Callable, Tuple, TypeVar, Union

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.server import NOT_DONE_YET, Request, Site

from pushd.errors import PushdError
from pushd.logs import log_request

__all__ = ["TEXT_PLAIN", "QuietSite", "async_handler", "quiet", "redact", "write_reply"]

TEXT_PLAIN = b"text/plain"

#: Seconds a client told 503 should wait before trying again.
RETRY_AFTER = b"30"

_log = Logger(namespace="pushd.web")

R = TypeVar("R")
Handler = Callable[[R, Request], Awaitable[bytes]]


def quiet(request: Request) -> None:
    """Leave this request out of the access log, if it succeeds (routine polls)."""
    request.pushd_quiet = True  # type: ignore[attr-defined]


_SECRETS = re.compile(rb"(?i)(pushcommkey|token)=[^&]*")


def redact(uri: bytes) -> bytes:
    """``uri`` with the values of secret parameters (pushcommkey, token) hidden."""
    return _SECRETS.sub(rb"\1=<redacted>", uri)


class QuietSite(Site):
    """
    A Site whose access log leaves out successful routine polls.

    Every terminal polls every few seconds; logging each ``OK`` would drown
    the log and cost a third of the server's time.  Everything else is
    logged: handshakes, uploads, command replies, and every refusal.
    """

    #: The :class:`pushd.config.Limits` its requests enforce.
    limits: Any = None

    #: A :class:`pushd.metrics.Metrics`, when requests are counted.
    metrics: Any = None

    def log(self, request: http.Request) -> None:
        if self.metrics is not None:
            self.metrics.request(request.path, request.code)
        if getattr(request, "pushd_quiet", False) and request.code == 200:
            return
        started = getattr(request, "started", None)
        duration = time.monotonic() - started if started is not None else 0.0
        address = request.getClientAddress()
        log_request(
            sn=_sn_of(request),
            method=request.method.decode("ascii", "replace"),
            path=redact(request.uri).decode("utf-8", "replace"),
            status=request.code,
            duration=duration,
            ip=str(getattr(address, "host", "-")),
            size=request.sentLength,
        )


def write_reply(
    request: Request, status: int, body: bytes, content_type: bytes = TEXT_PLAIN
) -> None:
    """Finish ``request`` with ``body``, unless the client already went away."""
    if request.finished or getattr(request, "_disconnected", False):
        return
    request.setResponseCode(status)
    if status == 503:
        request.setHeader(b"retry-after", RETRY_AFTER)
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"content-length", b"%d" % len(body))
    request.write(body)
    request.finish()


def _sn_of(request: Any) -> str:
    for name, values in (request.args or {}).items():
        if name.lower() == b"sn" and values:
            return str(values[0].decode("utf-8", "replace"))
    return ""


def _describe(request: Request) -> str:
    sn = _sn_of(request)
    uri = redact(request.uri).decode("utf-8", "replace")
    return f"{request.method.decode('ascii', 'replace')} {uri} (SN {sn or '?'})"


def async_handler(
    handler: Callable[[Any, Request], Awaitable[Union[bytes, Tuple[int, bytes]]]],
) -> Callable[..., Any]:
    """
    Wrap ``async def render_X(self, request)`` into a twisted.web render
    method; the handler returns the body (status 200) or ``(status, body)``.
    """

    @wraps(handler)
    def render(self: Any, request: Request) -> object:
        content_type = getattr(self, "content_type", TEXT_PLAIN)
        d: Deferred[bytes] = Deferred.fromCoroutine(handler(self, request))  # type: ignore[arg-type]

        def succeeded(result: Any) -> None:
            status, body = result if isinstance(result, tuple) else (200, result)
            write_reply(request, status, body, content_type)

        def failed(failure: Failure) -> None:
            if failure.check(CancelledError):
                return
            error = failure.value
            if isinstance(error, PushdError):
                level = _log.info if error.status == 401 else _log.warn
                level(
                    "{request}: {status} {reason}",
                    request=_describe(request),
                    status=error.status,
                    reason=error.reason,
                )
                write_reply(request, error.status, error.reason.encode("utf-8"), content_type)
                return
            _log.failure("Unexpected error serving {request}", failure, request=_describe(request))
            write_reply(request, 500, b"Internal server error", content_type)

        d.addCallbacks(succeeded, failed)
        request.notifyFinish().addErrback(lambda _: d.cancel())
        return NOT_DONE_YET

    return render
