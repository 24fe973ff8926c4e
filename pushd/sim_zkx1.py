# -*- test-case-name: tests.test_crypto_exchange -*-
"""
The device side of the ZKX1 encrypted profile, for the virtual device.

This is a second, independent implementation of the wire format in
``docs/crypto.md``: it shares no code with :mod:`pushd.crypto` (and must
never import it), so the server is tested against something that was not
derived from itself.  HKDF is written out here from RFC 5869; RSA-OAEP and
RC4 come from pycryptodome.

A client goes through::

    client = ZKX1Client("SN0001", server_fingerprint="ab12...")
    POST /iclock/exchange?SN=..&type=publickey  body client.publickey_request()
    client.publickey_reply(reply body)          # checks the pinned fingerprint
    POST /iclock/exchange?SN=..&type=factors    body client.factors_request()
    client.factors_reply(reply body)            # derives the session keys
    POST /iclock/cdata?SN=..&table=ATTLOG       body client.seal(records)

and calls :meth:`ZKX1Client.reset` (then the handshake again) after a
``GET options=all`` or a ``401 ERROR ZKX1 NOSESSION``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from Crypto.Cipher import ARC4, PKCS1_OAEP
from Crypto.Hash import SHA256
from Crypto.PublicKey import RSA

__all__ = [
    "ClientKeys",
    "ZKX1Client",
    "ZKX1ClientError",
    "derive_client_keys",
    "generate_device_key",
    "hkdf_sha256",
    "open_body",
    "seal_body",
    "spki_fingerprint",
]


class ZKX1ClientError(Exception):
    """The server's answer cannot be accepted (wrong key, bad reply, bad envelope)."""


# Wire constants, from docs/crypto.md.
_MAGIC = b"ZKX1"
_VERSION = 0x01
_HEAD = ">4sBBQI"  # magic, version, flags, seq, ptlen
_HEAD_SIZE = struct.calcsize(_HEAD)
_TAG_SIZE = 16
_R_SIZE = 32


def generate_device_key(bits: int = 2048) -> RSA.RsaKey:
    """A new device key pair (RSA, e = 65537)."""
    return RSA.generate(bits, e=65537)


