# -*- test-case-name: tests.test_crypto_exchange -*-
"""
Recognising ZKTeco's own key exchange, which pushd cannot speak.

Firmware 2.4.0+ told ``Encrypt=1`` (or configured for encryption) posts
``PublicKey=<value>`` to ``/iclock/exchange``.  The value is the vendor
library's: base64 of a 5-byte header, a PKCS#1 ``RSA PUBLIC KEY`` PEM file
(64-column lines) and a 4-byte trailer, XORed with an unpublished keystream
(research note crypto.md §2.3, §6).  Its decoded length is therefore
``9 + len(PEM)``: 260 bytes for RSA-1024, 435 for RSA-2048.  The factors
that follow are raw RSA ciphertexts, as long as the modulus.

Such a request gets a 404 (see :class:`~pushd.crypto.errors.ExchangeNotSupported`);
:func:`describe_exchange` writes the line the server logs, so the operator
learns that the device must be set to plain HTTP or HTTPS.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Dict, Mapping, Optional

from pushd.crypto.zkx1 import b64decode_strict

__all__ = ["VENDOR_BLOB_SIZES", "VendorBlob", "describe_exchange", "recognise_publickey"]

# The obfuscation header and trailer around the PEM file.
_WRAPPER = 5 + 4
_PEM_HEADER = len(b"-----BEGIN RSA PUBLIC KEY-----\n")
_PEM_FOOTER = len(b"-----END RSA PUBLIC KEY-----\n")


def _der_length_field(length: int) -> int:
    """Bytes of a DER tag and length for ``length`` bytes of content."""
    if length < 0x80:
        return 2
    return 2 + (length.bit_length() + 7) // 8


def _pem_size(bits: int) -> int:
    """Size of the PKCS#1 PEM file of an RSA key of ``bits`` (e = 65537)."""
    modulus = bits // 8 + 1  # a leading zero keeps the INTEGER positive
    content = _der_length_field(modulus) + modulus + 5  # 02 03 01 00 01
    der = _der_length_field(content) + content
    b64 = (der + 2) // 3 * 4
    lines = (b64 + 63) // 64
    return _PEM_HEADER + b64 + lines + _PEM_FOOTER


def _sizes() -> Dict[int, int]:
    return {_WRAPPER + _pem_size(bits): bits for bits in (512, 768, 1024, 1536, 2048, 3072, 4096)}


#: Decoded size of a vendor ``PublicKey`` value -> RSA key size in bits.
VENDOR_BLOB_SIZES: Mapping[int, int] = MappingProxyType(_sizes())


@dataclass(frozen=True)
class VendorBlob:
    """A ``PublicKey`` value that looks like ZKTeco's obfuscated key blob."""

    size: int
    key_bits: int
    head: bytes

    def __str__(self) -> str:
        return (
            f"ZKTeco vendor key blob of {self.size} bytes "
            f"(an obfuscated PKCS#1 RSA-{self.key_bits} public key), starting {self.head.hex()}"
        )


def recognise_publickey(value: bytes) -> Optional[VendorBlob]:
    """
    Whether ``value`` (what follows ``PublicKey=``) looks like a vendor key blob:
    valid base64 of ``9 + PEM length`` bytes that starts with neither a DER
    SEQUENCE (``0x30``) nor ``-----``.  A heuristic, never an error.

    :returns: the blob's description, or ``None``.
    """
    try:
        raw = b64decode_strict(value)
    except ValueError:
        return None
    if raw[:1] == b"\x30" or raw.startswith(b"-----"):
        return None
    bits = VENDOR_BLOB_SIZES.get(len(raw))
    if bits is None:
        return None
    return VendorBlob(len(raw), bits, raw[:8])


def describe_exchange(kind: str, body: bytes) -> str:
    """
    One line about an ``/iclock/exchange`` request that will not be served,
    for the WARNING the server logs: the type, the value's size and first
    8 bytes, and what the value looks like.  Never raises.
    """
    name, sep, value = body.partition(b"=")
    label = name[:32].decode("ascii", "replace")
    if not sep:
        return f"type={kind[:32]!r}: {len(body)}-byte body without '='"
    try:
        raw = b64decode_strict(value)
    except ValueError:
        return f"type={kind[:32]!r}: {label}= value of {len(value)} bytes is not base64"
    what = f"type={kind[:32]!r}: {label}= value of {len(raw)} bytes starting {raw[:8].hex()}"
    blob = recognise_publickey(value)
    if blob is not None:
        return (
            f"{what}, a {blob}: the device asks for ZKTeco's vendor encryption, "
            "which pushd does not speak; set it to plain HTTP or HTTPS"
        )
    if raw[:1] == b"\x30":
        return f"{what}, a DER public key: a ZKX1 client? enable zkx1 for this device"
    if len(raw) in (128, 256, 384, 512):
        return f"{what}, the size of an RSA-{len(raw) * 8} ciphertext (a factor)"
    return what
