# -*- test-case-name: tests.test_limits -*-
"""
Limits enforced before anything is buffered: the size of a request body
(declared or, for chunked bodies, counted as it arrives) and the number of
connections one address may hold.  Over a limit the client gets a status
and a one-line reason (413, 429), and the excess is never kept in memory.
"""

from __future__ import annotations

import io
import time
from typing import Any, Dict, Optional

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.web.server import Request

from pushd.config import Limits

__all__ = ["LimitedRequest", "PeerLimit"]

_log = Logger(namespace="pushd.web")


class _Discard(io.BytesIO):
    """Where the body of a refused request goes: nowhere."""

    def write(self, data: Any) -> int:
        return len(data)


class LimitedRequest(Request):
    """A request that refuses bodies over ``site.limits.max_body`` without buffering them."""

    too_large = False
    _received = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: When the request began, for the duration in the log.
        self.started = time.monotonic()
        # Bodies are the protocol's own (tab-separated records, packs), read raw:
        # Twisted must not decode them as forms, whatever the Content-Type says
        # (a form body would otherwise override SN= and table= of the query).
        self._parsePOSTFormSubmission = False

    def _max_body(self) -> int:
        limits: Optional[Limits] = getattr(getattr(self.channel, "site", None), "limits", None)
        return limits.max_body if limits is not None else Limits().max_body

    def gotLength(self, length: Optional[int]) -> None:
        if length is not None and length > self._max_body():
            self.too_large = True
            self.content = _Discard()
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.too_large:
            return
        self._received += len(data)
        if self._received > self._max_body():
            self.too_large = True
            self.content = _Discard()  # the temporary file is dropped with what it held
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        if not self.too_large:
            super().process()
            return
        reason = b"request body over %d bytes" % self._max_body()
        _log.warn(
            "{method} {path}: 413 {reason}",
            method=self.method.decode("ascii", "replace"),
            path=self.path.decode("utf-8", "replace"),
            reason=reason.decode(),
        )
        self.setResponseCode(413)
        self.setHeader(b"content-type", b"text/plain")
        self.setHeader(b"content-length", b"%d" % len(reason))
        self.setHeader(b"connection", b"close")
        self.write(reason)
        self.finish()


class _TooMany(Protocol):
    """Answers 429 at once and hangs up: the address already holds too many connections."""

    REASON = b"too many connections from your address"
    REPLY = (
        b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(REASON), REASON)
    )

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.REPLY)
        self.transport.loseConnection()


class PeerLimit(WrappingFactory):
    """Caps the open connections of each peer address; the next one gets 429."""

    def __init__(self, wrapped: Any, per_peer: int) -> None:
        super().__init__(wrapped)
        self.per_peer = per_peer
        self.peers: Dict[str, int] = {}

    @staticmethod
    def _peer(addr: Optional[IAddress]) -> str:
        return str(getattr(addr, "host", addr))

    def buildProtocol(self, addr: Optional[IAddress]) -> Any:
        peer = self._peer(addr)
        if self.peers.get(peer, 0) >= self.per_peer:
            _log.warn("{peer}: 429 over {n} connections", peer=peer, n=self.per_peer)
            refusal = _TooMany()
            refusal.factory = self
            return refusal
        self.peers[peer] = self.peers.get(peer, 0) + 1
        return super().buildProtocol(addr)

    def unregisterProtocol(self, p: Any) -> None:
        peer = self._peer(p.transport.getPeer())
        remaining = self.peers.get(peer, 0) - 1
        if remaining > 0:
            self.peers[peer] = remaining
        else:
            self.peers.pop(peer, None)
        super().unregisterProtocol(p)
