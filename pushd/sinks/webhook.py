# -*- test-case-name: tests.test_sinks -*-
"""
The webhook sink (CONTRACT 4): one signed HTTP POST per batch.

The body is ``{"events": [...]}``, compact UTF-8 JSON, sent with
``Content-Type: application/json``, ``X-Pushd-Event-Ids`` (the event ids,
comma separated) and ``X-Pushd-Signature: sha256=<hex>``, the HMAC-SHA256
of the exact body bytes keyed with ``--sink-secret``.

A 2xx reply acknowledges the batch.  A 4xx refuses it for good
(:class:`~pushd.interfaces.SinkRejected`: dead letters), except 408, 425
and 429, which say "later".  Anything else (another status, a connection
error, no complete reply within the timeout) fails the delivery with a
plain exception and the dispatcher tries again.  Redirects are not
followed: a 3xx is retried like a 5xx, so fix the URL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Dict, List, Mapping, NoReturn, Optional, Sequence, Tuple
from urllib.parse import unquote, urlsplit, urlunsplit

import treq
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.plugin import IPlugin
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.http import RESPONSES
from zope.interface import implementer

from pushd import __version__
from pushd.interfaces import IEventSink, IEventSinkFactory, SinkRejected
from pushd.sinks import sink_name

__all__ = [
    "DEFAULT_TIMEOUT",
    "WebhookFailed",
    "WebhookSink",
    "WebhookSinkFactory",
    "encode_batch",
    "sign",
]

#: Seconds a receiver has to answer a batch completely.
DEFAULT_TIMEOUT = 30.0

#: 4xx statuses that mean "try again later", not "never".
_RETRYABLE = frozenset({408, 425, 429})

_USER_AGENT = f"pushd/{__version__}".encode("ascii")

#: How much of a refusal's body goes into the reason.
_SNIPPET = 200


class WebhookFailed(Exception):
    """A batch was not acknowledged and may be sent again (5xx, 3xx, 408, 429...)."""


def encode_batch(events: Sequence[Mapping[str, Any]]) -> bytes:
    """
    The body of one POST: ``{"events": [...]}``, compact UTF-8 JSON.

    :raises ValueError: an event cannot be JSON (NaN, a lone surrogate).
    :raises TypeError: an event holds a value JSON has no type for.
    """
    text = json.dumps(
        {"events": list(events)}, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    )
    return text.encode("utf-8")


def sign(secret: bytes, body: bytes) -> str:
    """:returns: the ``X-Pushd-Signature`` value of ``body``: ``sha256=<hex HMAC>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _no_secret(url: str) -> ValueError:
    return ValueError(
        f"the webhook sink {sink_name(url)} needs a secret to sign its requests: "
        "give --sink-secret or set PUSHD_SINK_SECRET"
    )


