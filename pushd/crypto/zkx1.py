# -*- test-case-name: tests.test_crypto_primitives -*-
"""
The ZKX1 profile, pure: key derivation, per-message keys, the envelope and
the exchange bodies.  No RSA, no state, no I/O.

Key derivation (``lp(x)`` is a 2-byte big-endian length, then ``x``)::

    th  = SHA-256("ZKX1-transcript" || lp(SN) || lp(Pd) || lp(Ps) || lp(C1) || lp(C2))
    OKM = HKDF-SHA256(IKM = R1 || R2, salt = th, info = "ZKX1 session keys", L = 128)
    K_d2s_enc, K_d2s_mac, K_s2d_enc, K_s2d_mac = OKM split in four 32-byte keys

Envelope (the HTTP body is its base64)::

    offset  size   field
    0       4      magic "ZKX1"
    4       1      version 0x01
    5       1      flags 0x00
    6       8      seq, uint64 big-endian, per direction, from 1, strictly increasing
    14      4      ptlen, uint32 big-endian
    18      n+4    RC4-drop3072(key_m)(plaintext || CRC32(plaintext) big-endian)
    18+n+4  16     HMAC-SHA256(K_dir_mac, bytes[0:18+n+4])[0:16]

    key_m = HMAC-SHA256(K_dir_enc, "rc4" || uint64be(seq))
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Tuple

from Crypto.Hash import SHA256
from Crypto.Protocol.KDF import HKDF

from pushd.crypto.crc import crc32_bytes
from pushd.crypto.errors import BadCrc, BadEnvelope, BadTag, ExchangeFailed
from pushd.crypto.rc4 import rc4_drop3072

__all__ = [
    "CRC_LEN",
    "D2S",
    "FACTOR_LEN",
    "HEADER_LEN",
    "MAGIC",
    "MAX_SEQ",
    "MIN_LEN",
    "S2D",
    "TAG_LEN",
    "VERSION",
    "Envelope",
    "SessionKeys",
    "b64decode_strict",
    "b64encode",
    "decrypt",
    "derive_keys",
    "format_exchange_body",
    "lp",
    "message_key",
    "open_envelope",
    "parse_envelope",
    "parse_exchange_body",
    "seal",
    "transcript_hash",
    "verify_tag",
]

MAGIC = b"ZKX1"
VERSION = 1
HEADER_LEN = 18
CRC_LEN = 4
TAG_LEN = 16
#: The shortest envelope: header, the CRC of an empty plaintext, the tag.
MIN_LEN = HEADER_LEN + CRC_LEN + TAG_LEN
#: R1 and R2 are 32 random bytes each.
FACTOR_LEN = 32
MAX_SEQ = 2**64 - 1
#: Directions: device to server, server to device.
D2S = "d2s"
S2D = "s2d"

_HEADER = struct.Struct(">4sBBQI")
_TRANSCRIPT_LABEL = b"ZKX1-transcript"
_KDF_INFO = b"ZKX1 session keys"
_KEY_LEN = 32
# What b64decode_strict removes before decoding.
_B64_JUNK = b"\r\n \x00"


@dataclass(frozen=True)
class SessionKeys:
    """The four 32-byte session keys ("sessionKey" in the spec's terms is all of them)."""

    d2s_enc: bytes
    d2s_mac: bytes
    s2d_enc: bytes
    s2d_mac: bytes

    def __post_init__(self) -> None:
        for key in (self.d2s_enc, self.d2s_mac, self.s2d_enc, self.s2d_mac):
            if len(key) != _KEY_LEN:
                raise ValueError("session keys are 32 bytes each")

    def __repr__(self) -> str:
        return "SessionKeys(<secret>)"

    def direction(self, direction: str) -> Tuple[bytes, bytes]:
        """
        :returns: ``(enc_key, mac_key)`` for :data:`D2S` or :data:`S2D`.
        :raises ValueError: for another direction.
        """
        if direction == D2S:
            return self.d2s_enc, self.d2s_mac
        if direction == S2D:
            return self.s2d_enc, self.s2d_mac
        raise ValueError(f"unknown direction {direction!r}")


@dataclass(frozen=True)
class Envelope:
    """A parsed envelope whose tag is not yet verified."""

    seq: int
    ptlen: int
    ciphertext: bytes
    tag: bytes
    #: The bytes the tag covers: header and ciphertext.
    signed: bytes


# -- base64 and exchange bodies -------------------------------------------------


def b64encode(data: bytes) -> bytes:
    """RFC 4648 standard base64 with padding, on one line."""
    return base64.b64encode(data)


def b64decode_strict(data: bytes) -> bytes:
    """
    Decode base64 after removing CR, LF, spaces and NUL: standard alphabet
    and correct padding only.

    :raises ValueError: for anything else (``binascii.Error`` is a ValueError).
    """
    cleaned = data.translate(None, _B64_JUNK)
    return base64.b64decode(cleaned, validate=True)


def parse_exchange_body(body: bytes, name: str) -> bytes:
    """
    The decoded value of an exchange body ``<name>=<base64>``.

    The body is split on the first ``=`` and never form-decoded (``+`` stays
    ``+``); ``name`` is matched case-insensitively, so ``Publickey=`` is
    accepted for ``PublicKey``.

    :raises ExchangeFailed: wrong or missing name, or invalid base64.
    """
    key, sep, value = body.partition(b"=")
    if not sep or key.strip(b" \t\r\n\x00").lower() != name.lower().encode("ascii"):
        raise ExchangeFailed(f"exchange body does not start with {name}=")
    try:
        decoded = b64decode_strict(value)
    except ValueError:
        raise ExchangeFailed(f"{name} is not valid base64") from None
    if not decoded:
        raise ExchangeFailed(f"{name} is empty")
    return decoded


def format_exchange_body(name: str, value: bytes) -> bytes:
    """``<name>=<base64 of value>``, no trailing newline."""
    return name.encode("ascii") + b"=" + b64encode(value)


# -- key derivation -------------------------------------------------------------


def lp(data: bytes) -> bytes:
    """
    ``data`` prefixed by its length as 2 big-endian bytes.

    :raises ValueError: for more than 65535 bytes.
    """
    if len(data) > 0xFFFF:
        raise ValueError("field longer than 65535 bytes")
    return struct.pack(">H", len(data)) + data


def transcript_hash(sn: str, pd: bytes, ps: bytes, c1: bytes, c2: bytes) -> bytes:
    """
    ``th``: SHA-256 over the label, the SN (ASCII), both DER SPKI public keys
    (device ``pd``, server ``ps``) and both raw factor ciphertexts.

    :raises ValueError: the SN is not ASCII, or a field is too long.
    """
    digest = hashlib.sha256(_TRANSCRIPT_LABEL)
    for field in (sn.encode("ascii"), pd, ps, c1, c2):
        digest.update(lp(field))
    return digest.digest()


def derive_keys(r1: bytes, r2: bytes, th: bytes) -> SessionKeys:
    """
    The session keys: HKDF-SHA256 (RFC 5869) of ``R1 || R2`` salted with
    ``th``, 128 bytes of output split in four.

    :raises ValueError: the factors are not 32 bytes each.
    """
    if len(r1) != FACTOR_LEN or len(r2) != FACTOR_LEN:
        raise ValueError("factors are 32 bytes each")
    keys = HKDF(r1 + r2, _KEY_LEN, th, SHA256, num_keys=4, context=_KDF_INFO)
    return SessionKeys(*(bytes(key) for key in keys))


def message_key(enc_key: bytes, seq: int) -> bytes:
    """The RC4 key of one message: ``HMAC-SHA256(enc_key, "rc4" || uint64be(seq))``."""
    return hmac.new(enc_key, b"rc4" + struct.pack(">Q", seq), hashlib.sha256).digest()


def _tag(mac_key: bytes, signed: bytes) -> bytes:
    return hmac.new(mac_key, signed, hashlib.sha256).digest()[:TAG_LEN]


# -- the envelope ---------------------------------------------------------------


def seal(enc_key: bytes, mac_key: bytes, seq: int, plaintext: bytes) -> bytes:
    """
    The raw envelope of ``plaintext`` (not base64: see :func:`b64encode`).

    :raises ValueError: ``seq`` outside 1..2**64-1, or a plaintext of 4 GiB or more.
    """
    if not 1 <= seq <= MAX_SEQ:
        raise ValueError(f"sequence number {seq} out of range")
    if len(plaintext) > 0xFFFFFFFF:
        raise ValueError("plaintext too long")
    header = _HEADER.pack(MAGIC, VERSION, 0, seq, len(plaintext))
    ciphertext = rc4_drop3072(message_key(enc_key, seq), plaintext + crc32_bytes(plaintext))
    signed = header + ciphertext
    return signed + _tag(mac_key, signed)


def parse_envelope(body: bytes) -> Envelope:
    """
    Steps 1 and 2 of the receiver algorithm: decode the base64 body and check
    the length, magic, version and flags.  The tag is not checked here.

    :raises BadEnvelope: for anything that is not an envelope.
    """
    try:
        raw = b64decode_strict(body)
    except ValueError:
        raise BadEnvelope("body is not valid base64") from None
    if len(raw) < MIN_LEN:
        raise BadEnvelope(f"envelope of {len(raw)} bytes is too short")
    magic, version, flags, seq, ptlen = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise BadEnvelope("no ZKX1 magic")
    if version != VERSION:
        raise BadEnvelope(f"envelope version {version}")
    if flags != 0:
        raise BadEnvelope(f"envelope flags {flags:#04x}")
    signed = raw[:-TAG_LEN]
    return Envelope(seq, ptlen, signed[HEADER_LEN:], raw[-TAG_LEN:], signed)


def verify_tag(envelope: Envelope, mac_key: bytes) -> None:
    """
    Step 5: check the tag in constant time.

    :raises BadTag: it does not verify.
    """
    if not hmac.compare_digest(_tag(mac_key, envelope.signed), envelope.tag):
        raise BadTag(f"tag of message {envelope.seq} does not verify")


def decrypt(envelope: Envelope, enc_key: bytes) -> bytes:
    """
    Step 6: decrypt, then check ``ptlen`` and the CRC32.  Call only after
    :func:`verify_tag`.

    :raises BadCrc: the length or the CRC does not match.
    """
    data = rc4_drop3072(message_key(enc_key, envelope.seq), envelope.ciphertext)
    plaintext, crc = data[:-CRC_LEN], data[-CRC_LEN:]
    if len(plaintext) != envelope.ptlen:
        raise BadCrc(f"ptlen {envelope.ptlen} but {len(plaintext)} bytes of plaintext")
    if not hmac.compare_digest(crc32_bytes(plaintext), crc):
        raise BadCrc(f"CRC32 of message {envelope.seq} does not match")
    return plaintext


def open_envelope(envelope: Envelope, enc_key: bytes, mac_key: bytes) -> bytes:
    """
    :func:`verify_tag` then :func:`decrypt`.

    :raises BadTag: see :func:`verify_tag`.
    :raises BadCrc: see :func:`decrypt`.
    """
    verify_tag(envelope, mac_key)
    return decrypt(envelope, enc_key)
