"""
Encryption of device traffic, in two layers.

The bottom layer is pure functions with known-answer tests: RC4-drop3072
(:mod:`pushd.crypto.rc4`), CRC32 (:mod:`pushd.crypto.crc`), the ZKX1 key
derivation and envelope (:mod:`pushd.crypto.zkx1`), the session state machine
(:mod:`pushd.crypto.exchange`), RSA key handling (:mod:`pushd.crypto.keys`)
and recognising a vendor key blob (:mod:`pushd.crypto.vendor`).

The top layer is :class:`pushd.interfaces.ICryptoTransport`, implemented by
:class:`~pushd.crypto.transports.PlainTransport` and
:class:`~pushd.crypto.transports.ZKX1Transport` and found by name through
Twisted's plugin system (:mod:`pushd.crypto.registry`).  A transport keeps no
per-device state: every call takes and returns an opaque state blob, which
the caller stores.

Nothing here imports a reactor or touches a request.  The wire format is
documented in ``docs/crypto.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from pushd.crypto.errors import (
    BadCrc,
    BadDeviceKey,
    BadEnvelope,
    BadTag,
    CryptoError,
    ExchangeFailed,
    ExchangeNotSupported,
    ExchangeOutOfOrder,
    KeyMismatch,
    KeyStoreError,
    NoSession,
    Replay,
    StateError,
)

__all__ = [
    "BadCrc",
    "BadDeviceKey",
    "BadEnvelope",
    "BadTag",
    "CryptoError",
    "ExchangeFailed",
    "ExchangeNotSupported",
    "ExchangeOutOfOrder",
    "KeyMismatch",
    "KeyStoreError",
    "NoSession",
    "Replay",
    "StateError",
    "Unwrapped",
]


@dataclass(frozen=True)
class Unwrapped:
    """
    The result of :meth:`pushd.interfaces.ICryptoTransport.unwrap`.

    Exactly one of ``plaintext`` and ``cached_reply`` is set:

    * ``plaintext``: a new message; process it, then call
      :meth:`~pushd.interfaces.ICryptoTransport.remember` with ``seq``,
      ``tag`` and the reply;
    * ``cached_reply``: an exact replay of a message already answered; send
      this reply again and process nothing.

    ``state`` is the state blob after the call (store it).
    """

    state: bytes
    seq: int
    tag: bytes
    plaintext: Optional[bytes] = None
    cached_reply: Optional[bytes] = None

    def __post_init__(self) -> None:
        if (self.plaintext is None) == (self.cached_reply is None):
            raise ValueError("exactly one of plaintext and cached_reply must be set")
