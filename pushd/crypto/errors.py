# -*- test-case-name: tests.test_crypto_envelope -*-
"""
The errors of the crypto layer: each maps to an HTTP status and a one-line,
device-visible body (``str(error)``), as :class:`pushd.errors.PushdError` does.

Two attributes travel with every :class:`CryptoError` and are never sent to
the device:

* ``state``: the per-device state blob to store although the call failed
  (a failure counter moved, or the session was dropped), or ``None`` when
  the stored state is still right;
* ``detail``: what went wrong, for the server log only.  Exchange failures
  all share one body so that a client cannot tell an OAEP padding failure
  from any other error; ``detail`` is where the difference is kept.
"""

from __future__ import annotations

from typing import ClassVar, Optional

from pushd.errors import PushdError

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
]


class CryptoError(PushdError):
    """Base class of the crypto errors: HTTP 400 unless a subclass says otherwise."""

    status = 400
    body: ClassVar[str] = "ERROR ZKX1"

    def __init__(
        self, detail: str = "", state: Optional[bytes] = None, reason: Optional[str] = None
    ) -> None:
        super().__init__(self.body if reason is None else reason)
        self.detail = detail
        self.state = state

    def with_state(self, state: bytes) -> CryptoError:
        """Attach the state to store despite the failure; returns ``self``."""
        self.state = state
        return self


class ExchangeNotSupported(CryptoError):
    """
    ``/iclock/exchange`` for a device whose transport does not encrypt: HTTP 404.

    ``detail`` describes the request (a recognised vendor key blob, its size)
    for the WARNING the server logs and the alert it raises (crypto.md §4.1).
    """

    status = 404
    body = "Not Supported"


class ExchangeFailed(CryptoError):
    """
    The key or factor exchange failed: HTTP 400 with one generic body.

    Malformed bodies, bad base64, unacceptable keys and OAEP decryption
    failures all look the same to the client (no padding oracle).
    """

    body = "ERROR ZKX1 EXCHANGE"


class BadDeviceKey(ExchangeFailed):
    """The device key is not an RSA-2048..4096 key with e = 65537 in DER SPKI form."""


class ExchangeOutOfOrder(CryptoError):
    """``type=factors`` without a preceding ``type=publickey``: HTTP 409."""

    status = 409
    body = "ERROR ZKX1 ORDER"


class KeyMismatch(CryptoError):
    """The device presented a key other than the one pinned for its SN: HTTP 403."""

    status = 403
    body = "ERROR ZKX1 KEYMISMATCH"


class NoSession(CryptoError):
    """No (live) session: HTTP 401; the client restarts from ``GET options=all``."""

    status = 401
    body = "ERROR ZKX1 NOSESSION"


class Replay(CryptoError):
    """A sequence number at or below the last one, not an exact replay: HTTP 409."""

    status = 409
    body = "ERROR ZKX1 REPLAY"


class BadEnvelope(CryptoError):
    """Not an envelope: bad base64, too short, wrong magic, version or flags: HTTP 400."""

    body = "ERROR ZKX1 BADENVELOPE"


class BadTag(CryptoError):
    """The HMAC tag does not verify: HTTP 400."""

    body = "ERROR ZKX1 BADTAG"


class BadCrc(CryptoError):
    """The tag verified but the plaintext length or CRC32 is wrong: HTTP 400."""

    body = "ERROR ZKX1 BADCRC"


class StateError(CryptoError):
    """A stored state blob cannot be read (corrupt, or from a newer pushd): HTTP 500."""

    status = 500
    body = "ERROR ZKX1 STATE"


class KeyStoreError(CryptoError):
    """The server key file cannot be created or read: HTTP 500 (a start-up error)."""

    status = 500
    body = "ERROR ZKX1 SERVERKEY"