def spki_fingerprint(spki: bytes) -> str:
    """The pin of a public key: SHA-256 of its DER SubjectPublicKeyInfo, lowercase hex."""
    return hashlib.sha256(spki).hexdigest()


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract, then expand to ``length`` bytes."""
    prk = hmac.new(salt, ikm, "sha256").digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), "sha256").digest()
        okm += block
        counter += 1
    return okm[:length]


@dataclass(frozen=True)
class ClientKeys:
    """The four session keys, as a device holds them."""

    d2s_enc: bytes
    d2s_mac: bytes
    s2d_enc: bytes
    s2d_mac: bytes


def _with_length(field: bytes) -> bytes:
    return len(field).to_bytes(2, "big") + field


def derive_client_keys(
    sn: str, pd: bytes, ps: bytes, c1: bytes, c2: bytes, r1: bytes, r2: bytes
) -> Tuple[bytes, ClientKeys]:
    """
    The transcript hash and the session keys.

    :returns: ``(th, keys)``.
    """
    transcript = b"ZKX1-transcript" + b"".join(
        _with_length(field) for field in (sn.encode("ascii"), pd, ps, c1, c2)
    )
    th = hashlib.sha256(transcript).digest()
    okm = hkdf_sha256(r1 + r2, th, b"ZKX1 session keys", 128)
    return th, ClientKeys(okm[:32], okm[32:64], okm[64:96], okm[96:128])


def _keystream_cipher(enc_key: bytes, seq: int) -> Callable[[bytes], bytes]:
    key_m = hmac.new(enc_key, b"rc4" + seq.to_bytes(8, "big"), "sha256").digest()
    return ARC4.new(key_m, drop=3072).encrypt


def seal_body(enc_key: bytes, mac_key: bytes, seq: int, plaintext: bytes) -> bytes:
    """The HTTP body (base64 of the envelope) carrying ``plaintext`` as message ``seq``."""
    header = struct.pack(_HEAD, _MAGIC, _VERSION, 0, seq, len(plaintext))
    crc = (zlib.crc32(plaintext) & 0xFFFFFFFF).to_bytes(4, "big")
    ciphertext = _keystream_cipher(enc_key, seq)(plaintext + crc)
    tag = hmac.new(mac_key, header + ciphertext, "sha256").digest()[:_TAG_SIZE]
    return base64.b64encode(header + ciphertext + tag)


def open_body(enc_key: bytes, mac_key: bytes, body: bytes) -> Tuple[int, bytes]:
    """
    Open an envelope body.

    :returns: ``(seq, plaintext)``.
    :raises ZKX1ClientError: not an envelope, or its tag, length or CRC is wrong.
    """
    raw = _b64(body)
    if len(raw) < _HEAD_SIZE + 4 + _TAG_SIZE:
        raise ZKX1ClientError("envelope too short")
    magic, version, flags, seq, ptlen = struct.unpack(_HEAD, raw[:_HEAD_SIZE])
    if (magic, version, flags) != (_MAGIC, _VERSION, 0):
        raise ZKX1ClientError("not a ZKX1 v1 envelope")
    signed, tag = raw[:-_TAG_SIZE], raw[-_TAG_SIZE:]
    if not hmac.compare_digest(hmac.new(mac_key, signed, "sha256").digest()[:_TAG_SIZE], tag):
        raise ZKX1ClientError("envelope tag does not verify")
    data = _keystream_cipher(enc_key, seq)(signed[_HEAD_SIZE:])
    plaintext, crc = data[:-4], data[-4:]
    if len(plaintext) != ptlen or zlib.crc32(plaintext) & 0xFFFFFFFF != int.from_bytes(crc, "big"):
        raise ZKX1ClientError("envelope length or CRC32 is wrong")
    return seq, plaintext


def _b64(text: bytes) -> bytes:
    for junk in (b"\r", b"\n", b" ", b"\x00"):
        text = text.replace(junk, b"")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ZKX1ClientError("invalid base64") from None


def _reply_value(body: bytes, name: bytes) -> bytes:
    head, equals, value = body.partition(b"=")
    if not equals or head.strip().lower() != name.lower():
        raise ZKX1ClientError(f"reply is not {name.decode()}=...: {body[:40]!r}")
    return _b64(value)


class ZKX1Client:
    """
    One device's ZKX1 state: its key pair, the pinned server key, the
    session keys and both sequence counters.

    :param server_fingerprint: the server key's pin (hex SHA-256 of its DER
        SPKI; ``:`` separators and case are ignored).  ``None`` trusts the
        first key seen and pins it (:attr:`server_fingerprint` then holds it).
    :param randbytes: the source of R1 and OAEP randomness.
    """

    def __init__(
        self,
        sn: str,
        device_key: Optional[RSA.RsaKey] = None,
        server_fingerprint: Optional[str] = None,
        randbytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.sn = sn
        self.device_key = device_key if device_key is not None else generate_device_key()
        self.server_fingerprint = (
            None if server_fingerprint is None else server_fingerprint.replace(":", "").lower()
        )
        self._random = randbytes
        self.reset()

    def reset(self) -> None:
        """Forget the session (keeps the key pair and the server pin)."""
        self._server_spki: Optional[bytes] = None
        self._server_key: Optional[RSA.RsaKey] = None
        self._c1 = b""
        self._r1 = b""
        self.keys: Optional[ClientKeys] = None
        self.tx_seq = 0
        self.rx_seq = 0

    @property
    def established(self) -> bool:
        """Whether the handshake is complete."""
        return self.keys is not None

    @property
    def device_spki(self) -> bytes:
        """This device's public key as DER SubjectPublicKeyInfo."""
        return bytes(self.device_key.public_key().export_key(format="DER"))

    # -- the handshake ------------------------------------------------------------

    def publickey_request(self) -> bytes:
        """The body of ``POST /iclock/exchange?type=publickey``; restarts the handshake."""
        self.reset()
        return b"PublicKey=" + base64.b64encode(self.device_spki)

    def publickey_reply(self, body: bytes) -> None:
        """
        Take the server's ``PublicKey=`` reply.

        :raises ZKX1ClientError: not an RSA key, too small, or not the pinned one.
        """
        spki = _reply_value(body, b"PublicKey")
        seen = spki_fingerprint(spki)
        if self.server_fingerprint is None:
            self.server_fingerprint = seen
        elif not hmac.compare_digest(seen, self.server_fingerprint):
            raise ZKX1ClientError(f"server key {seen} is not the pinned key")
        try:
            key = RSA.import_key(spki)
        except (ValueError, IndexError, TypeError):
            raise ZKX1ClientError("server key is not an RSA key") from None
        if key.has_private() or key.size_in_bits() < 2048:
            raise ZKX1ClientError("server key unacceptable")
        self._server_spki, self._server_key = spki, key

    def factors_request(self) -> bytes:
        """
        The body of ``POST /iclock/exchange?type=factors``: a fresh R1 under
        the server key.

        :raises ZKX1ClientError: the public keys were not exchanged.
        """
        if self._server_key is None:
            raise ZKX1ClientError("exchange public keys first")
        self._r1 = self._random(_R_SIZE)
        cipher = PKCS1_OAEP.new(self._server_key, hashAlgo=SHA256, randfunc=self._random)
        self._c1 = cipher.encrypt(self._r1)
        return b"Factors=" + base64.b64encode(self._c1)

    def factors_reply(self, body: bytes) -> None:
        """
        Take the server's ``Factors=`` reply and derive the session keys.

        :raises ZKX1ClientError: out of order, or R2 cannot be decrypted.
        """
        if self._server_spki is None or not self._c1:
            raise ZKX1ClientError("send the factors first")
        c2 = _reply_value(body, b"Factors")
        if len(c2) != self.device_key.size_in_bytes():
            raise ZKX1ClientError("server factor has the wrong length")
        try:
            r2 = PKCS1_OAEP.new(self.device_key, hashAlgo=SHA256).decrypt(c2)
        except ValueError:
            raise ZKX1ClientError("server factor does not decrypt") from None
        if len(r2) != _R_SIZE:
            raise ZKX1ClientError("server factor has the wrong size")
        _, self.keys = derive_client_keys(
            self.sn, self.device_spki, self._server_spki, self._c1, c2, self._r1, r2
        )
        self.tx_seq = self.rx_seq = 0

    # -- messages -------------------------------------------------------------------

    def _session(self) -> ClientKeys:
        if self.keys is None:
            raise ZKX1ClientError("no session: run the handshake")
        return self.keys

    def seal(self, plaintext: bytes) -> bytes:
        """
        The encrypted body of an upload, as the next message.

        :raises ZKX1ClientError: no session.
        """
        keys = self._session()
        self.tx_seq += 1
        return seal_body(keys.d2s_enc, keys.d2s_mac, self.tx_seq, plaintext)

    def open(self, body: bytes) -> bytes:
        """
        Open a server-to-device envelope; its seq must be above the last one.

        :raises ZKX1ClientError: no session, a bad envelope, or an old seq.
        """
        keys = self._session()
        seq, plaintext = open_body(keys.s2d_enc, keys.s2d_mac, body)
        if seq <= self.rx_seq:
            raise ZKX1ClientError(f"server message {seq} replayed")
        self.rx_seq = seq
        return plaintext