def _split_credentials(url: str) -> Tuple[str, Optional[Tuple[str, str]]]:
    """
    Check a webhook URL and take its user information out.

    :returns: ``(url without user information, (user, password) or None)``.
    :raises ValueError: not an ``http``/``https`` URL with a host.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as e:
        raise ValueError(f"invalid webhook URL {sink_name(url)}: {e}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid webhook URL {sink_name(url)}: use http(s)://host/path")
    if parts.username is None:
        return url, None
    hostport = parts.netloc.rpartition("@")[2]
    bare = urlunsplit(parts._replace(netloc=hostport))
    return bare, (unquote(parts.username), unquote(parts.password or ""))


def _one_line(text: str, limit: int = _SNIPPET) -> str:
    """``text`` on one line, its whitespace collapsed, at most ``limit`` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _describe(error: BaseException) -> str:
    """One line for an HTTP client error: the underlying causes of Twisted's wrappers."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        causes = "; ".join(_describe(f.value) for f in reasons)
        return f"{type(error).__name__}: {causes}"
    return _one_line(f"{type(error).__name__}: {error}".rstrip(": "))


async def _read_start(response: Any) -> bytes:
    """Read a whole response body, keeping only its first bytes."""
    kept = bytearray()

    def keep(data: bytes) -> None:
        if len(kept) < _SNIPPET:
            kept.extend(data[: _SNIPPET - len(kept)])

    await treq.collect(response, keep)
    return bytes(kept)


@implementer(IEventSink)
class WebhookSink:
    """
    POST batches of events to one URL, signed with the sink secret.

    :param url: ``http(s)://[user:password@]host[:port]/path``; user
        information becomes HTTP basic authentication.
    :param secret: the HMAC key (``--sink-secret``); must not be empty.
    :param client: a ``treq`` :class:`~treq.client.HTTPClient` (or
        :class:`treq.testing.StubTreq`).
    :param reactor: the ``IReactorTime`` timing out slow receivers.
    :param timeout: seconds for the whole exchange, reply body included.
    :param pool: the client's connection pool, closed by :meth:`close`.
    :raises ValueError: no secret, or an unusable URL.
    """

    def __init__(
        self,
        url: str,
        secret: str,
        client: Any,
        reactor: Any,
        timeout: float = DEFAULT_TIMEOUT,
        pool: Optional[HTTPConnectionPool] = None,
    ) -> None:
        if not secret:
            raise _no_secret(url)
        self.name = sink_name(url)
        self._url, self._auth = _split_credentials(url)
        self._key = secret.encode("utf-8")
        self._client = client
        self._reactor = reactor
        self._timeout = timeout
        self._pool = pool

    def __repr__(self) -> str:
        return f"<WebhookSink {self.name}>"

    def deliver(self, events: Sequence[Mapping[str, Any]]) -> Deferred[None]:
        """
        POST the batch once.

        :returns: Deferred firing with ``None`` on a 2xx; failing with
            :class:`SinkRejected` on a 4xx but 408, 425 and 429, with
            :class:`WebhookFailed` on any other status or client error,
            with :class:`TimeoutError` when no complete reply came in time.
        """
        if not events:
            return succeed(None)
        try:
            body = encode_batch(events)
        except (TypeError, ValueError) as e:
            return Deferred.fromCoroutine(self._refuse(f"{self.name}: events are not JSON: {e}"))

        def timed_out(result: object, timeout: float) -> NoReturn:
            raise TimeoutError(f"{self.name}: no complete reply within {timeout:g} s")

        ids = ",".join(str(event.get("id", "")) for event in events)
        d = Deferred.fromCoroutine(self._post(body, ids))
        return d.addTimeout(self._timeout, self._reactor, onTimeoutCancel=timed_out)

    async def _refuse(self, reason: str) -> None:
        raise SinkRejected(_one_line(reason))

    async def _post(self, body: bytes, ids: str) -> None:
        headers: Dict[bytes, List[bytes]] = {  # bytes: Twisted's own type
            b"Content-Type": [b"application/json"],
            b"User-Agent": [_USER_AGENT],
            b"X-Pushd-Event-Ids": [ids.encode("utf-8")],
            b"X-Pushd-Signature": [sign(self._key, body).encode("ascii")],
        }
        options: Dict[str, Any] = {"headers": headers, "allow_redirects": False}
        if self._auth is not None:
            options["auth"] = self._auth
        try:
            response = await self._client.post(self._url, data=body, **options)
        except CancelledError:
            raise
        except Exception as e:
            raise WebhookFailed(f"{self.name}: {_describe(e)}") from e
        code: int = response.code
        try:
            start = await _read_start(response)
        except CancelledError:
            raise
        except Exception:
            start = b""  # the status is what counts
        if 200 <= code < 300:
            return
        phrase = RESPONSES.get(code, b"").decode("ascii", "replace")
        reason = f"{self.name} answered HTTP {code} {phrase}".rstrip()
        detail = _one_line(start.decode("utf-8", "replace"))
        if detail:
            reason = f"{reason}: {detail}"
        if 400 <= code < 500 and code not in _RETRYABLE:
            raise SinkRejected(reason)
        raise WebhookFailed(reason)

    def close(self) -> Deferred[None]:
        """Close idle persistent connections (if the sink owns the pool)."""
        if self._pool is None:
            return succeed(None)
        closed: Deferred[None] = self._pool.closeCachedConnections()
        return closed


@implementer(IPlugin, IEventSinkFactory)
class WebhookSinkFactory:
    """Webhooks: ``https://...`` and ``http://...``."""

    name = "webhook"
    description = "signed HTTP POSTs of event batches (https://..., http://...)"
    schemes = ("http", "https")

    def build(self, url: str, secret: str, reactor: Any) -> IEventSink:
        """
        A sink with its own persistent connection pool and the default timeout;
        ``https`` certificates are verified against the system's CAs.

        :raises ValueError: no secret, or an unusable URL.
        """
        if not secret:
            raise _no_secret(url)
        _split_credentials(url)
        pool = HTTPConnectionPool(reactor, persistent=True)
        client = HTTPClient(Agent(reactor, pool=pool, connectTimeout=DEFAULT_TIMEOUT))
        return WebhookSink(url, secret, client, reactor, DEFAULT_TIMEOUT, pool=pool)
