# -*- test-case-name: tests.test_crypto_exchange -*-
"""
The two built-in :class:`~pushd.interfaces.ICryptoTransport` implementations
and their plugin factories.

* :class:`PlainTransport` (``"plain"``): what real ZKTeco devices get.
  ``Encrypt=0``; ``/iclock/exchange`` is refused with a 404 whose ``detail``
  says what the device asked for; bodies pass through untouched.
* :class:`ZKX1Transport` (``"zkx1"``): the ZKX1 profile (``docs/crypto.md``)
  for clients that implement it; never for ZKTeco firmware.

Neither holds per-device state: it travels in the state blob that every
method takes and returns (see :mod:`pushd.crypto.exchange`).
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, Optional, Sequence, Tuple

from Crypto.PublicKey import RSA
from Crypto.Random import get_random_bytes
from twisted.plugin import IPlugin
from zope.interface import implementer

from pushd.crypto import Unwrapped
from pushd.crypto.errors import (
    CryptoError,
    ExchangeFailed,
    ExchangeNotSupported,
    ExchangeOutOfOrder,
    NoSession,
    Replay,
)
from pushd.crypto.exchange import (
    Event,
    Phase,
    Session,
    cached_reply,
    describe,
    dump,
    expire,
    load,
    on_accept,
    on_factors,
    on_failure,
    on_publickey,
    on_reply,
    on_restart,
    on_send,
    step,
    with_pin,
)
from pushd.crypto.keys import (
    RandomBytes,
    fingerprint,
    import_device_key,
    load_or_create_server_key,
    oaep_decrypt,
    oaep_encrypt,
    spki_der,
)
from pushd.crypto.vendor import describe_exchange
from pushd.crypto.zkx1 import (
    D2S,
    FACTOR_LEN,
    S2D,
    SessionKeys,
    b64encode,
    decrypt,
    derive_keys,
    format_exchange_body,
    parse_envelope,
    parse_exchange_body,
    seal,
    transcript_hash,
    verify_tag,
)
from pushd.interfaces import ICryptoTransport, ICryptoTransportFactory

__all__ = [
    "PlainTransport",
    "PlainTransportFactory",
    "ZKX1Transport",
    "ZKX1TransportFactory",
]


@implementer(ICryptoTransport)
class PlainTransport:
    """No encryption: ``Encrypt=0``, exchange refused, bodies untouched."""

    name = "plain"
    encrypted_tables: FrozenSet[str] = frozenset()

    def options(self) -> Sequence[Tuple[str, str]]:
        return (("Encrypt", "0"),)

    def restart(self, state: Optional[bytes]) -> bytes:
        return state or b""

    def exchange(
        self, sn: str, kind: str, body: bytes, state: Optional[bytes], now: float
    ) -> Tuple[bytes, bytes]:
        raise ExchangeNotSupported(describe_exchange(kind, body))

    def unwrap(self, sn: str, body: bytes, state: Optional[bytes], now: float) -> Unwrapped:
        return Unwrapped(state or b"", 0, b"", plaintext=body)

    def remember(self, state: Optional[bytes], seq: int, tag: bytes, reply: bytes) -> bytes:
        return state or b""

    def wrap(
        self, sn: str, plaintext: bytes, state: Optional[bytes], now: float
    ) -> Tuple[bytes, bytes]:
        return plaintext, state or b""

    def describe(self, state: Optional[bytes]) -> Dict[str, Any]:
        return {"profile": self.name}


@implementer(ICryptoTransport)
class ZKX1Transport:
    """
    The ZKX1 profile with the server key ``server_key`` (an RSA private key).

    :param randbytes: the CSPRNG for factors and OAEP (tests may fix it).
    """

    name = "zkx1"
    encrypted_tables: FrozenSet[str] = frozenset({"ATTLOG"})

    def __init__(self, server_key: RSA.RsaKey, randbytes: RandomBytes = get_random_bytes) -> None:
        if not server_key.has_private():
            raise ValueError("the server key must be a private key")
        self._key = server_key
        self._spki = spki_der(server_key)
        self._random = randbytes
        #: What clients pin: SHA-256 of the server's DER SPKI, hex.
        self.fingerprint = fingerprint(self._spki)

    def __repr__(self) -> str:
        return f"ZKX1Transport(fingerprint={self.fingerprint})"

    def options(self) -> Sequence[Tuple[str, str]]:
        return (("Encrypt", "1"), ("EncryptFlag", "1000000000"), ("EncryptProfile", "ZKX1"))

    def restart(self, state: Optional[bytes]) -> bytes:
        return dump(on_restart(load(state)))

    def pin(self, state: Optional[bytes], device_key: bytes) -> bytes:
        """
        Pin a pre-registered device key (DER SPKI); any session is discarded.

        :raises BadDeviceKey: the key is not acceptable.
        :raises StateError: ``state`` cannot be read.
        """
        import_device_key(device_key)
        return dump(with_pin(load(state), device_key))

    def describe(self, state: Optional[bytes]) -> Dict[str, Any]:
        return describe(load(state))

    # -- the handshake ----------------------------------------------------------

    def exchange(
        self, sn: str, kind: str, body: bytes, state: Optional[bytes], now: float
    ) -> Tuple[bytes, bytes]:
        stored = load(state)
        session = expire(stored, now)
        try:
            if kind.lower() == "publickey":
                return self._publickey(body, session, now)
            if kind.lower() == "factors":
                return self._factors(sn, body, session, now)
            raise ExchangeFailed(f"unknown exchange type {kind[:32]!r}")
        except CryptoError as e:
            if e.state is None and session is not stored:
                e.state = dump(session)
            raise

    def _publickey(self, body: bytes, session: Session, now: float) -> Tuple[bytes, bytes]:
        device_key = parse_exchange_body(body, "PublicKey")
        import_device_key(device_key)
        session = on_publickey(session, device_key, now)
        return format_exchange_body("PublicKey", self._spki), dump(session)

    def _factors(self, sn: str, body: bytes, session: Session, now: float) -> Tuple[bytes, bytes]:
        step(session.phase, Event.FACTORS)
        if session.pin is None:  # pragma: no cover - a KEYED session always has a pin
            raise ExchangeOutOfOrder("factors without a pinned key")
        c1 = parse_exchange_body(body, "Factors")
        r1 = oaep_decrypt(self._key, c1)
        if len(r1) != FACTOR_LEN:
            raise ExchangeFailed(f"device factor of {len(r1)} bytes")
        if not sn.isascii():
            raise ExchangeFailed("serial number is not ASCII")
        r2 = self._random(FACTOR_LEN)
        c2 = oaep_encrypt(import_device_key(session.pin), r2, self._random)
        keys = derive_keys(r1, r2, transcript_hash(sn, session.pin, self._spki, c1, c2))
        session = on_factors(session, keys, now)
        return format_exchange_body("Factors", c2), dump(session)

    # -- envelopes ----------------------------------------------------------------

    def unwrap(self, sn: str, body: bytes, state: Optional[bytes], now: float) -> Unwrapped:
        stored = load(state)
        session = expire(stored, now)
        try:
            envelope = parse_envelope(body)
            if session.phase is not Phase.ESTABLISHED:
                raise NoSession(f"message {envelope.seq} in phase {session.phase.value}")
            enc, mac = _keys(session).direction(D2S)
            if envelope.seq <= session.rx_seq:
                reply = cached_reply(session, envelope.seq, envelope.tag)
                if reply is None:
                    raise Replay(f"message {envelope.seq} at or below {session.rx_seq}, not cached")
                verify_tag(envelope, mac)
                session = on_accept(session, now)
                return Unwrapped(dump(session), envelope.seq, envelope.tag, cached_reply=reply)
            verify_tag(envelope, mac)
            plaintext = decrypt(envelope, enc)
        except CryptoError as e:
            if e.state is None:
                failed = on_failure(session)
                if failed is not stored:
                    e.state = dump(failed)
            raise
        session = on_accept(session, now)
        return Unwrapped(dump(session), envelope.seq, envelope.tag, plaintext=plaintext)

    def remember(self, state: Optional[bytes], seq: int, tag: bytes, reply: bytes) -> bytes:
        return dump(on_reply(load(state), seq, tag, reply))

    def wrap(
        self, sn: str, plaintext: bytes, state: Optional[bytes], now: float
    ) -> Tuple[bytes, bytes]:
        stored = load(state)
        session = expire(stored, now)
        try:
            session, seq = on_send(session, now)
        except CryptoError as e:
            if session is not stored:
                e.state = dump(session)
            raise
        enc, mac = _keys(session).direction(S2D)
        return b64encode(seal(enc, mac, seq, plaintext)), dump(session)


def _keys(session: Session) -> SessionKeys:
    keys = session.keys
    if keys is None:  # pragma: no cover - an ESTABLISHED session always has keys
        raise NoSession("no session keys")
    return keys


# -- plugin factories -------------------------------------------------------------


@implementer(IPlugin, ICryptoTransportFactory)
class PlainTransportFactory:
    """No encryption (``Encrypt=0``): for every ZKTeco device."""

    name = "plain"
    description = "no encryption (Encrypt=0); /iclock/exchange answers 404"

    def build(self, data_dir: str) -> ICryptoTransport:
        return PlainTransport()


@implementer(IPlugin, ICryptoTransportFactory)
class ZKX1TransportFactory:
    """The ZKX1 profile: RSA-OAEP factors, HKDF, RC4-drop3072 + HMAC envelopes."""

    name = "zkx1"
    description = "the ZKX1 encrypted profile (docs/crypto.md); not for ZKTeco firmware"

    def build(self, data_dir: str) -> ICryptoTransport:
        """
        Load the server key from ``data_dir``, generating it on first use
        (a few seconds).

        :raises KeyStoreError: the key cannot be created or read.
        """
        return ZKX1Transport(load_or_create_server_key(data_dir))
